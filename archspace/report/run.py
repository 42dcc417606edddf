"""Rebuild a run directory's tables and plots; print its front."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..search.space import Space, load_space
from ..search.store import pareto_front, read_csv
from ..spec.errors import SpecError


def run_space(run_dir: Path) -> Space:
    """The space a run was made with (run_dir/space.yaml)."""
    path = Path(run_dir) / "space.yaml"
    if not path.exists():
        raise SpecError(f"{run_dir}: not a run directory (no space.yaml; run 'archspace search SPACE --run-dir {run_dir}')")
    return load_space(path)


def references(run_dir: Path) -> dict[int, str]:
    """Trials that are reference networks (the base), by number."""
    rows = read_csv(Path(run_dir) / "trials.csv")
    space = run_space(run_dir)
    base = space.base if isinstance(space.base, str) else "base"
    return {int(r["number"]): f"{Path(base).stem} (base)" for r in rows if r.get("reference") == "base"}


def make_report(run_dir: Path, space: Optional[Space] = None) -> list[Path]:
    """Write the Pareto plots (accuracy vs latency, vs FLOPs) and the hypervolume curve; returns the files."""
    from .pareto import run_plot_data
    from .plots import plot_front, plot_hypervolume

    run_dir = Path(run_dir)
    space = space or run_space(run_dir)
    if not (run_dir / "trials.csv").exists():
        raise SpecError(f"{run_dir}: no trials.csv yet (the search has not finished a trial)")
    objectives = [(o.key, o.direction) for o in space.objectives]
    fronts, curve = run_plot_data(run_dir, objectives, references(run_dir))
    out = []
    names = {"latency_ms": "pareto_latency", "gmacs": "pareto_flops"}
    from .diagnostics import protocol_label

    m = space.measure
    protocol = f"accuracy: {protocol_label(space.evaluator.model_dump(mode='json'))}"
    if m.latency:
        protocol += f"; latency: {m.device}, batch {m.batch}, {m.resolution} px, {m.threads} thread(s)"
    for data in fronts:
        out += plot_front(data, run_dir / names[data.x_key], title=f"{space.name}: {len(data.points)} architectures\n{protocol}")
    out += plot_hypervolume(curve, run_dir / "hypervolume", title=f"{space.name}: hypervolume over trials")
    if any(o.metric == "accuracy" for o in space.objectives):
        from ..files import atomic_write_text
        from .diagnostics import capacity_check, dumps, plot_capacity, protocol_label

        rows = read_csv(run_dir / "trials.csv")
        check = capacity_check(rows)
        atomic_write_text(run_dir / "fidelity.json", dumps(check))
        out += plot_capacity(rows, check, run_dir / "capacity", protocol_label(space.evaluator.model_dump(mode="json")))
    return out


def fidelity(run_dir: Path) -> Optional[dict]:
    """The run's fidelity diagnostics (written by make_report), or None."""
    import json

    path = Path(run_dir) / "fidelity.json"
    return json.loads(path.read_text()) if path.exists() else None


def best(run_dir: Path) -> list[dict]:
    """The Pareto set of a run over its objectives."""
    space = run_space(run_dir)
    rows = [r for r in read_csv(Path(run_dir) / "trials.csv") if r.get("verdict") == "complete"]
    return pareto_front(rows, [o.key for o in space.objectives], space.directions)
