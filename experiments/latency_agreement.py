"""Does one network get one latency? SMT-T timed by two `archspace profile` processes and by a search's base trial.

All three measure against one device profile's calibration (``--device-profile`` / ``measure.profile``), so their
medians are in one named unit: ``ms calibrated to convnet112-v1=X ms (profile NAME)``. Without a profile each
process calibrates on its own, and the same runs are also reported that way (``per-process``) for contrast.
The protocol is ``LatencySettings``' default (CPU, eager, batch 1, 224 px, 1 thread, warm-up 3, 15 repeats).

Written: ``experiments/results/latency_agreement.json`` (the machine, the unit, every median, each round's spread).
Run on an idle machine: .venv/bin/python experiments/latency_agreement.py [--profile FILE] [--net smt_t]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "archspace.cli"]


def profile_run(net: str, profile: str | None) -> dict:
    extra = ["--device-profile", profile] if profile else []
    proc = subprocess.run(CLI + ["profile", net, *extra, "--format", "json", "--quiet"], capture_output=True,
                          text=True, check=True)
    got = json.loads(proc.stdout)
    lat = got["latency"]
    return {"median_ms": lat["median_ms"], "unit": lat.get("unit"), "raw_median_ms": lat.get("raw_median_ms"),
            **({"predicted_ms": got["predicted_ms"]} if "predicted_ms" in got else {})}


def search_base(net: str, profile: str, folder: Path) -> dict:
    space = yaml.safe_load((ROOT / "spaces" / "smt.yaml").read_text())
    space.update(name="agreement", base=net, references=[], evaluator={"kind": "params"}, budget={"trials": 1},
                 constraints={}, measure={"resolution": 224, "device": "cpu", "batch": 1, "threads": 1,
                                          "latency": "measured", "profile": str(Path(profile).resolve())})
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    subprocess.run(CLI + ["search", str(path), "--run-dir", str(folder / "run"), "--quiet"], check=True,
                   capture_output=True, text=True)
    with open(folder / "run" / "trials.csv", newline="") as f:
        base = next(r for r in csv.DictReader(f) if r["reference"] == "base")
    return {"median_ms": float(base["latency_ms"]), "unit": base["latency_unit"]}


def spread(values: list[float]) -> float:
    return 100.0 * (max(values) / min(values) - 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=str(ROOT / "experiments" / "results" / "latency_model" / "profile_eager.json"))
    ap.add_argument("--net", default="smt_t")
    ap.add_argument("--rounds", type=int, default=5, help="times the three measurements are repeated")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "latency_agreement.json"))
    args = ap.parse_args()

    from archspace.measure.latency.model import load_profile, predict_latency
    from archspace.measure.latency.runtimes import device_identity

    prof = load_profile(args.profile)
    rounds = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            runs = {"profile_1": profile_run(args.net, args.profile), "profile_2": profile_run(args.net, args.profile),
                    "search_base": search_base(args.net, args.profile, Path(tmp))}
        own = {"profile_1": profile_run(args.net, None), "profile_2": profile_run(args.net, None)}
        rounds.append({"with_profile": runs, "with_profile_spread_pct": spread([r["median_ms"] for r in runs.values()]),
                       "per_process": own, "per_process_spread_pct": spread([r["median_ms"] for r in own.values()])})
        print(f"round {i + 1}: " + ", ".join(f"{k} {r['median_ms']:.2f}" for k, r in runs.items())
              + f" (spread {rounds[-1]['with_profile_spread_pct']:.1f}%); per-process calibration "
              + ", ".join(f"{r['median_ms']:.2f}" for r in own.values())
              + f" (spread {rounds[-1]['per_process_spread_pct']:.1f}%)", flush=True)
    units = sorted({r["unit"] for rd in rounds for r in rd["with_profile"].values()})
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": device_identity("cpu"), "net": args.net, "profile": prof.name, "profile_label": prof.label(),
        "protocol": "cpu, eager, batch 1, 224 px, 1 thread, warm-up 3, 15 repeats (LatencySettings defaults)",
        "unit": prof.unit, "units_seen": units, "rounds": rounds,
        "within_5pct_rounds": sum(rd["with_profile_spread_pct"] <= 5 for rd in rounds),
        "per_process_within_5pct_rounds": sum(rd["per_process_spread_pct"] <= 5 for rd in rounds),
        "predicted_ms": predict_latency(args.net, prof),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.net} on {result['machine'].get('name')} in {prof.unit}: the three agree within 5% in "
          f"{result['within_5pct_rounds']} of {args.rounds} rounds (per-process calibration: "
          f"{result['per_process_within_5pct_rounds']} of {args.rounds}); predicted {result['predicted_ms']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
