"""Paper presets under the search's CPU protocol: params, MACs, batch-1 latency (interleaved) and proxy top-1.

Writes experiments/results/presets_cpu.csv, the reference points of notebooks/pareto.ipynb.
Run: .venv/bin/python experiments/presets_cpu.py [--presets smt_t efficientmod_xxs ...]
"""
from __future__ import annotations

import argparse
import csv
import datetime
from pathlib import Path

import archspace
from archspace.evaluate.train import train_proxy
from archspace.measure.complexity import complexity
from archspace.measure.latency import apply_process_settings, measure_latencies
from archspace.search.space import load_space

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["smt_m_6p5m", "smt_m", "smt_t", "efficientmod_xxs", "efficientmod_xs", "efficientmod_s", "efficientmod_s_conv"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", nargs="+", default=DEFAULT)
    ap.add_argument("--space", default=str(ROOT / "spaces" / "smt.yaml"), help="space whose protocol to use")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "presets_cpu.csv"))
    args = ap.parse_args()
    space = load_space(args.space)
    m, ev = space.measure, space.evaluator
    models = {name: archspace.build(name).eval() for name in args.presets}
    apply_process_settings()
    lat = measure_latencies(models, m.latency_settings())
    rows = []
    for name in args.presets:
        spec = archspace.load_spec(name)
        c = complexity(spec, m.resolution)
        budget = ev.on_device("cpu").budget
        res = train_proxy(spec, budget, ev.dataset)  # the space's proxy network, its head sized by the dataset
        rec = lat[name]
        row = {"preset": name, "params": c["params"], "gmacs_smt_paper": round(c["smt-paper"] / 1e9, 4),
               "gmacs_fvcore": round(c["fvcore"] / 1e9, 4), "latency_ms": round(rec.median_ms, 3),
               "latency_p90_ms": round(rec.p90_ms, 3), "latency_cv": round(rec.cv, 4),
               "accuracy": round(100 * res.top1, 2) if res.top1 is not None else None, "train_s": round(res.wall_time_s, 1),
               "device": rec.protocol.device_name, "threads": rec.protocol.threads, "resolution": rec.protocol.resolution,
               "batch": rec.protocol.batch, "repeats": rec.protocol.repeats,
               "budget": f"{budget.epochs} ep x {budget.train_subset} img @ {budget.resolution}px",
               "date": datetime.date.today().isoformat()}
        rows.append(row)
        print(row, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
