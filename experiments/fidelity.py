"""Proxy design study: which cheap training setting ranks architectures like a much longer training.

Every candidate setting (input resolution, proxy stem stride, width multiplier, epochs, subset
size, ...) trains the same architectures: the papers' presets (SMT-M/T/S, EfficientMod xxs/xs/s,
full size) and architectures sampled from ``spaces/*.yaml``. Each setting is judged by

- Kendall tau-b (with a bootstrap 90% interval over architectures) and Spearman rho of its
  accuracies against a reference setting several times more expensive,
- ``capacity_tau``: whether accuracy rises with capacity among the presets of each family
  (tau of accuracy against params within SMT M<T<S and EfficientMod xxs<xs<s, averaged),
- its mean cost per architecture, and tau per CPU-minute.

Zero-cost proxies (synflow, snip, grad_norm, NASWOT, params, FLOPs) are scored against the same
reference. Runs are appended to ``results/fidelity_runs.csv`` as they finish, so an interrupted
study resumes where it stopped; ``--workers`` runs that many single-thread processes.

    .venv/bin/python experiments/fidelity.py                  # the study (about 70 min on 2 idle cores)
    .venv/bin/python experiments/fidelity.py --summarize      # tables from the runs so far
    .venv/bin/python experiments/fidelity.py --settings tiny --archs 3 --suffix _smoke   # smoke run

Writes results/fidelity_runs{suffix}.csv (one row per setting x architecture) and
results/fidelity{suffix}.csv (one row per setting or proxy).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SPACES = Path(__file__).resolve().parent.parent / "spaces"

PRESETS = ("smt_m_6p5m", "smt_t", "smt_s", "efficientmod_xxs", "efficientmod_xs", "efficientmod_s")
FAMILIES = (("smt_m_6p5m", "smt_t", "smt_s"), ("efficientmod_xxs", "efficientmod_xs", "efficientmod_s"))
SAMPLED = (("smt", 1), ("hybrid", 1), ("efficientmod", 1))  # (space, how many architectures drawn from it)

# name -> (TrainBudget overrides on top of the CPU recipe, what the setting tests)
COMMON = dict(test_subset=1000, batch_size=48, lr=2e-3, weight_decay=0.05, warmup_epochs=0.3, schedule="cosine",
              augment=False, seed=0)
SETTINGS = {
    "s4_1200x2": (dict(resolution=32, epochs=2, train_subset=1200),
                  "the old default: 32 px, stem stride 4 (maps 8/4/2/1), 2 epochs on 1,200 images"),
    "s4_2400x1": (dict(resolution=32, epochs=1, train_subset=2400),
                  "same steps, twice the images, one epoch (EcoNAS: samples over epochs)"),
    "s2_1200x1": (dict(resolution=32, stem_stride=2, epochs=1, train_subset=1200),
                  "proxy stem stride 2 (maps 16/8/4/2), one epoch on 1,200 images"),
    "s2w05_2400x1": (dict(resolution=32, stem_stride=2, width_mult=0.5, epochs=1, train_subset=2400),
                     "stem stride 2 at half width, one epoch on 2,400 images"),
    "reference": (dict(resolution=32, stem_stride=2, epochs=1, train_subset=7200),
                  "stem stride 2, one epoch on 7,200 images: 6x the image-steps of s2_1200x1, 3x those of s4"),
}
TINY = {
    "tiny_a": (dict(resolution=32, epochs=1, train_subset=200, test_subset=200), "smoke"),
    "reference": (dict(resolution=32, stem_stride=2, epochs=1, train_subset=400, test_subset=200), "smoke"),
}
PROXY_KINDS = ("synflow", "snip", "grad_norm", "naswot", "params", "flops")
RUN_FIELDS = ["setting", "arch", "params", "gmacs_224", "top1", "wall_s", "images_per_s", "status"]


def architectures(n_archs: int | None = None) -> list:
    """The presets, then architectures drawn at random (seeded) from the shipped spaces, feasible ones only."""
    import optuna

    import archspace
    from archspace.search.trial import screen
    from archspace.search.space import load_space, suggest

    specs = [archspace.load_spec(name).model_copy(update={"num_classes": 10}) for name in PRESETS]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for space_name, count in SAMPLED:
        space = load_space(SPACES / f"{space_name}.yaml")
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7), directions=space.directions)
        found = 0
        while found < count:
            trial = study.ask()
            out = screen(space, suggest(trial, space))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if out.verdict == "complete":
                specs.append(out.spec.model_copy(update={"name": f"{space_name}_{out.spec_hash[:6]}"}))
                found += 1
    return specs[:n_archs] if n_archs else specs


def _run_one(setting: str, overrides: dict, spec_json: str) -> dict:
    """One training run in a single-thread worker process."""
    import torch

    torch.set_num_threads(1)
    from archspace.evaluate import TrainBudget, train_proxy
    from archspace.measure.complexity import complexity
    from archspace.spec.net import NetSpec

    spec = NetSpec.model_validate_json(spec_json)
    budget = TrainBudget(**{**COMMON, **overrides, "threads": 1})
    res = train_proxy(spec, budget, fidelities=())
    return {"setting": setting, "arch": spec.name, "params": res.params, "gmacs_224": complexity(spec)["smt-paper"] / 1e9,
            "top1": res.top1 if res.status == "ok" else float("nan"), "wall_s": round(res.wall_time_s, 2),
            "images_per_s": round(res.images_per_s, 1), "status": res.status}


def read_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_study(settings: dict, specs: list, path: Path, workers: int) -> None:
    """Every (architecture, setting) not yet in ``path``, architecture-major so partial results are complete rows."""
    done = {(r["setting"], r["arch"]) for r in read_runs(path)}
    jobs = [(name, overrides, spec) for spec in specs for name, (overrides, _) in settings.items()
            if (name, spec.name) not in done]
    print(f"{len(specs)} architectures x {len(settings)} settings: {len(jobs)} runs to do, {len(done)} done", file=sys.stderr)
    new = not path.exists()
    t0 = time.perf_counter()
    with open(path, "a", newline="") as fh, ProcessPoolExecutor(max_workers=workers) as pool:
        writer = csv.DictWriter(fh, fieldnames=RUN_FIELDS)
        if new:
            writer.writeheader()
        futures = {pool.submit(_run_one, name, overrides, spec.model_dump_json()): (name, spec.name) for name, overrides, spec in jobs}
        for i, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            writer.writerow(row)
            fh.flush()
            print(f"[{i}/{len(jobs)}] {row['arch']:>22} {row['setting']:<14} top1 {row['top1']:.4f} {row['wall_s']:7.1f} s "
                  f"({time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho (scipy; NaN when either side is constant)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-b, ties corrected (scipy, as the ablation tables and the report use; NaN when constant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def bootstrap_tau(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """5th and 95th percentiles of Kendall tau-b over architectures resampled with replacement."""
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n):
        idx = rng.integers(0, len(a), len(a))
        t = kendall_tau_b(a[idx], b[idx])
        if math.isfinite(t):
            taus.append(t)
    return (float(np.percentile(taus, 5)), float(np.percentile(taus, 95))) if taus else (float("nan"), float("nan"))


def capacity_tau(acc: dict[str, float], params: dict[str, float]) -> float:
    """Mean over preset families of Kendall tau between accuracy and params (1: accuracy rises with capacity)."""
    taus = []
    for family in FAMILIES:
        names = [n for n in family if n in acc and math.isfinite(acc[n])]
        if len(names) >= 2:
            taus.append(kendall_tau_b(np.array([params[n] for n in names]), np.array([acc[n] for n in names])))
    return float(np.mean(taus)) if taus else float("nan")


def proxy_scores(specs: list) -> dict[str, dict[str, tuple[float, float]]]:
    """Zero-cost proxy scores per architecture: {proxy: {arch: (score, seconds)}}."""
    import torch

    from archspace.evaluate import TrainBudget, evaluate

    torch.set_num_threads(2)
    out: dict[str, dict[str, tuple[float, float]]] = {k: {} for k in PROXY_KINDS}
    for spec in specs:
        for kind in PROXY_KINDS:
            res = evaluate(spec, kind, budget=TrainBudget(resolution=32, seed=0))
            out[kind][spec.name] = (float(res.score), float(res.time_s))
    return out


def summarize(settings: dict, specs: list, runs_path: Path, out_path: Path, with_proxies: bool) -> list[dict]:
    """One row per setting (and proxy): fidelity against the reference, capacity order, cost."""
    runs = read_runs(runs_path)
    by = {(r["setting"], r["arch"]): r for r in runs}
    archs = [s.name for s in specs if ("reference", s.name) in by]
    params = {a: float(by[("reference", a)]["params"]) for a in archs}
    rows = []

    def judge(name: str, scores: dict[str, float], costs: dict[str, float], about: str) -> None:
        common = [a for a in archs if a in scores and math.isfinite(scores[a])]
        if len(common) < 3:
            return
        x = np.array([scores[a] for a in common])
        y = np.array([float(by[("reference", a)]["top1"]) for a in common])
        tau = kendall_tau_b(x, y)
        lo, hi = bootstrap_tau(x, y)
        cost = float(np.mean([costs[a] for a in common]))
        rows.append({"setting": name, "kendall_tau": round(tau, 3), "tau_lo90": round(lo, 3), "tau_hi90": round(hi, 3),
                     "spearman": round(spearman(x, y), 3), "capacity_tau": round(capacity_tau(scores, params), 3),
                     "mean_top1": round(float(np.mean(x)), 4) if name in settings else "",
                     "mean_cost_s": round(cost, 2), "tau_per_cpu_min": round(tau / (cost / 60), 3) if cost > 0 else "",
                     "n_archs": len(common), "about": about})

    for name, (_, about) in settings.items():
        scores = {a: float(by[(name, a)]["top1"]) for a in archs if (name, a) in by}
        costs = {a: float(by[(name, a)]["wall_s"]) for a in archs if (name, a) in by}
        judge(name, scores, costs, about)
    if with_proxies:
        for kind, vals in proxy_scores([s for s in specs if s.name in archs]).items():
            scores = {a: (v if math.isfinite(v) else -1e300) for a, (v, _) in vals.items()}
            judge(kind, scores, {a: t for a, (_, t) in vals.items()}, "zero-cost proxy (batch 64, 32 px)")
    with open(out_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'setting':<14} {'tau':>6} {'90% CI':>15} {'rho':>6} {'cap':>6} {'top1':>6} {'cost s':>7}   ({len(archs)} archs)")
    for r in rows:
        print(f"{r['setting']:<14} {r['kendall_tau']:>6.2f} [{r['tau_lo90']:>5.2f}, {r['tau_hi90']:>5.2f}] {r['spearman']:>6.2f} "
              f"{r['capacity_tau']:>6.2f} {str(r['mean_top1']):>6} {r['mean_cost_s']:>7.1f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", choices=["study", "tiny"], default="study")
    parser.add_argument("--archs", type=int, default=None, help="only the first N architectures")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--summarize", action="store_true", help="only write the summary from the runs so far")
    parser.add_argument("--no-proxies", action="store_true")
    parser.add_argument("--suffix", default="")
    args = parser.parse_args(argv)
    settings = SETTINGS if args.settings == "study" else TINY
    specs = architectures(args.archs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs_path = RESULTS / f"fidelity_runs{args.suffix}.csv"
    if not args.summarize:
        run_study(settings, specs, runs_path, args.workers)
    summarize(settings, specs, runs_path, RESULTS / f"fidelity{args.suffix}.csv", not args.no_proxies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
