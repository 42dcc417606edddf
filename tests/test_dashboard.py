"""A search's study in optuna-dashboard (served on loopback): the metric names and every trial's architecture."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from archspace.search.engine import run_worker
from archspace.search.space import Space
from test_results import SPACE

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is in the test extra")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_shows_metric_names_and_architectures(tmp_path):
    run = tmp_path / "run"
    run_worker(Space.model_validate({**SPACE, "constraints": {"max_params": 6_000_000}}), run, progress=None)
    port = _free_port()
    exe = str(Path(sys.executable).with_name("optuna-dashboard"))
    server = subprocess.Popen([exe, f"sqlite:///{run / 'study.db'}", "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies and [s["study_name"] for s in studies] == ["res3"]
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert detail["objective_names"] == ["mparams", "gmacs"]
    assert len(detail["trials"]) == 3
    verdicts = set()
    for t in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert attrs["arch"].count("|") == 3 and "w64-128-" in attrs["arch"]
        # feasibility as Optuna constraints: params / limit - 1, positive when over the limit; the objectives are
        # costs, known without training, so an infeasible sample is a COMPLETE trial the dashboard marks infeasible
        mparams = json.loads(attrs["values"])["mparams"]
        assert t["constraints"] == [pytest.approx(mparams / 6.0 - 1.0)]
        assert t["state"] == "Complete" and (attrs["verdict"] == "infeasible") == (mparams > 6.0)
        verdicts.add(attrs["verdict"])
    assert verdicts == {"infeasible", "complete"}
    study_attrs = {a["key"]: a["value"] for a in detail.get("user_attrs", studies[0].get("user_attrs", []))}
    assert "MACs: smt-paper" in study_attrs["protocol"]
