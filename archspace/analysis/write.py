"""An analysis on disk: ``analysis.json`` (everything), ``groups.csv`` and ``pairs.csv`` (the tables), and its
figures, each titled with its protocol, normalisation and sample sizes. Every file is written atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GROUP_COLUMNS = ["label", "run", "n", "planned", "distinct", "n_weighted", "n_effective", "mean", "median", "best",
                 "best_of_8", "best_of_32", "ks_at_32"]
PAIR_COLUMNS = ["a", "b", "ks", "p_value", "p_holm", "mean_difference", "diff_lo", "diff_hi", "level", "p_a_better", "better",
                "dominant", "a_above", "b_above"]


def group_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per population: sizes, mean/median/best of the metric, expected best of 8 and 32, KS at 32 members."""
    out = []
    for g in result["groups"]:
        row = {k: g.get(k) for k in GROUP_COLUMNS}
        bk = {b["k"]: b["expected_best"] for b in g["best_of_k"]}
        row["best_of_8"], row["best_of_32"] = bk.get(8), bk.get(32)
        row["ks_at_32"] = next((s["ks_mean"] for s in g["sample_size"] if s["m"] == 32), None)
        out.append(row)
    return out


def write(result: dict[str, Any], out: Path, *, plots: bool = True) -> list[Path]:
    """Write the analysis into ``out``; returns the files."""
    from ..files import atomic_write_text
    from ..search.results import to_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if plots:
        files += _plots(result, out)
    for name, rows, cols in (("groups.csv", group_rows(result), GROUP_COLUMNS),
                             ("pairs.csv", result["pairs"], PAIR_COLUMNS)):
        atomic_write_text(out / name, to_csv(rows, cols))
        files.append(out / name)
    body = rounded({**result, "files": [str(f.name) for f in files] + ["analysis.json"]})
    atomic_write_text(out / "analysis.json", json.dumps(body, indent=1, default=float) + "\n")
    files.append(out / "analysis.json")
    return files


def rounded(value: Any) -> Any:
    """Floats to 6 decimals, as the CSV tables hold them (the EDF curves are most of the file)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def protocol_lines(result: dict[str, Any]) -> list[str]:
    """The figure's protocol: what was measured, how the EDFs are weighted, how many members."""
    lines = [f"{r['name']}: {r['protocol']}; {r['sampler']} sample" + (f" balanced over {', '.join(r['by'])}" if r["by"] else "")
             for r in result["runs"]]
    if result["normalize"] == "none":
        norm = "EDFs not normalised"
    elif result["bins"] is None:
        norm = f"one population ({result['normalize']} not needed to normalise)"
    else:
        norm = (f"EDFs normalised by {result['normalize']}: {result['shared_bins']} of {result['bins']} equal-frequency "
                f"bins of log {result['normalize']} shared, equal weight per bin (NDS)")
    weighted = result["normalize"] != "none" and result["bins"] is not None
    sizes = ", ".join(f"{g['label']} n={g['n']}" + (f" ({g['n_weighted']} in shared bins, effective {g['n_effective']:.0f})"
                                                     if weighted else "") for g in result["groups"])
    extra = f"; where {' and '.join(result['where'])}" if result["where"] else ""
    return [*lines, f"{norm}; bands: {result['level']:.0%} bootstrap{extra}", f"sizes: {sizes}"]


def _figure(result: dict[str, Any], title: str, width: float = 7.5, height: float = 4.8):
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone

    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    lines = protocol_lines(result)
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.005, "\n".join(_wrap(line) for line in lines), fontsize=6, va="bottom", ha="left")
    return fig, ax, len("\n".join(_wrap(line) for line in lines).splitlines())


def _wrap(line: str, width: int = 150) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(line, width)) or line


def _save(fig: Any, path: Path, footer_lines: int) -> Path:
    from ..files import atomic_write

    fig.tight_layout(rect=(0, min(0.45, 0.03 + 0.028 * footer_lines), 1, 0.95))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    return path


def draw_edf(ax: Any, result: dict[str, Any]) -> None:
    """The populations' EDFs with their bootstrap bands (the better side on the left)."""
    label = result["metric_label"]
    for g in result["groups"]:
        x, e = g["edf"]["x"], g["edf"]
        (line,) = ax.step(x, e["F"], where="post", label=f"{g['label']} (n={g['n']}, mean {g['mean']:.2f})")
        ax.fill_between(x, e["lo"], e["hi"], step="post", alpha=0.18, color=line.get_color(), linewidth=0)
    ax.set_xlabel(label)
    ax.set_ylabel("cumulative share of models" + ("" if result["normalize"] == "none" else " (complexity-normalised)"))
    if not result["lower_is_better"]:
        ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if len(result["pairs"]) == 1:
        p = result["pairs"][0]
        ax.text(0.99, 0.02, f"KS {p['ks']:.3f}, p={p['p_value']:.3g}; mean diff {p['mean_difference']:+.2f} "
                f"[{p['diff_lo']:+.2f}, {p['diff_hi']:+.2f}]", transform=ax.transAxes, ha="right", fontsize=7)


