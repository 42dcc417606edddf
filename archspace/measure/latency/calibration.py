"""The calibration unit: a fixed reference workload timed on this CPU, and the one load-or-measure policy."""
from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any, Optional, Union

import torch
from torch import nn

from .clock import Timer
from .records import REFERENCE_WORKLOAD, Calibration
from .runtimes import device_name, num_threads
from .settings import LatencySettings

__all__ = ["REFERENCE_WORKLOAD", "calibrate", "load_or_calibrate", "reference_workload"]


def reference_workload() -> Callable[[], Any]:
    """The calibration workload: a fixed seeded conv net (dense, depth-wise and 1x1 convs, BN, GELU) at 112 px.

    Its op mix resembles the networks archspace builds, so machine slow-downs hit it and them
    alike. Built without touching the global RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.GELU(),
            nn.Conv2d(64, 64, 5, 1, 2, groups=64), nn.Conv2d(64, 256, 1), nn.GELU(), nn.Conv2d(256, 64, 1),
            nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(),
            nn.Conv2d(128, 128, 7, 1, 3, groups=128), nn.Conv2d(128, 512, 1), nn.GELU(), nn.Conv2d(512, 128, 1),
        ).eval()
        x = torch.randn(1, 3, 112, 112)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    return run


def calibrate(*, threads: int = 1, clock: str = "wall", warmup: int = 20, repeats: int = 300) -> Calibration:
    """Time the reference workload on this CPU: the unit that calibrated latencies are expressed in.

    Measure once and pass the result to every :func:`measure_latencies` call whose numbers should
    be comparable (a search stores it with its study).
    """
    LatencySettings(threads=threads, warmup=warmup, repeats=repeats, clock=clock)  # checks the arguments
    run = reference_workload()
    timer = Timer(torch.device("cpu"), use_events=False, clock=clock)
    with num_threads(threads):
        for _ in range(warmup):
            run()
        for _ in range(repeats):
            timer.time(run)
    return Calibration(
        reference_ms=statistics.median(timer.results()),
        threads=threads,
        clock=clock,  # type: ignore[arg-type]
        repeats=repeats,
        device_name=device_name("cpu"),
        torch_version=torch.__version__,
    )


def load_or_calibrate(settings: LatencySettings, stored: Union[Calibration, dict, str, None] = None) -> Optional[Calibration]:
    """The calibration to measure ``settings`` with: ``stored`` when it fits their threads and clock, else a new one.

    The one policy behind every place a calibration is kept (a study attribute agreed by workers, a
    Ray run's JSON file, ``profile --calibration FILE``, an ablation): where it is stored differs,
    when to reuse and when to measure does not. None off the CPU (only CPU latency is calibrated).
    """
    if not str(settings.device).startswith("cpu"):
        return None
    if stored is not None:
        cal = (Calibration.model_validate_json(stored) if isinstance(stored, str)
               else stored if isinstance(stored, Calibration) else Calibration.model_validate(stored))
        if cal.fits(settings.threads, settings.clock):
            return cal
    return calibrate(threads=settings.threads, clock=settings.clock)
