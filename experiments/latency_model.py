"""The latency model as a benchmark: a device profile of the three spaces, then held-out random hybrids measured and predicted.

1. ``archspace.jobs.measure_device`` (what ``archspace device measure`` runs) profiles spaces/smt.yaml,
   spaces/efficientmod.yaml and spaces/hybrid.yaml on this machine under one runtime.
2. ``--held-out`` random specs per space, drawn with another seed and none of them among the profile's
   networks (nothing fitted on them), are built and timed whole (repeats interleaved, against the
   profile's calibration: the same unit as the table) and predicted with ``predict_latency``.
3. Written: the profile (``profile_<runtime>.json``), one row per held-out network (``heldout_<runtime>.csv``)
   and the summary (``summary_<runtime>.json``: share within +-5% / +-10%, Kendall tau, worst error,
   time per prediction and per measurement), and a predicted-vs-measured plot.

With ``--remeasure`` every held-out network is timed a second time in other chunks of ten: how close a
measurement comes to its own repeat is the ceiling of any model judged against one measurement.

Run: .venv/bin/python experiments/latency_model.py [--runtime eager|onnxrt] [--minutes 10] [--held-out 20] [--remeasure]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import random
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACES = [ROOT / "spaces" / f"{n}.yaml" for n in ("smt", "efficientmod", "hybrid")]


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-b of two equally long lists."""
    n, concordant, discordant, tx, ty = len(xs), 0, 0, 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = ((concordant + discordant + tx) * (concordant + discordant + ty)) ** 0.5
    return (concordant - discordant) / denom if denom else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", default="eager", choices=["eager", "onnxrt"])
    ap.add_argument("--minutes", type=float, default=10.0, help="the profile's time bound")
    ap.add_argument("--held-out", type=int, default=20, help="held-out random specs per space")
    ap.add_argument("--samples", type=int, default=300, help="random specs per space whose parts the profile covers")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "latency_model"))
    ap.add_argument("--reuse-profile", action="store_true", help="keep an existing profile file (resume it)")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the held-out draw")
    ap.add_argument("--remeasure", action="store_true",
                    help="time every held-out network a second time in other chunks: the measurement's own spread")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from archspace.jobs import measure_device
    from archspace.measure.latency import apply_process_settings, measure_latencies
    from archspace.measure.latency.model import predict_latency, predict_parts
    from archspace.nn.build import build
    from archspace.search.space import load_space, sample_specs
    from archspace.spec.io import spec_hash

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.runtime
    profile_path = out / f"profile_{tag}.json"
    if profile_path.exists() and not args.reuse_profile:
        profile_path.unlink()
    t0 = time.monotonic()
    profile = measure_device(profile_path, spaces=[str(p) for p in SPACES], runtime=args.runtime, minutes=args.minutes,
                             samples=args.samples, repeats=args.repeats, name=f"epyc-{tag}",
                             progress=lambda d, n, text: print(f"  profile {d}/{n} {text}", flush=True))
    profile_s = time.monotonic() - t0
    print(f"profile: {len(profile.entries)} entries of {profile.parts_seen} parts, complete={profile.complete}, "
          f"{profile_s:.0f} s, correction {profile.correction}", flush=True)

    fitted = {p.spec_hash for p in profile.networks}
    held = []
    for path in SPACES:
        space = load_space(path)
        drawn = sample_specs(space, args.held_out + len(fitted), seed=args.seed, exclude=sorted(fitted))
        held += [(f"{space.name}-{i}", spec) for i, (_, spec) in enumerate(drawn[:args.held_out])]
    assert not fitted & {spec_hash(s) for _, s in held}
    apply_process_settings()
    settings = profile.protocol
    def measure_all(order: list[int]) -> tuple[dict[str, object], float]:
        """Every held-out network timed whole, ten at a time (repeats interleaved among them), in ``order``."""
        recs, spent = {}, 0.0
        for start in range(0, len(order), 10):
            chunk = [held[i] for i in order[start:start + 10]]
            models = {name: build(spec).eval() for name, spec in chunk}
            t = time.monotonic()
            recs.update(measure_latencies(models, settings, calibration=profile.calibration))
            spent += time.monotonic() - t
            del models
        return recs, spent

    records, measure_s = measure_all(list(range(len(held))))
    again = None
    if args.remeasure:  # the same networks once more, in other chunks: how far one measurement is from its repeat
        order = list(range(len(held)))
        random.Random(args.seed).shuffle(order)
        again, _ = measure_all(order)
    rows = []
    for name, spec in held:
        rec = records[name]
        t = time.perf_counter()
        predicted = predict_latency(spec, profile)
        predict_ms = (time.perf_counter() - t) * 1e3
        how = [p["how"] for p in predict_parts(spec, profile)]
        rows.append({"network": name, "spec_hash": spec_hash(spec), "arch": spec.label(),
                     "measured_ms": round(rec.median_ms, 3), "predicted_ms": round(predicted, 3),
                     "error_pct": round(100 * (predicted / rec.median_ms - 1), 2), "cv": round(rec.cv, 4),
                     "machine_speed": rec.machine_speed, "parts": len(how), "parts_from_table": how.count("table"),
                     "parts_interpolated": how.count("interpolated"), "parts_from_fit": how.count("fit"),
                     "predict_ms": round(predict_ms, 4)})
        if again is not None:
            rows[-1]["remeasured_ms"] = round(again[name].median_ms, 3)
            rows[-1]["repeat_error_pct"] = round(100 * (again[name].median_ms / rec.median_ms - 1), 2)
        print(f"  {name}: measured {rec.median_ms:.2f}, predicted {predicted:.2f} ({rows[-1]['error_pct']:+.1f}%)"
              + (f", measured again {again[name].median_ms:.2f}" if again is not None else ""), flush=True)
    errors = [abs(r["error_pct"]) for r in rows]
    measured = [r["measured_ms"] for r in rows]
    predicted = [r["predicted_ms"] for r in rows]
    per_measurement_s = measure_s / len(rows)
    predict_ms = statistics.median(r["predict_ms"] for r in rows)
    summary = {
        "date": datetime.date.today().isoformat(), "device": profile.identity, "protocol": settings.model_dump(),
        "unit": profile.unit, "profile": profile_path.name, "profile_seconds": round(profile_s, 1),
        "profile_entries": len(profile.entries), "profile_parts_seen": profile.parts_seen,
        "profile_complete": profile.complete, "correction": profile.correction.model_dump(),
        "held_out": len(rows), "held_out_per_space": args.held_out,
        "within_5pct": round(sum(e <= 5 for e in errors) / len(rows), 4),
        "within_10pct": round(sum(e <= 10 for e in errors) / len(rows), 4),
        "kendall_tau": round(kendall_tau(measured, predicted), 4),
        "worst_error_pct": max(rows, key=lambda r: abs(r["error_pct"]))["error_pct"],
        "mean_abs_error_pct": round(statistics.fmean(errors), 2),
        "median_error_pct": round(statistics.median(r["error_pct"] for r in rows), 2),
        "predict_ms_median": round(predict_ms, 4),
        "measure_s_per_network": round(per_measurement_s, 3),
        "speedup": round(per_measurement_s * 1e3 / predict_ms),
        "parts_from_table_share": round(sum(r["parts_from_table"] for r in rows) / sum(r["parts"] for r in rows), 4),
    }
    if again is not None:
        mean_errors = [abs(100 * (r["predicted_ms"] / ((r["measured_ms"] + r["remeasured_ms"]) / 2) - 1)) for r in rows]
        summary.update({
            "remeasured_within_5pct": round(sum(abs(r["repeat_error_pct"]) <= 5 for r in rows) / len(rows), 4),
            "remeasured_worst_pct": max(rows, key=lambda r: abs(r["repeat_error_pct"]))["repeat_error_pct"],
            "remeasured_kendall_tau": round(kendall_tau(measured, [r["remeasured_ms"] for r in rows]), 4),
            "within_5pct_of_both_mean": round(sum(e <= 5 for e in mean_errors) / len(rows), 4),
        })
    with open(out / f"heldout_{tag}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary["held_out_seed"] = args.seed
    (out / f"summary_{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for space in ("smt", "efficientmod", "hybrid"):
        pts = [(r["measured_ms"], r["predicted_ms"]) for r in rows if r["network"].startswith(space + "-")]
        ax.scatter(*zip(*pts), s=16, label=space)
    lo, hi = min(measured + predicted) * 0.9, max(measured + predicted) * 1.1
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for f in (0.95, 1.05):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set_xlabel(f"measured latency ({profile.unit})")
    ax.set_ylabel("predicted latency (same unit)")
    p = settings
    ax.set_title(f"{len(rows)} held-out hybrids: {100 * summary['within_5pct']:.0f}% within ±5%, "
                 f"tau {summary['kendall_tau']:.2f}", fontsize=9)
    fig.text(0.01, 0.005, f"{profile.identity['name']}, {p.runtime}, {p.threads} thread, batch {p.batch}, {p.resolution} px, "
             f"warm-up {p.warmup}, {p.repeats} repeats (median); profile {profile_path.name}", fontsize=6.5)
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out / f"heldout_{tag}.png", dpi=110)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
