"""Result tables for notebooks and READMEs: load committed results, render them, plot them (data apart from drawing)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

RESULTS = Path("experiments") / "results"
ABLATION_COLUMNS = [("label", "variant"), ("params_M", "params (M)"), ("paper_params_M", "paper params"),
                    ("gmacs_smt_paper", "GMACs"), ("paper_gflops", "paper GFLOPs"), ("latency_ms", "latency (ms)"),
                    ("images_per_s", "img/s"), ("paper_throughput", "paper img/s"), ("top1_mean", "proxy top-1"),
                    ("top1_std", "± (seeds)"), ("paper_top1", "paper top-1")]


def results_dir(start: Optional[Path] = None) -> Path:
    """experiments/results of the repository (found upwards from ``start`` or the working directory)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / RESULTS).is_dir():
            return folder / RESULTS
    raise FileNotFoundError(f"no {RESULTS} above {here}")


def load_ablation(name: str, directory: Optional[Path] = None) -> dict[str, Any]:
    """A committed ablation result (experiments/results/ablation_<name>.json)."""
    return json.loads((Path(directory or results_dir()) / f"ablation_{name}.json").read_text())


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` with (key, header) columns; None shows as blank."""
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def ablation_markdown(table: dict[str, Any]) -> str:
    """The ablation table with its title, protocol and rank correlation, as Markdown."""
    cols = [c for c in ABLATION_COLUMNS if any(r.get(c[0]) is not None for r in table["rows"])]
    p = table.get("protocol", {})
    lat = p.get("latency") or {}
    ev = (p.get("evaluator") or {}).get("budget", {})
    lines = [f"**{table['title']}**", "", markdown_table(table["rows"], cols), ""]
    if p:
        lines.append(f"Protocol: proxy top-1 on {p.get('dataset')} ({p.get('train_size')} train / {p.get('test_size')} test images, "
                     f"{ev.get('epochs')} epochs at {ev.get('resolution')} px, {p.get('seeds')} seeds) on {p.get('accuracy_device')}; "
                     f"latency: {lat.get('device_name', '?')}, batch {lat.get('batch')}, {lat.get('resolution')} px, "
                     f"{lat.get('threads')} thread(s), median of {lat.get('repeats')} ({p.get('latency_note', 'per trial')}); {p.get('params_flops')}.")
    corr = table.get("rank_correlation_vs_paper", {})
    lines.append(f"Rank correlation of proxy top-1 with the paper's top-1 over {corr.get('n')} rows: "
                 f"Kendall tau {corr.get('kendall_tau')}, Spearman {corr.get('spearman')}.")
    return "\n".join(lines)


def text_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A fixed-width terminal table of ``rows`` with (key, header) columns: numbers right-aligned to the decimals
    their column needs (at most 3), None blank."""
    def decimals(key: str) -> int:
        floats = [r[key] for r in rows if isinstance(r.get(key), float)]
        return min(3, max((len(repr(v).partition(".")[2]) for v in floats), default=0))

    places = {k: decimals(k) for k, _ in columns}

    def cell(k: str, v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (int, float)):
            return f"{v:,.{places[k]}f}"
        return str(v)
    cells = [[cell(k, r.get(k)) for k, _ in columns] for r in rows]
    numeric = [all(r.get(k) is None or (isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)) for r in rows)
               for k, _ in columns]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, (_, h) in enumerate(columns)]
    line = lambda cs: "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cs, widths, numeric)).rstrip()
    return "\n".join([line([h for _, h in columns]), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def correlation_words(corr: dict[str, Any]) -> str:
    """'Kendall tau -0.21 (90% over seeds: -0.52 to 0.21), Spearman -0.35, over 6 rows' (or why there is none)."""
    if corr.get("kendall_tau") is None:
        return f"no rank correlation: {corr.get('n', 0)} row(s) with both a proxy and a paper top-1 (needs 3)"
    ci = f" (90% over seeds: {corr['tau_lo90']} to {corr['tau_hi90']})" if corr.get("tau_lo90") is not None else ""
    return f"Kendall tau {corr['kendall_tau']}{ci}, Spearman {corr.get('spearman')}, over {corr.get('n')} rows"


def ablation_text(table: dict[str, Any]) -> str:
    """The ablation result for a terminal: title, one line per row (columns with a value), the rank correlation."""
    cols = [c for c in ABLATION_COLUMNS if any(r.get(c[0]) is not None for r in table["rows"])]
    return "\n".join([table["title"], text_table(table["rows"], cols),
                      f"rank correlation of proxy top-1 with the paper's top-1: {correlation_words(table.get('rank_correlation_vs_paper', {}))}"])


class AblationPoint(NamedTuple):
    """One row of an ablation dot plot: proxy top-1 mean, its interval over seeds (lowest, highest), each seed, the paper."""

    label: str
    mean: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    seeds: list[float]
    paper: Optional[float]


def ablation_plot_data(table: dict[str, Any]) -> list[AblationPoint]:
    """Per row, top to bottom: proxy top-1 mean, its interval over the seeds (min to max), each seed, paper top-1."""
    out = []
    for r in table["rows"]:
        seeds = [float(v) for v in r.get("top1_seeds") or []]
        out.append(AblationPoint(r["label"], r.get("top1_mean"), min(seeds) if seeds else None,
                                 max(seeds) if seeds else None, seeds, r.get("paper_top1")))
    return out


def plot_ablation(table: dict[str, Any], axes=None):
    """Two dot plots on one row order, each axis spanning its data (no bars from an arbitrary baseline): proxy top-1
    (each seed, the interval over seeds, the mean) and the paper's top-1; full row labels."""
    import matplotlib.pyplot as plt

    data = ablation_plot_data(table)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.55 * len(data) + 1.8), dpi=110, sharey=True)
    left, right = axes
    ys = list(range(len(data)))[::-1]
    for y, d in zip(ys, data):
        if d.lo is not None:
            left.plot([d.lo, d.hi], [y, y], "-", color="#1f77b4", lw=2.2, alpha=0.45, solid_capstyle="round")
            left.plot(d.seeds, [y] * len(d.seeds), "o", ms=3.5, color="#1f4e79", alpha=0.8)
        if d.mean is not None:
            left.plot([d.mean], [y], "D", ms=6.5, color="#1f77b4", markeredgecolor="black", zorder=3)
        if d.paper is not None:
            right.plot([d.paper], [y], "D", ms=6.5, color="#ff7f0e", markeredgecolor="black", zorder=3)
    p = table.get("protocol", {})
    ev = (p.get("evaluator") or {}).get("budget", {})
    left.set_xlabel(f"proxy top-1 (%): {p.get('dataset', '?')}, {ev.get('epochs', '?')} epoch(s), {p.get('train_size', '?')} "
                    f"images, {ev.get('resolution', '?')} px\n\u25c6 mean, \u2022 each of {p.get('seeds', '?')} seeds, line: "
                    f"lowest to highest seed", fontsize=7)
    right.set_xlabel(table.get("paper_metric", "paper top-1 (%), ImageNet-1K"), fontsize=7)
    for ax in axes:
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    left.set_yticks(ys)
    left.set_yticklabels([d.label for d in data], fontsize=8)
    left.set_ylim(-0.7, len(data) - 0.3)
    corr = table.get("rank_correlation_vs_paper", {})
    ci = (f" [{corr['tau_lo90']}, {corr['tau_hi90']}] over seeds" if corr.get("tau_lo90") is not None else "")
    left.figure.suptitle(f"{table['title']}\nKendall tau vs paper {corr.get('kendall_tau')}{ci}", fontsize=9)
    left.figure.tight_layout()
    return axes


def rerun_small(ablation_file: Path, workdir: Path, evaluator: Optional[dict] = None) -> dict[str, Any]:
    """Re-run an ablation at a small CPU budget (1 seed, tiny training, no latency) and return its table."""
    from ..search.ablation import load_ablation as load_file, run_ablation

    ab = load_file(ablation_file)
    small = evaluator or {"kind": "train", "budget": {"epochs": 1, "train_subset": 100, "test_subset": 100,
                                                      "resolution": 32, "batch_size": 50, "threads": 2}}
    ab = type(ab).model_validate({**ab.model_dump(), "evaluator": small, "seeds": 1, "measure": {"latency": False}})
    return run_ablation(ab, Path(workdir) / "run", Path(workdir) / "out", source=f"{ablation_file} (small re-run)")


def pareto_markdown(rows: Sequence[dict], keys: Sequence[str]) -> str:
    """A front (rows from pareto.csv) as Markdown."""
    from ..vocab import LABELS as names
    return markdown_table(rows, [("number", "trial"), *[(k, names.get(k, k)) for k in keys], ("spec_hash", "spec")])


def order_agreement(table: dict[str, Any]) -> str:
    """Which pairs of rows the proxy orders as the paper does, as a sentence."""
    rows = [r for r in table["rows"] if r.get("top1_mean") is not None and r.get("paper_top1") is not None]
    agree, disagree, ties = [], [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows[i], rows[j]
            dp = a["paper_top1"] - b["paper_top1"]
            dm = a["top1_mean"] - b["top1_mean"]
            pair = f"{a['label']} vs {b['label']}"
            noise = (a.get("top1_std") or 0.0) + (b.get("top1_std") or 0.0)
            if dp == 0:
                ties.append(pair)
            elif dp * dm > 0:
                agree.append(pair)
            else:
                disagree.append(pair + (" (within the seeds' noise)" if abs(dm) <= noise else " (beyond the seeds' noise)"))
    total = len(agree) + len(disagree)
    if not total:
        return "No pair of rows has both a measured and a printed accuracy."
    return (f"The proxy orders {len(agree)} of {total} pairs as the paper does"
            + (f"; it disagrees on: {'; '.join(disagree)}" if disagree else "")
            + (f". Tied in the paper: {'; '.join(ties)}." if ties else "."))
