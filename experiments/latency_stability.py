"""Three back-to-back CPU latency profiles of one preset (batch 1, 1 thread): are the medians within 5%?

Run from the repository root:

    python experiments/latency_stability.py [--preset smt_t] [--profiles 3] [--repeats 200] [--load 1] [--runs 1]

Two ways of taking the profiles, each reporting the raw wall-clock medians and the calibrated
medians (see ``archspace.measure.Calibration``) with their spread max/min - 1:

- ``in_process``: one calibration, then ``--profiles`` calls of ``measure_latency``;
- ``cli``: ``--profiles`` separate ``archspace profile PRESET --calibration FILE`` processes
  sharing one calibration file (the first run measures it).

``--load N`` runs the whole experiment a second time with N busy processes (a matmul loop on one
thread each) competing for the machine. Writes experiments/results/latency_stability.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import archspace
from archspace.measure import LatencySettings, apply_process_settings, compare, device_name, load_or_calibrate, measure_latency

RESULTS = Path(__file__).parent / "results"


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def summary(raw: list[float], calibrated: list[float], tolerance: float) -> dict:
    out = {
        "raw_medians_ms": raw,
        "raw_spread": spread(raw),
        "calibrated_medians_ms": calibrated,
        "calibrated_spread": spread(calibrated),
        "within_tolerance": spread(calibrated) <= tolerance,
    }
    print(
        f"  raw medians {', '.join(f'{m:.1f}' for m in raw)} ms: spread {out['raw_spread']:.1%}; calibrated "
        f"{', '.join(f'{m:.1f}' for m in calibrated)} ms: spread {out['calibrated_spread']:.1%} "
        f"({'within' if out['within_tolerance'] else 'NOT within'} {tolerance:.0%})",
        flush=True,
    )
    return out


def in_process(args: argparse.Namespace) -> dict:
    """One calibration, then back-to-back ``measure_latency`` profiles in this process."""
    torch.manual_seed(0)
    model = archspace.build(archspace.load_spec(args.preset), num_classes=1000)
    apply_process_settings()
    settings = LatencySettings(batch=1, resolution=224, threads=1, warmup=args.warmup, repeats=args.repeats)
    cal = load_or_calibrate(settings)
    records = []
    for i in range(args.profiles):
        t0 = time.perf_counter()
        record = measure_latency(model, settings, name=f"{args.preset}#{i + 1}", calibration=cal)
        records.append(record)
        print(f"  in-process profile {i + 1}: calibrated {record.median_ms:.1f} ms, raw {record.raw_median_ms:.1f} ms, "
              f"machine speed {record.machine_speed:.2f}, cv {record.cv:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(compare(records, strict=True).render())
    return {
        **summary([r.raw_median_ms for r in records], [r.median_ms for r in records], args.tolerance),
        "calibration": cal.model_dump(),
        "records": [r.model_dump() for r in records],
    }


def cli(args: argparse.Namespace) -> dict:
    """Back-to-back ``archspace profile`` processes sharing one calibration file."""
    exe = Path(sys.executable).with_name("archspace")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        cal_file = Path(tmp) / "calibration.json"
        for i in range(args.profiles):
            t0 = time.perf_counter()
            out = subprocess.run(
                [str(exe), "profile", args.preset, "--flops", "smt-paper", "--repeats", str(args.repeats), "--warmup",
                 str(args.warmup), "--format", "json", "--quiet", "--calibration", str(cal_file)],
                check=True, capture_output=True, text=True,
            ).stdout
            record = json.loads(out)["latency"]
            records.append(record)
            print(f"  cli profile {i + 1}: calibrated {record['median_ms']:.1f} ms, raw {record['raw_median_ms']:.1f} ms, "
                  f"machine speed {record['machine_speed']:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {
        **summary([r["raw_median_ms"] for r in records], [r["median_ms"] for r in records], args.tolerance),
        "records": records,
    }


def _busy(stop: mp.Event) -> None:  # type: ignore[valid-type]
    """A competing tenant: one thread of back-to-back matrix products until told to stop."""
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while not stop.is_set():
        a @ a


def scenario(args: argparse.Namespace, load: int) -> dict:
    stop = mp.Event()
    workers = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(load)]
    for w in workers:
        w.start()
    try:
        print(f"scenario: {load} competing busy process(es)", flush=True)
        result = {"competing_processes": load, "in_process": in_process(args), "cli": cli(args)}
    finally:
        stop.set()
        for w in workers:
            w.join()
    result["load_average_1m_end"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smt_t")
    parser.add_argument("--profiles", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--load", type=int, default=1, help="busy processes for the loaded scenario (0: idle only)")
    parser.add_argument("--runs", type=int, default=1, help="repeat every scenario this many times")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_stability.json")
    args = parser.parse_args()

    result = {
        "preset": args.preset,
        "protocol": f"batch 1, 224x224, fp32, eager, 1 thread, warm-up {args.warmup}, {args.repeats} repeats, "
                    f"{args.profiles} back-to-back profiles; calibrated against convnet112-v1",
        "device_name": device_name("cpu"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "tolerance": args.tolerance,
        "runs": [],
    }
    for run in range(args.runs):
        print(f"run {run + 1} of {args.runs}", flush=True)
        result["runs"].append([scenario(args, 0)] + ([scenario(args, args.load)] if args.load else []))
    cases = [(sc["competing_processes"], way, sc[way]) for scenarios in result["runs"] for sc in scenarios
             for way in ("in_process", "cli")]
    result["summary"] = {
        "cases": len(cases),
        "calibrated_within_tolerance": sum(c["calibrated_spread"] <= args.tolerance for _, _, c in cases),
        "raw_within_tolerance": sum(c["raw_spread"] <= args.tolerance for _, _, c in cases),
        "calibrated_spreads": [round(c["calibrated_spread"], 4) for _, _, c in cases],
        "raw_spreads": [round(c["raw_spread"], 4) for _, _, c in cases],
        "case_labels": [f"{load} competing, {way}" for load, way, _ in cases],
    }
    print(json.dumps(result["summary"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
