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


def plot_ablation(table: dict[str, Any], ax=None):
    """Proxy top-1 (mean ± spread over seeds) beside the paper's top-1, one pair of bars per row."""
    import matplotlib.pyplot as plt

    data = ablation_plot_data(table)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    xs = range(len(data))
    mine = [d[1] if d[1] is not None else float("nan") for d in data]
    err = [d[2] or 0.0 for d in data]
    ax.bar([x - 0.2 for x in xs], mine, width=0.4, yerr=err, capsize=3, color="#1f77b4", label="proxy top-1 (this run)")
    ax.set_ylabel("proxy top-1 (%)")
    ax2 = ax.twinx()
    paper = [d[3] if d[3] is not None else float("nan") for d in data]
    ax2.bar([x + 0.2 for x in xs], paper, width=0.4, color="#ff7f0e", alpha=0.8, label="paper top-1 (ImageNet)")
    ax2.set_ylabel("paper top-1 (%)")
    finite = [v for v in mine if v == v]
    if finite:
        ax.set_ylim(min(finite) - 3, max(finite) + 2)
    pf = [v for v in paper if v == v]
    if pf:
        ax2.set_ylim(min(pf) - 1.5, max(pf) + 0.7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([d[0][:22] for d in data], rotation=25, ha="right", fontsize=8)
    ax.set_title(table["title"], fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.figure.tight_layout()
    return ax


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
    names = {"accuracy": "proxy top-1 (%)", "latency_ms": "latency (ms)", "gmacs": "GMACs", "mparams": "params (M)"}
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
            if dp == 0:
                ties.append(pair)
            elif dp * dm > 0:
                agree.append(pair)
            else:
                disagree.append(pair)
    total = len(agree) + len(disagree)
    if not total:
        return "No pair of rows has both a measured and a printed accuracy."
    return (f"The proxy orders {len(agree)} of {total} pairs as the paper does"
            + (f"; it disagrees on: {'; '.join(disagree)}" if disagree else "")
            + (f". Tied in the paper: {'; '.join(ties)}." if ties else "."))
