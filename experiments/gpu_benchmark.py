"""GPU benchmarks of issues 3 and 4: preset throughput and latency, and smt_t proxy-training speed.

Run from the repository root on a machine with CUDA:

    python experiments/gpu_benchmark.py presets    # every preset: bs64 fp32, bs256 bf16, bs1 fp32; eager and compiled
    python experiments/gpu_benchmark.py train      # smt_t at 32 px on Fashion-MNIST, GPU budget, 3 epochs

``presets`` follows the reference's protocol (224 px, eval, inference_mode; throughput over 30
timed batches after 50 warm-up, here the median batch time; latency the median of 200 CUDA-event
timed batch-1 runs) and writes ``results/gpu_presets.csv`` with the device, the runtime, the
official implementation's number from ``../shared/reference/README.md`` where there is one, and
the ratio to it. ``train`` runs ``TrainBudget.gpu_default()`` (batch 1024, LR scaled, bf16,
channels-last, compiled) and writes ``results/gpu_train.csv``: images/s over all epochs
(compilation included) and over the epochs after the first, and test top-1 after each epoch.

``--device cpu`` with small ``--presets/--resolution/--repeats`` runs the same code on the CPU
(the test suite does, so the script cannot rot between GPU sessions); the numbers are then not
GPU numbers and the CSV says so in its device column.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

import archspace
from archspace.measure import LatencySettings, apply_process_settings, device_name, measure_latency, measure_throughput
from archspace.spec.io import preset_names

RESULTS = Path(__file__).parent / "results"

# Official implementations on one H100 (torch 2.11): bs64 fp32 img/s, bs256 bf16 img/s, bs1 fp32 ms.
OFFICIAL = {
    "smt_t": (2463, 4336, 10.7),
    "smt_s": (1325, 2438, 18.2),
    "smt_b": (843, 1578, 27.1),
    "efficientmod_xxs": (8699, 13337, 4.5),
    "efficientmod_xs": (6914, 10887, 4.7),
    "efficientmod_s": (4188, 7280, 7.2),
    "efficientmod_s_conv": (3771, 6076, 6.6),
}
SETTINGS = (  # (measure, batch, dtype, index into OFFICIAL)
    ("throughput", 64, "fp32", 0),
    ("throughput", 256, "bf16", 1),
    ("latency", 1, "fp32", 2),
)


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


def presets(args: argparse.Namespace) -> list[dict]:
    apply_process_settings()  # as archspace's measuring commands run (recorded in every record's protocol)
    rows = []
    names = args.presets or preset_names()
    for name in names:
        model = archspace.build(archspace.load_spec(name), num_classes=1000).eval()
        params = sum(p.numel() for p in model.parameters())
        for runtime in args.runtimes:
            for measure, batch, dtype, ref_index in SETTINGS:
                batch = max(1, batch // args.batch_scale)
                settings = LatencySettings(device=args.device, batch=batch, resolution=args.resolution, dtype=dtype,
                                           runtime=runtime, channels_last=args.channels_last, warmup=args.warmup,
                                           repeats=args.repeats if measure == "throughput" else args.latency_repeats)
                t0 = time.perf_counter()
                if measure == "throughput":
                    rec = measure_throughput(model, settings, name=name)
                    value = rec.images_per_s
                else:
                    rec = measure_latency(model, settings, name=name)
                    value = rec.median_ms
                official = OFFICIAL.get(name, (None, None, None))[ref_index]
                if official is None:
                    ratio = None
                else:  # > 1 means archspace is faster
                    ratio = value / official if measure == "throughput" else official / value
                rows.append({
                    "preset": name, "params": params, "measure": measure, "runtime": runtime, "dtype": dtype,
                    "batch": rec.protocol.batch, "resolution": args.resolution, "channels_last": args.channels_last,
                    "images_per_s": round(rec.images_per_s, 1), "median_ms": round(rec.median_ms, 3),
                    "p90_ms": round(rec.p90_ms, 3), "cv": round(rec.cv, 4), "peak_memory_mb":
                    round(rec.peak_memory_bytes / 2**20, 1) if rec.peak_memory_bytes is not None else None,
                    "official_h100": official, "speedup_vs_official": round(ratio, 3) if ratio else None,
                    "device": rec.protocol.device_name, "torch": torch.__version__,
                })
                print(f"{name:22s} {runtime:8s} {measure:10s} bs{rec.protocol.batch:<4d} {dtype}: "
                      f"{value:10.2f} {'img/s' if measure == 'throughput' else 'ms'}"
                      f"{f'  ({ratio:.2f}x official)' if ratio else ''}  [{time.perf_counter() - t0:.0f} s]", flush=True)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def train(args: argparse.Namespace) -> list[dict]:
    from archspace.evaluate import TrainBudget, evaluate

    update = {}
    if args.epochs:
        update["epochs"] = args.epochs
    if args.train_subset:
        update.update(train_subset=args.train_subset, test_subset=args.train_subset)
    if args.device == "cpu":  # the smoke-test path: no compile, no bf16 on the CPU
        update.update(compile=False, batch_size=64, eval_batch_size=256, warmup_epochs=0.2)
    budget = TrainBudget.gpu_default(**update)
    stamps: list[float] = []

    def progress(event) -> None:
        if event.kind == "epoch":
            stamps.append(time.perf_counter())

    rows = []
    for name in args.presets or ["smt_t"]:
        stamps.clear()
        t0 = time.perf_counter()
        result = evaluate(archspace.load_spec(name), "train", budget=budget,
                          device=args.device, progress=progress)
        if result.status != "ok":
            raise SystemExit(f"{name}: training {result.status}: {result.reason}")
        images_per_epoch = result.steps_per_epoch * budget.batch_size
        # steady state: epochs after the first (which includes compilation); evaluation time excluded is
        # not possible from stamps alone, so this is a lower bound on the training loop's speed
        steady = (images_per_epoch * (len(stamps) - 1) / (stamps[-1] - stamps[0])) if len(stamps) > 1 else None
        row = {
            "preset": name, "resolution": budget.resolution, "batch": budget.batch_size, "lr": budget.lr,
            "bf16": budget.bf16, "channels_last": budget.channels_last, "compile": budget.compile,
            "epochs": result.epochs_done, "train_images": result.train_size,
            "images_per_s_all_epochs": round(result.images_per_s, 1),
            "images_per_s_after_epoch_1": round(steady, 1) if steady else None,
            "top1_per_epoch": " ".join(f"{p.top1:.4f}" for p in result.fidelities),
            "top1": round(result.top1, 4), "wall_s": round(time.perf_counter() - t0, 1),
            "device": result.device, "torch": torch.__version__,
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["presets", "train"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--presets", nargs="+", help="default: every preset (presets), smt_t (train)")
    parser.add_argument("--runtimes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--latency-repeats", type=int, default=200)
    parser.add_argument("--batch-scale", type=int, default=1, help="divide the batch sizes (CPU smoke test)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_benchmark: CUDA is not available here; run it on a GPU machine (or --device cpu to smoke-test)")
    print(f"device: {device_name(args.device)}, torch {torch.__version__}", flush=True)
    rows = presets(args) if args.what == "presets" else train(args)
    write_csv(args.out or RESULTS / f"gpu_{args.what}.csv", rows)


if __name__ == "__main__":
    main()
