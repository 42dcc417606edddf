"""NSGA-II vs TPE vs random at equal budget on the smt space, scored by hypervolume over several seeds.

Accuracy comes from a cheap zero-cost evaluator (synflow by default) so the comparison is about the
samplers, not the proxy; objectives: evaluator score (max) and smt-paper MACs (min). Hypervolume is
computed on one normalisation shared by every run (min/max of each objective over all runs).
Writes experiments/results/sampler_benchmark.csv (one row per run) and prints mean ± std per sampler.
Run: .venv/bin/python experiments/sampler_benchmark.py [--trials 30 --seeds 0 1 2 --evaluator synflow]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import yaml

import archspace
from archspace.search.front import hypervolume, pareto_front
from archspace.search.results import read_table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samplers", nargs="+", default=["nsga2", "tpe", "random"])
    ap.add_argument("--evaluator", default="synflow")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "sampler_benchmark.csv"))
    args = ap.parse_args()
    base = yaml.safe_load((ROOT / "spaces" / "smt.yaml").read_text())
    work = Path(tempfile.mkdtemp(prefix="sampler_bench_"))
    runs = {}
    for sampler in args.samplers:
        for seed in args.seeds:
            data = {**base, "name": f"bench_{sampler}_{seed}", "seed": seed, "enqueue_base": False,
                    "objectives": [{"metric": "accuracy", "direction": "maximize"},
                                   {"metric": "flops", "direction": "minimize", "convention": "smt-paper"}],
                    "evaluator": {"kind": args.evaluator}, "measure": {"latency": False, "resolution": 224},
                    "sampler": {"kind": sampler, **({"population_size": 8} if sampler == "nsga2" else {})},
                    "budget": {"trials": args.trials}, "references": []}
            path = work / f"{data['name']}.yaml"
            path.write_text(yaml.safe_dump(data))
            t0 = time.perf_counter()
            archspace.run_search(path, run_dir=work / data["name"])
            rows = [r for r in read_table(work / data["name"] / "trials.csv") if r["verdict"] == "complete"]
            runs[(sampler, seed)] = (rows, time.perf_counter() - t0)
            print(f"{sampler} seed {seed}: {len(rows)} complete in {runs[(sampler, seed)][1]:.0f}s", flush=True)
    every = [r for rows, _ in runs.values() for r in rows]
    lo = {k: min(float(r[k]) for r in every) for k in ("accuracy", "gmacs")}
    hi = {k: max(float(r[k]) for r in every) for k in ("accuracy", "gmacs")}

    def norm(r: dict) -> list[float]:
        return [1 - (float(r["accuracy"]) - lo["accuracy"]) / (hi["accuracy"] - lo["accuracy"] or 1),
                (float(r["gmacs"]) - lo["gmacs"]) / (hi["gmacs"] - lo["gmacs"] or 1)]

    out = []
    for (sampler, seed), (rows, seconds) in runs.items():
        front = pareto_front(rows, ["accuracy", "gmacs"], ["maximize", "minimize"])
        hv = hypervolume([norm(r) for r in rows], [1.1, 1.1])
        unique = len({r["spec_hash"] for r in rows})
        out.append({"sampler": sampler, "seed": seed, "trials": args.trials, "complete": len(rows), "unique_archs": unique,
                    "front": len(front), "hypervolume": round(hv, 4), "seconds": round(seconds, 1),
                    "evaluator": args.evaluator, "space": "spaces/smt.yaml"})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    for sampler in args.samplers:
        hvs = [r["hypervolume"] for r in out if r["sampler"] == sampler]
        sd = statistics.stdev(hvs) if len(hvs) > 1 else 0.0
        print(f"{sampler:7s} hypervolume {statistics.mean(hvs):.4f} ± {sd:.4f} over {len(hvs)} seeds")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