def draw_best_of_k(ax: Any, result: dict[str, Any]) -> None:
    """Random-search efficiency: the expected best of k samples per population, with its interval."""
    for g in result["groups"]:
        ks = [b["k"] for b in g["best_of_k"]]
        (line,) = ax.plot(ks, [b["expected_best"] for b in g["best_of_k"]], marker="o", ms=3, label=g["label"])
        ax.fill_between(ks, [b["lo"] for b in g["best_of_k"]], [b["hi"] for b in g["best_of_k"]], alpha=0.15,
                        color=line.get_color(), linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (models sampled)")
    ax.set_ylabel(f"best {result['metric_label']} of k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw_sample_size(ax: Any, result: dict[str, Any]) -> None:
    """NDS's sample-size check: the KS distance of an m-model subsample's EDF from the whole population's."""
    for g in result["groups"]:
        if g["sample_size"]:
            ax.plot([s["m"] for s in g["sample_size"]], [s["ks_mean"] for s in g["sample_size"]], marker="o", ms=3,
                    label=f"{g['label']} (of {g['n']})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("m (models in the subsample)")
    ax.set_ylabel("mean KS statistic")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw_importance(ax: Any, result: dict[str, Any]) -> bool:
    """Horizontal bars of each parameter's importance per run and objective (PED-ANOVA; fANOVA hatched); False when
    no importance was computed."""
    import numpy as np

    imps = [i for i in result["importance"] if i.get("ped_anova")]
    if not imps:
        return False
    names = sorted({n for i in imps for n in i["ped_anova"]})
    series = [(f"{i['run']}: {i['objective']}", i["ped_anova"], i.get("fanova")) for i in imps]
    h = 0.8 / (len(series) * (2 if any(s[2] for s in series) else 1))
    y = np.arange(len(names))
    j = 0
    for label, ped, fan in series:
        bars = ax.barh(y + j * h, [ped.get(n, 0) for n in names], height=h, label=f"{label} (PED-ANOVA)")
        j += 1
        if fan:
            ax.barh(y + j * h, [fan.get(n, 0) for n in names], height=h, color=bars.patches[0].get_facecolor(),
                    hatch="///", alpha=0.6, label=f"{label} (fANOVA)")
            j += 1
    ax.set_yticks(y + 0.4 - h / 2, names)
    ax.set_xlabel("importance (normalised to sum 1 per objective)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, axis="x")
    return True


def _plots(result: dict[str, Any], out: Path) -> list[Path]:
    better = "lower is better" if result["lower_is_better"] else "higher is better"
    label = result["metric_label"]
    files = []
    for name, title, draw in (("edf.png", f"EDF of {label} ({better})", draw_edf),
                              ("best_of_k.png", f"random-search efficiency: expected best {label} of k samples",
                               draw_best_of_k),
                              ("sample_size.png", "sample size: KS of an m-model subsample's EDF against the whole "
                               "population", draw_sample_size)):
        fig, ax, k = _figure(result, title)
        draw(ax, result)
        files.append(_save(fig, out / name, k))
    n_params = len({n for i in result["importance"] for n in i.get("ped_anova") or {}})
    series = sum(bool(i.get("ped_anova")) + bool(i.get("fanova")) for i in result["importance"])
    fig, ax, k = _figure(result, "parameter importance per objective (PED-ANOVA; fANOVA hatched)",
                         height=max(4.8, 2.0 + 0.04 * n_params * series))
    if draw_importance(ax, result):
        files.append(_save(fig, out / "importance.png", k))
    return files


def markdown(result: dict[str, Any]) -> str:
    """The populations and their pairwise comparisons as Markdown tables (for notebooks and READMEs)."""
    lower = "lower" if result["lower_is_better"] else "higher"
    lines = [f"**{result['metric_label']}** ({lower} is better); "
             + ("EDFs not normalised" if result["normalize"] == "none" else f"normalised by {result['normalize']}"), "",
             "| population | n | mean | median | best | expected best of 8 |", "|---|---:|---:|---:|---:|---:|"]
    for g in result["groups"]:
        b8 = next((b["expected_best"] for b in g["best_of_k"] if b["k"] == 8), None)
        lines.append(f"| {g['label']} | {g['n']} | {g['mean']:.2f} | {g['median']:.2f} | {g['best']:.2f} | "
                     + ("" if b8 is None else f"{b8:.2f}") + " |")
    if result["pairs"]:
        lines += ["", f"| a | b | KS | p | p (Holm) | mean a - b [{result['level']:.0%}] | P(a better) | EDF above |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for p in result["pairs"]:
            lines.append(f"| {p['a']} | {p['b']} | {p['ks']:.3f} | {p['p_value']:.3g} | {p['p_holm']:.3g} | "
                         f"{p['mean_difference']:+.2f} "
                         f"[{p['diff_lo']:+.2f}, {p['diff_hi']:+.2f}] | {p['p_a_better']:.2f} | {p['dominant']} |")
    return "\n".join(lines)
