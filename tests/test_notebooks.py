"""Every notebook executes on the CPU from the committed results; the Pareto notebook and one ablation notebook of
each family also re-run their experiment at a small budget (ARCHSPACE_NOTEBOOK_RERUN=1). The other ablation
notebooks' re-run is the same call on their own YAML, whose rows test_ablations.py builds and counts."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

RERUN_IN = {"pareto", "ablation_heads", "ablation_effmod_components", "design_spaces"}
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"ablation_heads", "ablation_aggregation", "ablation_stacking", "ablation_components", "pareto",
            "design_spaces"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch):
    if path.stem in RERUN_IN:
        monkeypatch.setenv("ARCHSPACE_NOTEBOOK_RERUN", "1")
    else:
        monkeypatch.delenv("ARCHSPACE_NOTEBOOK_RERUN", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "text/markdown" in kinds and "image/png" in kinds  # a table and a plot
