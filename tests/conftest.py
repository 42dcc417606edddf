"""Shared test fixtures: reference numbers and the official fixtures from shared/reference."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

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
