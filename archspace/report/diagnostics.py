"""Fidelity diagnostics of a run: does proxy accuracy rise with capacity, and how noisy are the seeds?

A proxy too cheap to separate capacity ranks small networks first (they learn fastest in a few
steps) and the Pareto front collapses to the smallest network. :func:`capacity_check` measures
that on a run's own trials: Kendall tau of accuracy against params and against FLOPs, and the
spread of accuracy between evaluations of one architecture under different seeds.
"""
from __future__ import annotations

import json
from statistics import pstdev
from typing import Any, Sequence

WARNING = "budget too small to separate capacity: accuracy falls with params"


def capacity_check(rows: Sequence[dict]) -> dict[str, Any]:
    """Rank correlation of accuracy with params and FLOPs over completed trials, seed noise, and a warning if any."""
    from scipy.stats import kendalltau

    done = [r for r in rows if r.get("verdict") == "complete" and r.get("accuracy") is not None
            and r.get("cached_from") is None]
    by_arch: dict[str, list[float]] = {}
    for r in done:
        by_arch.setdefault(str(r.get("spec_hash")), []).append(float(r["accuracy"]))
    firsts = {}
    for r in done:
        firsts.setdefault(str(r.get("spec_hash")), r)
    archs = list(firsts.values())
    out: dict[str, Any] = {"n_architectures": len(archs), "tau_params": None, "tau_flops": None, "seed_sd": None,
                           "warning": None}
    if len(archs) >= 3:
        acc = [sum(by_arch[str(r["spec_hash"])]) / len(by_arch[str(r["spec_hash"])]) for r in archs]
        for key, col in (("tau_params", "mparams"), ("tau_flops", "gmacs")):
            vals = [r.get(col) for r in archs]
            if all(v is not None for v in vals):
                t = kendalltau([float(v) for v in vals], acc).statistic
                out[key] = None if t != t else round(float(t), 3)
    spreads = [pstdev(v) for v in by_arch.values() if len(v) > 1]
    if spreads:
        out["seed_sd"] = round(sum(spreads) / len(spreads), 3)
        out["seeded_architectures"] = len(spreads)
    if out["tau_params"] is not None and out["tau_params"] < 0 and len(archs) >= 4:
        out["warning"] = f"{WARNING} (Kendall tau {out['tau_params']} over {len(archs)} architectures)"
    return out


def describe(check: dict[str, Any]) -> str:
    """One or two lines for the terminal."""
    if check["tau_params"] is None:
        return f"fidelity: too few completed architectures ({check['n_architectures']}) to judge accuracy against capacity"
    line = (f"fidelity: Kendall tau of accuracy with params {check['tau_params']}, with FLOPs {check['tau_flops']} "
            f"over {check['n_architectures']} architectures")
    if check.get("seed_sd") is not None:
        line += f"; seed noise sd {check['seed_sd']} over {check['seeded_architectures']} architectures"
    if check.get("warning"):
        line += f"\nwarning: {check['warning']}"
    return line


def plot_capacity(rows: Sequence[dict], check: dict[str, Any], path_stem, protocol: str = "") -> list:
    """Accuracy against params of every completed trial, with the rank correlation in the title; ``protocol`` is the
    accuracy axis label (:func:`protocol_label`)."""
    import matplotlib.pyplot as plt

    from .plots import _save

    done = [r for r in rows if r.get("verdict") == "complete" and r.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if done:
        ax.scatter([float(r["mparams"]) for r in done], [float(r["accuracy"]) for r in done], s=22, color="#1f77b4")
    ax.set_xlabel("params (M)")
    ax.set_ylabel(protocol.replace(": ", ":\n", 1) if protocol else "accuracy", fontsize=8)
    ax.grid(alpha=0.3)
    title = f"accuracy vs capacity: Kendall tau {check.get('tau_params')} (params), {check.get('tau_flops')} (FLOPs)"
    if check.get("warning"):
        title += "\n" + WARNING
    ax.set_title(title, fontsize=9, color="#b00000" if check.get("warning") else "black")
    fig.tight_layout()
    return _save(fig, path_stem)


def dumps(check: dict[str, Any]) -> str:
    return json.dumps(check, indent=2) + "\n"


def protocol_label(space) -> str:
    """The accuracy axis of a space, its protocol resolved: 'proxy top-1 (%): fashion-mnist, 1 ep x 2,400 img, ...'
    when trained, 'naswot score on fashion-mnist' for a zero-cost evaluator."""
    return axis_labels(space)["accuracy"]


def axis_labels(space, rows=None) -> dict[str, str]:
    """Axis labels that say their protocol: accuracy (dataset, epochs, images, resolution), latency (its source and
    unit, device, batch, resolution, threads; the unit the ``rows`` recorded when given), MACs (convention,
    resolution)."""
    from ..search.results import accuracy_label, latency_axis, protocol, with_units
    from ..vocab import LABELS

    p = with_units(protocol(space), rows)
    out = dict(LABELS)
    trained = p["evaluator"] == "train"  # a zero-cost score (naswot near 700, synflow, params) is no top-1 %
    out["accuracy"] = f"{LABELS['accuracy']}: {accuracy_label(p)}" if trained else accuracy_label(p)
    if latency_axis(p):
        out["latency_ms"] = latency_axis(p)
    from ..search.latency import REPORT_PREFIX, load

    for path in space.measure.report_profiles:
        prof = load(path)[0]
        out[REPORT_PREFIX + prof.name] = f"predicted latency (ms) on {prof.label()}"
    out["gmacs"] = f"{LABELS['gmacs']} ({p['gmacs_convention']}) at {space.measure.resolution} px"
    return out
