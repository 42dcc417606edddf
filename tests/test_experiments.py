"""The GPU benchmark script runs end to end on the CPU (tiny settings), so it works when a GPU is lent."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "gpu_benchmark.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_presets_benchmark_writes_rows_with_official_ratios(tmp_path):
    out = tmp_path / "presets.csv"
    done = run("presets", "--device", "cpu", "--presets", "efficientmod_xxs", "smt_m_6p5m", "--runtimes", "eager",
               "--resolution", "32", "--warmup", "1", "--repeats", "2", "--latency-repeats", "2", "--batch-scale", "32",
               "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["preset"], r["measure"], r["dtype"], r["batch"]) for r in rows] == [
        (p, m, d, b) for p in ("efficientmod_xxs", "smt_m_6p5m")
        for m, d, b in (("throughput", "fp32", "2"), ("throughput", "bf16", "8"), ("latency", "fp32", "1"))]
    xxs = rows[0]
    assert xxs["params"] == "4736264" and xxs["official_h100"] == "8699" and float(xxs["images_per_s"]) > 0
    assert float(xxs["speedup_vs_official"]) == round(float(xxs["images_per_s"]) / 8699, 3)
    assert rows[3]["official_h100"] == "" and rows[3]["speedup_vs_official"] == ""  # smt_m has no official number
    assert all(r["device"] and r["torch"] == torch.__version__ for r in rows)


def test_train_benchmark_runs_the_gpu_budget_loop(tmp_path):
    out = tmp_path / "train.csv"
    done = run("train", "--device", "cpu", "--presets", "smt_m_6p5m", "--epochs", "2", "--train-subset", "200",
               "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = list(csv.DictReader(out.open()))
    assert row["preset"] == "smt_m_6p5m" and row["epochs"] == "2" and row["train_images"] == "200"
    assert len(row["top1_per_epoch"].split()) == 2 and 0.0 < float(row["top1"]) <= 1.0
    assert float(row["images_per_s_all_epochs"]) > 0 and float(row["images_per_s_after_epoch_1"]) > 0


def test_gpu_benchmark_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        return
    done = run("presets")
    assert done.returncode == 1 and "CUDA is not available here" in done.stderr
