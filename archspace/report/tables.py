"""Result tables for notebooks and READMEs: load committed results, render them, plot them (data apart from drawing)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

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


def ablation_plot_data(table: dict[str, Any]) -> list[tuple[str, Optional[float], Optional[float], Optional[float]]]:
    """(label, proxy top-1 mean, its spread, paper top-1) per row."""
    return [(r["label"], r.get("top1_mean"), r.get("top1_std"), r.get("paper_top1")) for r in table["rows"]]


def plot_ablation(table: dict[str, Any], axes=None):
    """Two panels on one row order: proxy top-1 (mean, seed spread, each seed) and the paper's top-1; full row labels."""
    import matplotlib.pyplot as plt

    data = ablation_plot_data(table)
    rows = table["rows"]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.55 * len(data) + 1.8), dpi=110, sharey=True)
    left, right = axes
    ys = list(range(len(data)))[::-1]
    mine = [d[1] if d[1] is not None else float("nan") for d in data]
    err = [d[2] or 0.0 for d in data]
    left.barh(ys, mine, xerr=err, capsize=3, color="#1f77b4", height=0.6)
    for y, r in zip(ys, rows):
        for v in r.get("top1_seeds") or []:
            left.plot([v], [y], "k.", ms=4)
    finite = [v for v in mine if v == v]
    if finite:
        spread = max(err) if err else 0
        left.set_xlim(min(finite) - spread - 2, max(finite) + spread + 1)
    p = table.get("protocol", {})
    ev = (p.get("evaluator") or {}).get("budget", {})
    left.set_xlabel(f"proxy top-1 (%): {p.get('dataset', '?')}, {ev.get('epochs', '?')} epoch(s), {p.get('train_size', '?')} "
                    f"images, {ev.get('resolution', '?')} px, mean ± sd over {p.get('seeds', '?')} seeds (dots)", fontsize=7)
    paper = [d[3] if d[3] is not None else float("nan") for d in data]
    right.barh(ys, paper, color="#ff7f0e", height=0.6)
    pf = [v for v in paper if v == v]
    if pf:
        right.set_xlim(min(pf) - 1.0, max(pf) + 0.5)
    right.set_xlabel(table.get("paper_metric", "paper top-1 (%), ImageNet-1K"), fontsize=7)
    left.set_yticks(ys)
    left.set_yticklabels([d[0] for d in data], fontsize=8)
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
