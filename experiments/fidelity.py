"""Fidelity of cheap accuracy evaluators: rank correlation against a longer-training reference.

For >= 12 architectures from the SMT / EfficientMod space (paper presets at reduced depth and
width), score every cheap evaluator (each zero-cost proxy, params, FLOPs, 1-epoch and 3-epoch
proxy training) and a longer-training reference on Fashion-MNIST, then report Kendall tau-b and
Spearman rho of each evaluator against the reference, with its mean cost per architecture.

    .venv/bin/python experiments/fidelity.py --budget cpu            # ~15 min on a 2-core CPU
    .venv/bin/python experiments/fidelity.py --budget tiny           # smoke run, ~2 min
    .venv/bin/python experiments/fidelity.py --budget gpu --device cuda

Writes experiments/results/fidelity_scores{suffix}.csv (one row per architecture) and
experiments/results/fidelity{suffix}.csv (one row per evaluator).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import archspace
from archspace.evaluate import PROXIES, TrainBudget, proxy_batch, score_proxy, train_proxy
from archspace.spec.net import NetSpec

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS = (
    "smt_t", "smt_s", "smt_b", "smt_m",
    "efficientmod_xxs", "efficientmod_xs", "efficientmod_s", "efficientmod_s_conv",
)
VARIANTS = ((0.25, 1), (0.5, 2), (0.25, 3), (0.5, 1))  # (width multiplier, max blocks per stage)


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho: Pearson correlation of the (tie-averaged) ranks."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-b (ties in either variable corrected), O(n^2)."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    da, db = da[iu], db[iu]
    concordant_minus_discordant = float((da * db).sum())
    denom = math.sqrt(float((da != 0).sum()) * float((db != 0).sum()))
    return concordant_minus_discordant / denom if denom > 0 else float("nan")


def reduced(spec: NetSpec, width_mult: float, max_blocks: int) -> NetSpec:
    """A preset at reduced width (multiple of 16) and depth (first max_blocks blocks per stage, kinds kept)."""
    d = spec.model_dump()
    for stage in d["stages"]:
        stage["width"] = max(16, int(round(stage["width"] * width_mult / 16)) * 16)
        blocks = stage["blocks"]
        kinds = []
        keep = []
        for block in blocks:  # keep one block of each kind first, then fill in order
            if block["kind"] not in kinds:
                kinds.append(block["kind"])
                keep.append(block)
        for block in blocks:
            if len(keep) >= max_blocks:
                break
            if not any(block is k for k in keep):
                keep.append(block)
        stage["blocks"] = [b for b in blocks if any(b is k for k in keep)]  # original order
        for block in stage["blocks"]:
            if "heads" in block and block.get("kind") == "msa":
                block["heads"] = max(1, min(block["heads"], stage["width"] // 16))
    d["name"] = f"{spec.name}_w{width_mult:g}_d{max_blocks}"
    d["num_classes"] = 10
    return NetSpec.model_validate(d)


def architectures() -> list[NetSpec]:
    """The evaluated set: every preset at each (width, depth) reduction that validates and builds."""
    specs, seen = [], set()
    for width_mult, max_blocks in VARIANTS:  # variant-major order: --limit keeps the spread of presets
        for name in PRESETS:
            try:
                spec = reduced(archspace.load_spec(name), width_mult, max_blocks)
            except ValueError as exc:
                print(f"skip {name} w{width_mult} d{max_blocks}: {exc}", file=sys.stderr)
                continue
            key = spec.model_dump_json(exclude={"name"})
            if key not in seen:  # reductions of different presets can coincide
                seen.add(key)
                specs.append(spec)
    return specs


BUDGETS = {
    # (cheap training budget, reference budget)
    "tiny": (dict(train_subset=400, test_subset=500, batch_size=40), dict(epochs=4, train_subset=1000)),
    "cpu": (dict(train_subset=1200, test_subset=1000, batch_size=48), dict(epochs=5, train_subset=3000)),
    "gpu": (dict(train_subset=None, test_subset=None, batch_size=512), dict(epochs=15, augment=True)),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write both CSV files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads inside each run")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N architectures")
    parser.add_argument("--suffix", default="", help="appended to the CSV file names")
    args = parser.parse_args(argv)

    cheap, ref = BUDGETS[args.budget]
    base = TrainBudget(epochs=1, augment=False, lr=2e-3, warmup_epochs=0.3, seed=0, threads=args.threads, **cheap)
    budgets = {
        "train_1ep": base,
        "train_3ep": base.model_copy(update={"epochs": 3}),
        "reference": base.model_copy(update=ref),  # same recipe, more data and epochs
    }
    specs = architectures()[: args.limit]
    print(f"{len(specs)} architectures, budget {args.budget}, reference {budgets['reference'].epochs} epochs "
          f"x {budgets['reference'].train_subset} images", file=sys.stderr)
    batch = proxy_batch(size=64, resolution=32, device=args.device)
    rows: list[dict] = []
    t_all = time.perf_counter()
    for i, spec in enumerate(specs):

        def factory(spec: NetSpec = spec) -> torch.nn.Module:
            torch.manual_seed(0)
            return archspace.build(spec, num_classes=10)

        row: dict = {"arch": spec.name}
        model = factory().to(args.device)
        old_threads = torch.get_num_threads()
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            for proxy in PROXIES:
                result = score_proxy(model, proxy, batch)
                row[proxy], row[f"{proxy}_s"] = result.score, result.time_s
        finally:
            torch.set_num_threads(old_threads)
        for key, budget in budgets.items():
            result = train_proxy(factory, budget, device=args.device, fidelities=())
            row[key] = result.top1 if result.status == "ok" else float("nan")
            row[f"{key}_s"] = result.wall_time_s
        rows.append(row)
        print(f"[{i + 1}/{len(specs)}] {spec.name}: params {row['params']:.0f} ref {row['reference']:.3f} "
              f"1ep {row['train_1ep']:.3f} 3ep {row['train_3ep']:.3f} "
              f"({time.perf_counter() - t_all:.0f} s so far)", file=sys.stderr)

    RESULTS.mkdir(parents=True, exist_ok=True)
    scores_path = RESULTS / f"fidelity_scores{args.suffix}.csv"
    with open(scores_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    ref_scores = np.array([r["reference"] for r in rows], dtype=np.float64)
    summary = []
    for key in [*PROXIES, "train_1ep", "train_3ep"]:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        values = np.where(np.isneginf(values), -1e300, values)  # e.g. naswot singular kernel: rank last
        ok = np.isfinite(values) & np.isfinite(ref_scores)
        summary.append({
            "evaluator": key,
            "kendall_tau": round(kendall_tau_b(values[ok], ref_scores[ok]), 4),
            "spearman": round(spearman(values[ok], ref_scores[ok]), 4),
            "mean_cost_s": round(float(np.mean([r[f"{key}_s"] for r in rows])), 3),
            "n_archs": int(ok.sum()),
            "budget": args.budget,
            "device": args.device,
        })
    summary.append({"evaluator": "reference", "kendall_tau": 1.0, "spearman": 1.0,
                    "mean_cost_s": round(float(np.mean([r["reference_s"] for r in rows])), 3),
                    "n_archs": len(rows), "budget": args.budget, "device": args.device})
    summary_path = RESULTS / f"fidelity{args.suffix}.csv"
    with open(summary_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    print(f"{'evaluator':<10} {'tau':>7} {'rho':>7} {'cost_s':>8}")
    for s in summary:
        print(f"{s['evaluator']:<10} {s['kendall_tau']:>7.3f} {s['spearman']:>7.3f} {s['mean_cost_s']:>8.2f}")
    print(f"wrote {summary_path} and {scores_path} in {time.perf_counter() - t_all:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
