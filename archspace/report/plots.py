"""Thin matplotlib renderers for the plot data in :mod:`archspace.report.pareto` (PNG and SVG)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from ..vocab import LABELS
from .pareto import FrontData, HypervolumeData


def _plt():
    import matplotlib.pyplot as plt  # headless machines fall back to Agg; notebooks keep their inline backend

    return plt


def _save(fig, path_stem: Path) -> list[Path]:
    """Write a figure as .png and .svg (each atomically) and close it."""
    from ..files import atomic_write

    out = []
    for ext in ("png", "svg"):
        p = Path(f"{path_stem}.{ext}")
        atomic_write(p, lambda tmp, ext=ext: fig.savefig(tmp, format=ext))
        out.append(p)
    _plt().close(fig)
    return out


def _wrap(label: str, width: int = 55) -> str:
    """A long protocol label on two lines, broken after its first colon ('proxy top-1 (%):' / the protocol)."""
    return label.replace(": ", ":\n", 1) if len(label) > width else label


def plot_front(data: FrontData, path_stem: Optional[Path] = None, title: str = "", ax=None,
               x_label: Optional[str] = None, y_label: Optional[str] = None) -> list[Path]:
    """Scatter of all trials, the Pareto front highlighted (a line only where it has two points or more), every
    front point labelled with its trial number, the base ringed (a searched trial), references measured alike
    starred; writes .png and .svg when given a path. ``x_label``/``y_label`` replace the plain axis names."""
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    else:
        fig = ax.figure
    if data.points:
        xs, ys, _ = zip(*data.points)
        ax.scatter(xs, ys, s=22, color="#9aa5b1", label="trials", zorder=2)
    if data.front:
        fx, fy, fn = zip(*data.front)
        style = "-o" if len(data.front) > 1 else "o"
        ax.plot(fx, fy, style, color="#d62728", ms=6, lw=1.8, zorder=3, drawstyle="steps-post",
                label="Pareto front" if len(data.front) > 1 else "Pareto front (one point)")
        for x, y, n in data.front:
            ax.annotate(f"#{n}", (x, y), textcoords="offset points", xytext=(4, -11), fontsize=7, color="#d62728")
    for i, (x, y, n) in enumerate(data.base):
        ax.scatter([x], [y], marker="o", s=110, facecolor="none", edgecolor="black", lw=1.4, zorder=4,
                   label="base (searched trial)" if i == 0 else None)
        ax.annotate(f"base #{n}", (x, y), textcoords="offset points", xytext=(-8, 7), ha="right", fontsize=7)
    for i, (x, y, label) in enumerate(data.references):
        ax.scatter([x], [y], marker="*", s=160, color="#1f77b4", edgecolor="black", zorder=4,
                   label="reference (same protocol, not searched)" if i == 0 else None)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(7, 3), fontsize=7, color="#1f4e79")
    ax.set_xlabel(_wrap(x_label or LABELS.get(data.x_key, data.x_key)), fontsize=8 if x_label else None)
    ax.set_ylabel(_wrap(y_label or LABELS.get(data.y_key, data.y_key)), fontsize=8 if y_label else None)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{LABELS.get(data.y_key)} vs {LABELS.get(data.x_key)}", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no completed trial", transform=ax.transAxes, ha="center", va="center", color="#888888")
    fig.tight_layout()
    return _save(fig, path_stem) if path_stem is not None else []


def plot_hypervolume(data: Union[HypervolumeData, Sequence[tuple[int, float]]], path_stem: Path, title: str = "",
                     y_label: str = "hypervolume (normalised over the run)") -> list[Path]:
    """Hypervolume of the front against trial number (whole-number ticks); front trials outside the reference box
    are named on the plot."""
    from matplotlib.ticker import MaxNLocator

    if not isinstance(data, HypervolumeData):
        data = HypervolumeData(list(data), [], "")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if data.curve:
        xs, ys = zip(*data.curve)
        ax.step(xs, ys, where="post", color="#2ca02c")
        ax.scatter(xs, ys, s=10, color="#2ca02c")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial" + ("\n" + data.words.replace(" (", "\n(", 1) if data.words else ""), fontsize=8 if data.words else None,
                  color="#b00000" if data.outside else "black")
    ax.set_ylabel(y_label, fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title or "hypervolume over trials", fontsize=8)
    fig.tight_layout()
    return _save(fig, path_stem)

