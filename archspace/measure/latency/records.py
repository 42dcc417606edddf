"""Results that carry their protocol: the calibration unit, the protocol of a measurement, one model's record."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .settings import Clock, DType, Runtime

REFERENCE_WORKLOAD = "convnet112-v1"


class Calibration(BaseModel):
    """The speed of the reference workload on this machine when calibrated: the unit of calibrated latency.

    ``reference_ms`` is the median time of one pass of the reference workload (a fixed, seeded
    9-conv net on a 1x3x112x112 input, fp32, eager) under ``threads`` and ``clock``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: Literal["convnet112-v1"] = REFERENCE_WORKLOAD
    reference_ms: float
    threads: int
    clock: Literal["wall", "thread"] = "wall"
    repeats: int
    device_name: str
    torch_version: str

    def label(self) -> str:
        """Short text naming the calibration, e.g. 'convnet112-v1=6.12ms'."""
        return f"{self.reference}={self.reference_ms:.3f}ms"

    def fits(self, threads: int, clock: str = "wall") -> bool:
        """True when a measurement with ``threads`` and ``clock`` can use this calibration."""
        return (self.threads, self.clock) == (threads, clock)


def measured_unit(calibration: "Calibration | None", whose: str | None = None) -> str:
    """The unit of a timed latency: 'wall ms', or 'ms calibrated to convnet112-v1=2.624ms (WHOSE)' where
    ``whose`` names the reference ('profile NAME', "this run's reference")."""
    if calibration is None:
        return "wall ms"
    return f"ms calibrated to {calibration.label()}" + (f" ({whose})" if whose else "")


class LatencyProtocol(BaseModel):
    """The conditions of a latency measurement: two records compare only if these are equal.

    ``clock`` is ``wall`` (perf_counter, or CUDA events on a GPU) or ``thread``: the calling
    thread's CPU time, which leaves out the time the OS gives to other processes on a shared
    machine (CPU, one thread, eager or compiled only). ``retain_freed_memory`` says the C
    allocator kept freed memory mapped and ``omp_wait_policy`` how idle OpenMP threads wait (the
    process settings, see :mod:`archspace.measure.latency.process`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str
    device_name: str
    runtime: Runtime
    dtype: DType
    batch: int
    resolution: int
    channels_last: bool
    threads: int
    warmup: int
    repeats: int
    statistic: Literal["median"] = "median"
    clock: Clock = "wall"
    torch_version: str
    calibration: Calibration | None = None
    retain_freed_memory: bool = False
    omp_wait_policy: str | None = None


class LatencyRecord(BaseModel):
    """One model's latency under one protocol: median, p90, CV, images/s and peak memory.

    ``interleaved_with`` counts the models whose repeats were interleaved with this one;
    ``load_average_1m`` is the machine's 1-minute load average when the measurement ended.
    With a calibration, ``median_ms``, ``p90_ms``, ``mean_ms`` and ``cv`` are of calibrated
    samples; ``raw_median_ms`` is the plain wall-clock median and ``machine_speed`` the
    calibration's reference time over the reference's median time during this measurement (1.0:
    as fast as when calibrated; 0.8: the machine ran 20% slower). Both are None uncalibrated. ``unit`` says which
    (:func:`measured_unit`).
    ``peak_memory_bytes`` is taken during the model's warm-up: on CUDA the peak allocated memory
    (all of the device's tensors, other models' included); on the CPU the growth of the process's
    peak RSS (a lower bound, 0 when an earlier peak was higher); None without warm-up.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    protocol: LatencyProtocol
    median_ms: float
    p90_ms: float
    mean_ms: float
    cv: float
    images_per_s: float
    peak_memory_bytes: int | None
    peak_memory_source: Literal["cuda_max_allocated", "cpu_maxrss_growth", "none"]
    interleaved_with: int = 1
    batch_requested: int | None = None
    load_average_1m: float | None = None
    raw_median_ms: float | None = None
    machine_speed: float | None = None
    unit: str = "wall ms"  # see measured_unit
