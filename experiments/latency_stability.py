"""Three back-to-back CPU latency profiles of one preset (batch 1, 1 thread): are the medians within 5%?

Run from the repository root:

    python experiments/latency_stability.py [--preset smt_t] [--profiles 3] [--repeats 60]

For each clock (``wall``: perf_counter; ``thread``: the calling thread's CPU time, which leaves
out time the OS gives to other processes on a shared machine) it takes ``--profiles``
back-to-back profiles and reports the medians and their spread max/min - 1. Writes
experiments/results/latency_stability.json: per clock the records (each with its protocol and
the machine's load average), the medians and the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import archspace
from archspace.measure import compare, measure_latency

RESULTS = Path(__file__).parent / "results"


def profiles(model: torch.nn.Module, args: argparse.Namespace, clock: str) -> dict:
    """``args.profiles`` back-to-back latency records under one clock, with medians and spread."""
    records = []
    for i in range(args.profiles):
        t0 = time.perf_counter()
        record = measure_latency(
            model,
            name=f"{args.preset}#{i + 1}",
            device="cpu",
            batch=1,
            resolution=224,
            threads=1,
            warmup=args.warmup,
            repeats=args.repeats,
            clock=clock,
        )
        records.append(record)
        print(
            f"[{clock}] profile {i + 1}: median {record.median_ms:.2f} ms, p90 {record.p90_ms:.2f} ms, "
            f"cv {record.cv:.3f}, load {record.load_average_1m:.2f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    medians = [r.median_ms for r in records]
    spread = max(medians) / min(medians) - 1
    print(compare(records, strict=True).render())
    print(
        f"[{clock}] medians {', '.join(f'{m:.2f}' for m in medians)} ms; spread {spread:.2%} "
        f"({'within' if spread <= args.tolerance else 'NOT within'} {args.tolerance:.0%})\n"
    )
    return {
        "medians_ms": medians,
        "spread": spread,
        "within_tolerance": spread <= args.tolerance,
        "records": [r.model_dump() for r in records],
    }


def main() -> None:
    """Measure under each clock, print medians and spread, write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smt_t")
    parser.add_argument("--profiles", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--clocks", nargs="+", default=["wall", "thread"], choices=["wall", "thread"])
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_stability.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = archspace.build(archspace.load_spec(args.preset), num_classes=1000)
    result = {
        "preset": args.preset,
        "protocol": "batch 1, 224x224, fp32, eager, 1 thread, back-to-back profiles",
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "tolerance": args.tolerance,
        "clocks": {clock: profiles(model, args, clock) for clock in args.clocks},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
