"""Plot data for a run, kept apart from drawing: fronts and hypervolume as typed records."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from ..search.store import hypervolume_curve, pareto_front, read_csv


class FrontData(NamedTuple):
    """Points of one accuracy-vs-cost plot: all trials, the 2-D front, the reference (base) trials."""

    x_key: str
    y_key: str
    points: list[tuple[float, float, int]]
    front: list[tuple[float, float, int]]
    references: list[tuple[float, float, str]]


def front_data(rows: Sequence[dict], x_key: str, y_key: str = "accuracy", x_direction: str = "minimize",
               y_direction: str = "maximize", references: Optional[dict[int, str]] = None) -> FrontData:
    """The data of an accuracy-against-cost plot (complete trials only; duplicates of a cached architecture dropped)."""
    done = [r for r in rows if r.get("verdict") == "complete" and r.get(x_key) is not None and r.get(y_key) is not None
            and r.get("cached_from") is None]
    pts = [(float(r[x_key]), float(r[y_key]), int(r["number"])) for r in done]
    fr = pareto_front(done, [x_key, y_key], [x_direction, y_direction])
    front = sorted(((float(r[x_key]), float(r[y_key]), int(r["number"])) for r in fr), key=lambda p: p[0])
    refs = [(float(r[x_key]), float(r[y_key]), (references or {})[int(r["number"])]) for r in done
            if int(r["number"]) in (references or {})]
    return FrontData(x_key, y_key, pts, front, refs)


def run_plot_data(run_dir: Path, objectives: Sequence[tuple[str, str]], references: Optional[dict[int, str]] = None
                  ) -> tuple[list[FrontData], list[tuple[int, float]]]:
    """Fronts of accuracy against latency and against FLOPs, and the hypervolume curve, from a run's trials.csv."""
    rows = read_csv(Path(run_dir) / "trials.csv")
    fronts = []
    for x in ("latency_ms", "gmacs"):
        if any(r.get(x) is not None for r in rows):
            fronts.append(front_data(rows, x, references=references))
    keys = [k for k, _ in objectives]
    dirs = [d for _, d in objectives]
    done = [r for r in rows if r.get("verdict") == "complete" and r.get("cached_from") is None]
    base = next((r for r in done if r.get("reference") == "base"), None)
    return fronts, hypervolume_curve(done, keys, dirs, reference=base)


def with_references(data: FrontData, rows: Sequence[dict], name_key: str = "reference") -> FrontData:
    """Add networks measured under the same protocol as the trials (rows of a run's references.csv, or any rows
    naming the network in ``name_key``) as reference points; one over the space's limits says so."""
    refs = list(data.references) + [
        (float(r[data.x_key]), float(r[data.y_key]), str(r[name_key]) + (" (over limits)" if r.get("verdict") == "infeasible" else ""))
        for r in rows if r.get(data.x_key) is not None and r.get(data.y_key) is not None]
    return data._replace(references=refs)
