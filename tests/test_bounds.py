"""Hostile inputs get one line and exit 2, fast and in bounded memory: alias bombs, huge numbers, deep nesting, unsafe names."""
from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archspace.cli import main

REPO = Path(__file__).resolve().parents[1]
SMT_T = (REPO / "archspace" / "presets" / "smt_t.yaml").read_text()

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

SPEC_CASES = {
    "alias_chain": (ALIAS_BOMB, "YAML expands to more than 100,000 values"),
    "heads_1e9": (SMT_T.replace("sam: {heads: 4, mlp_ratio: 4}", "sam: {heads: 1000000000, mlp_ratio: 4}", 1), "heads"),
    "counts_1e9": (SMT_T.replace("counts: {sam: 2}", "counts: {sam: 1e9}", 1), "counts"),
    "width_1e23": (SMT_T.replace("width: 64", "width: 1e23", 1), "width"),
    "mlp_ratio_inf": (SMT_T.replace("sam: {heads: 4, mlp_ratio: 4}", "sam: {heads: 4, mlp_ratio: .inf}", 1), "mlp_ratio"),
    "nested_5000": ("[" * 5000 + "]" * 5000, "nested more than 100 levels"),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_hostile_spec_is_one_line_exit_2_fast(case, tmp_path, capsys):
    text, expect = SPEC_CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - t0 < 1.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("archspace: error:") and expect in err
    assert "Traceback" not in err


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (2 * 2**30, 2 * 2**30))


@pytest.mark.parametrize("case", ["alias_chain", "heads_1e9", "counts_1e9", "nested_5000"])
def test_hostile_spec_under_a_2gb_memory_limit(case, tmp_path):
    path = tmp_path / f"{case}.yaml"
    path.write_text(SPEC_CASES[case][0])
    proc = subprocess.run([sys.executable, "-m", "archspace.cli", "validate", str(path)], capture_output=True, text=True,
                          timeout=60, preexec_fn=_limit_memory)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


SPACE = {
    "name": "bounded", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2]}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 2},
}


@pytest.mark.parametrize("field,value,expect", [
    ("name", "../../escape", "name"),
    ("name", "/tmp/absolute", "name"),
    ("params", [{"name": "w", "path": "stages[2].width", "choices": [1e23]}], "out of range"),
    ("params", [{"name": "r", "path": "stages[0].sam.mlp_ratio", "choices": [float("inf")]}], "out of range"),
    ("params", [{"name": "h", "path": "stages[0].sam.heads", "low": 1, "high": 1e9}], "out of range"),
])
def test_hostile_space_is_refused_before_anything_is_written(field, value, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, field: value}))
    assert main(["search", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escape").exists()
