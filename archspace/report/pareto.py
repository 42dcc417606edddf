"""Plot data for a run, kept apart from drawing: fronts and hypervolume as typed records."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from ..search.front import hypervolume_curve, pareto_front
from ..search.results import read_table

COSTS = ("latency_ms", "gmacs", "mparams", "images_per_s")
"""Cost columns an accuracy front is drawn against: the searched ones, and latency and MACs whenever measured."""
FRONT_FILES = {"latency_ms": "pareto_latency", "gmacs": "pareto_flops", "mparams": "pareto_params",
               "images_per_s": "pareto_throughput"}
BOX = 1.1
"""The hypervolume's reference point, as a multiple of the base's value in every objective (see hypervolume_curve)."""


class FrontData(NamedTuple):
    """Points of one accuracy-vs-cost plot: all trials, the 2-D front, references measured alike (not searched),
    the base (a searched trial)."""

    x_key: str
    y_key: str
    points: list[tuple[float, float, int]]
    front: list[tuple[float, float, int]]
    references: list[tuple[float, float, str]]
    base: list[tuple[float, float, int]] = []

    @property
    def file(self) -> str:
        """The plot's file stem in a run directory ('pareto_latency', 'pareto_params', ...)."""
        return front_file(self.x_key)


class HypervolumeData(NamedTuple):
    """Hypervolume after each trial, and the front trials outside the reference box (they add nothing to it)."""

    curve: list[tuple[int, float]]
    outside: list[int]
    box: str

    @property
    def words(self) -> str:
        """'front trials #3, #7 outside the reference box (1.1 x the base ...): they add nothing ...'; '' when normalised."""
        if not self.box:
            return ""
        if not self.outside:
            return f"every front trial lies inside the reference box ({self.box})"
        names = ", ".join(f"#{n}" for n in self.outside)
        many = len(self.outside) > 1
        return (f"front trial{'s' if many else ''} {names} outside the reference box ({self.box}): "
                f"{'they add' if many else 'it adds'} nothing to the hypervolume")


def front_file(x_key: str) -> str:
    """File stem of the accuracy front against ``x_key`` in a run directory ('pareto_latency_NAME' for a reported
    device profile's latency)."""
    import re

    from ..search.latency import REPORT_PREFIX

    if x_key.startswith(REPORT_PREFIX):
        return "pareto_latency_" + re.sub(r"[^A-Za-z0-9_.-]", "_", x_key[len(REPORT_PREFIX):])
    return FRONT_FILES.get(x_key, f"pareto_{x_key}")


def front_data(rows: Sequence[dict], x_key: str, y_key: str = "accuracy", x_direction: str = "minimize",
               y_direction: str = "maximize", references: Optional[dict[int, str]] = None) -> FrontData:
    """The data of an accuracy-against-cost plot (complete trials only; duplicates of a cached architecture dropped).
    ``references`` names searched trials that are a named network (the base, by number): they go to ``base``, drawn
    as searched trials, never as references."""
    done = [r for r in rows if r.get("verdict") == "complete" and r.get(x_key) is not None and r.get(y_key) is not None
            and r.get("cached_from") is None]
    pts = [(float(r[x_key]), float(r[y_key]), int(r["number"])) for r in done]
    fr = pareto_front(done, [x_key, y_key], [x_direction, y_direction])
    front = sorted(((float(r[x_key]), float(r[y_key]), int(r["number"])) for r in fr), key=lambda p: p[0])
    base = [(float(r[x_key]), float(r[y_key]), int(r["number"])) for r in done if int(r["number"]) in (references or {})]
    return FrontData(x_key, y_key, pts, front, [], base)


def front_axes(rows: Sequence[dict], objectives: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(cost column, direction) of every front to draw: each searched cost objective, then latency and MACs when
    measured; none without accuracy values."""
    if not any(r.get("accuracy") is not None for r in rows):
        return []
    searched = [(k, d) for k, d in objectives if k != "accuracy" and k in COSTS]
    from ..search.latency import REPORT_PREFIX

    reported = sorted({k for r in rows for k in r if k.startswith(REPORT_PREFIX)})  # device profiles reported, not searched
    measured = [(k, "minimize") for k in ("latency_ms", "gmacs", *reported) if k not in dict(searched)]
    return [(k, d) for k, d in searched + measured if any(r.get(k) is not None for r in rows)]


def hypervolume_data(rows: Sequence[dict], objectives: Sequence[tuple[str, str]]) -> HypervolumeData:
    """The hypervolume curve of complete trials over the objectives (ratios to the base when there is one) and the
    front trials lying outside the reference box (worse than ``BOX`` x the base in some objective)."""
    keys = [k for k, _ in objectives]
    dirs = [d for _, d in objectives]
    done = [r for r in rows if r.get("verdict") == "complete" and r.get("cached_from") is None]
    base = next((r for r in done if r.get("reference") == "base"), None)
    curve = hypervolume_curve(done, keys, dirs, reference=base)
    if base is None or any(base.get(k) in (None, 0) for k in keys):
        return HypervolumeData(curve, [], "")  # normalised over the run: every trial lies inside its box

    def outside(r: dict) -> bool:
        ratios = [float(r[k]) / float(base[k]) if d == "minimize" else float(base[k]) / max(float(r[k]), 1e-12)
                  for k, d in zip(keys, dirs)]
        return any(x >= BOX for x in ratios)

    front = pareto_front(done, keys, dirs)
    return HypervolumeData(curve, sorted(int(r["number"]) for r in front if outside(r)),
                           f"{BOX} x the base (trial {int(base['number'])}) in every objective")


def run_plot_data(run_dir: Path, objectives: Sequence[tuple[str, str]], references: Optional[dict[int, str]] = None
                  ) -> tuple[list[FrontData], HypervolumeData]:
    """Fronts of accuracy against every searched cost objective (and latency and MACs when measured), and the
    hypervolume data, from a run's trials.csv. ``references``: the base trial(s) by number, as in :func:`front_data`."""
    rows = read_table(Path(run_dir) / "trials.csv")
    fronts = [front_data(rows, x, x_direction=d, references=references) for x, d in front_axes(rows, objectives)]
    return fronts, hypervolume_data(rows, objectives)


def with_references(data: FrontData, rows: Sequence[dict], name_key: str = "reference") -> FrontData:
    """Add networks measured under the same protocol as the trials (rows of a run's references.csv, or any rows
    naming the network in ``name_key``) as reference points; one over the space's limits says so."""
    refs = list(data.references) + [
        (float(r[data.x_key]), float(r[data.y_key]), str(r[name_key]) + (" (over limits)" if r.get("verdict") == "infeasible" else ""))
        for r in rows if r.get(data.x_key) is not None and r.get(data.y_key) is not None]
    return data._replace(references=refs)
