"""Rebuild a run directory's tables and plots; print its front."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..search.rundir import run_space
from ..search.space import Space
from ..search.front import pareto_front
from ..search.results import read_table
from ..spec.errors import SpecError


def references(run_dir: Path) -> dict[int, str]:
    """Trials that are reference networks (the base), by number."""
    rows = read_table(Path(run_dir) / "trials.csv")
    space = run_space(run_dir)
    base = space.base if isinstance(space.base, str) else "base"
    return {int(r["number"]): f"{Path(base).stem} (base)" for r in rows if r.get("reference") == "base"}


def reference_rows(run_dir: Path, space: Space) -> list[dict]:
    """The run's references measured under its protocol, with their standing against the current trials
    (references.csv is rewritten with it)."""
    from .references import read_references, with_standing, write_references

    rows = read_references(run_dir, space)
    if rows:
        rows = with_standing(rows, read_table(Path(run_dir) / "trials.csv"), space)
        write_references(run_dir, rows)
    return rows


def make_report(run_dir: Path, space: Optional[Space] = None) -> list[Path]:
    """Write the Pareto plots (accuracy vs latency, vs FLOPs) and the hypervolume curve; returns the files."""
    from .pareto import run_plot_data
    from .plots import plot_front, plot_hypervolume

    run_dir = Path(run_dir)
    space = space or run_space(run_dir)
    if not (run_dir / "trials.csv").exists():
        raise SpecError(f"{run_dir}: no trials.csv yet (the search has not finished a trial)")
    objectives = [(o.key, o.direction) for o in space.objectives]
    refs = references(run_dir)
    fronts, curve = run_plot_data(run_dir, objectives, refs)
    measured = reference_rows(run_dir, space)
    out = []
    from .diagnostics import axis_labels
    from .pareto import with_references

    labels = axis_labels(space, read_table(run_dir / "trials.csv"))
    for data in fronts:
        data = with_references(data, measured)
        note = f"\n(stars: {len(measured)} reference(s) measured alike, not searched)" if measured else ""
        out += plot_front(data, run_dir / data.file, title=f"{space.name}: {len(data.points)} architectures, "
                          f"front of {len(data.front)} over these two axes{note}", x_label=labels[data.x_key],
                          y_label=labels[data.y_key])
    has_base = any(v.endswith("(base)") for v in refs.values())
    from ..search.results import protocol_words

    out += plot_hypervolume(curve, run_dir / "hypervolume", title=f"{space.name}: hypervolume over trials "
                            f"({', '.join(o.key for o in space.objectives)})\n" + protocol_words(space).replace("; ", "\n"),
                            y_label="hypervolume (ratios to the base, ref. 1.1 x)" if has_base
                            else "hypervolume (normalised over the run)")
    out += write_html(run_dir, space, labels)
    if any(o.metric == "accuracy" for o in space.objectives):
        from ..files import atomic_write_text
        from .diagnostics import capacity_check, dumps, plot_capacity, protocol_label

        rows = read_table(run_dir / "trials.csv")
        check = capacity_check(rows)
        atomic_write_text(run_dir / "fidelity.json", dumps(check))
        out += plot_capacity(rows, check, run_dir / "capacity", protocol_label(space))
    return out


def write_html(run_dir: Path, space: Space, labels: dict[str, str]) -> list[Path]:
    """pareto.html: the accuracy-cost planes as interactive plotly charts (hover: trial, architecture, values), when
    plotly is installed (``pip install 'archspace[html]'``); nothing otherwise."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return []
    from ..files import atomic_write_text
    from .pareto import front_axes, front_data

    rows = [r for r in read_table(run_dir / "trials.csv") if r.get("verdict") == "complete"]
    axes = front_axes(rows, [(o.key, o.direction) for o in space.objectives])
    xs = [x for x, _ in axes]
    if not xs:
        return []
    fig = make_subplots(rows=1, cols=len(xs))
    by_number = {int(r["number"]): r for r in rows}
    for col, x in enumerate(xs, start=1):
        data = front_data(rows, x, x_direction=dict(axes)[x])
        for pts, name, color in ((data.points, "trials", "#9aa5b1"), (data.front, "Pareto front", "#d62728")):
            if not pts:
                continue
            text = [f"trial {n}<br>{by_number[n].get('arch') or ''}<br>{by_number[n].get('mparams', 0):.2f} M params"
                    for _, _, n in pts]
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers" if name == "trials" or
                                     len(pts) == 1 else "lines+markers", name=name, text=text, hoverinfo="text+x+y",
                                     marker={"color": color, "size": 8 if name == "trials" else 10},
                                     line={"shape": "hv"}, showlegend=col == 1), row=1, col=col)
        refs = [r for r in reference_rows(run_dir, space) if r.get(x) is not None and r.get("accuracy") is not None]
        if refs:
            fig.add_trace(go.Scatter(x=[r[x] for r in refs], y=[r["accuracy"] for r in refs], mode="markers+text",
                                     name="references (same protocol, not searched)", text=[r["reference"] for r in refs],
                                     textposition="top right", hovertext=[f"{r['reference']}<br>{r.get('arch') or ''}<br>"
                                                                          f"{r.get('standing') or ''}" for r in refs],
                                     hoverinfo="text+x+y", marker={"color": "#1f77b4", "size": 13, "symbol": "star"},
                                     showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text=labels[x], row=1, col=col)
        fig.update_yaxes(title_text=labels["accuracy"], row=1, col=col)
    fig.update_layout(title=f"{space.name}: {len(rows)} complete trials", template="plotly_white", height=520)
    path = run_dir / "pareto.html"
    atomic_write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return [path]


def fidelity(run_dir: Path) -> Optional[dict]:
    """The run's fidelity diagnostics (written by make_report), or None."""
    import json

    path = Path(run_dir) / "fidelity.json"
    return json.loads(path.read_text()) if path.exists() else None


def best(run_dir: Path) -> list[dict]:
    """The Pareto set of a run over its objectives."""
    space = run_space(run_dir)
    rows = [r for r in read_table(Path(run_dir) / "trials.csv") if r.get("verdict") == "complete"]
    return pareto_front(rows, [o.key for o in space.objectives], space.directions)
