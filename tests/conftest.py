"""Shared test fixtures: reference numbers, the official fixtures from shared/reference, a real PostgreSQL server."""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as archspace's commands run (archspace.cli.process_settings)

import torch  # noqa: E402

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path | None:
    """shared/reference: $ARCHSPACE_REFERENCE, else ../shared/reference beside the repository."""
    env = os.environ.get("ARCHSPACE_REFERENCE")
    if env:
        path = Path(env)
        if not path.is_dir():
            raise RuntimeError(f"ARCHSPACE_REFERENCE={env} is not a directory")
        return path
    path = REPO.parent / "shared" / "reference"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def reference_counts() -> dict:
    """Golden parameter and MAC counts of the official models (a copy of shared/reference/reference_counts.json)."""
    return json.loads((DATA / "reference_counts.json").read_text())


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The official numerical-equivalence fixtures (skipped when shared/reference is not beside the repo)."""
    ref = reference_dir()
    if ref is None:
        pytest.skip("shared/reference not found (set ARCHSPACE_REFERENCE)")
    return ref / "fixtures"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture(scope="session")
def postgres_url():
    """postgresql+psycopg:// URL of a fresh server (Debian's postgresql, run as the postgres user); skipped if absent."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the 'postgres' extra")
    bindir = _pg_bin()
    if bindir is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs Debian's postgresql package and root (to run the server as the postgres user)")
    data = tempfile.mkdtemp(prefix="archspace-pg-")
    shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-l", f"{data}/log", "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        for _ in range(50):
            if subprocess.run([*as_pg, f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([*as_pg, f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "archspace"], check=True,
                       capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/archspace"
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
