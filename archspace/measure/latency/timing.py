"""The measuring loops: warm-up with peak memory, repeats interleaved across models, calibrated samples."""
from __future__ import annotations

import contextlib
import math
import os
import resource
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..flops import eval_mode
from .calibration import reference_workload
from .clock import Timer
from .process import retaining
from .records import Calibration, LatencyProtocol, LatencyRecord, measured_unit
from .runtimes import DTYPES, check_device, device_name, num_threads, prepared, runner
from .settings import LatencySettings


def _peak_memory_during(dev: torch.device, call: Callable[[], None]) -> tuple[int | None, str]:
    """Run ``call`` and return the peak memory it reached (CUDA) or the growth of peak RSS (CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        call()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev)), "cuda_max_allocated"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) * scale, "cpu_maxrss_growth"


def calibrated_samples(
    samples: Sequence[float], reference: Sequence[float], reference_ms: float, models: int, index: int
) -> list[float]:
    """Rescale model ``index``'s samples by the reference times measured right before and after each.

    ``reference`` holds one reference time before the first round, then one after each model of every
    round: every reference pass follows a model pass (a reference right after another one runs with
    its own data in cache, faster, and would inflate the model after it). Sample r of model ``index``
    lies between reference r*models+index and the next. Calibrated sample = raw * reference_ms /
    mean(before, after).
    """
    if len(reference) != 1 + models * len(samples):
        raise ValueError(f"reference: expected {1 + models * len(samples)} reference times, got {len(reference)}")
    out = []
    for r, raw in enumerate(samples):
        before, after = reference[r * models + index], reference[r * models + index + 1]
        out.append(raw * reference_ms / ((before + after) / 2))
    return out


def _summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, p90 (linear interpolation), mean and coefficient of variation of ``samples``."""
    ordered = sorted(samples)
    rank = 0.9 * (len(ordered) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    p90 = ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
    mean = statistics.fmean(ordered)
    std = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": p90,
        "mean_ms": mean,
        "cv": std / mean if mean > 0 else 0.0,
    }


def _checked(settings: LatencySettings) -> LatencySettings:
    """Just the latency settings of ``settings`` (a space's ``measure`` drops its own fields)."""
    if not isinstance(settings, LatencySettings):
        raise TypeError(f"settings: expected a LatencySettings, got {type(settings).__name__}; "
                        "build one with LatencySettings(device=..., batch=..., ...)")
    return settings.latency_settings()


def measure_latencies(models: Mapping[str, nn.Module], settings: LatencySettings, *,
                      calibration: Calibration | None = None,
                      input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, LatencyRecord]:
    """Latency records of several models under ``settings``, repeats interleaved round-robin so noise hits all alike.

    With ``calibration`` (CPU only) the reference workload runs once before the first round and after
    each model, and the records hold calibrated samples (see :class:`Calibration`, :func:`calibrated_samples`).
    ``input_shapes`` gives a model's input shape without the batch dimension (a block inside a network
    sees a channels-last map, not an image); the others get ``(3, resolution, resolution)`` images.
    """
    s = _checked(settings)
    if not models:
        raise ValueError("models: give at least one model")
    dev = check_device(s.device)
    batch, resolution, dtype, runtime = s.batch, s.resolution, s.dtype, s.runtime
    threads, warmup, repeats, channels_last, clock = s.threads, s.warmup, s.repeats, s.channels_last, s.clock
    if calibration is not None:
        if dev.type != "cpu":
            raise ValueError("calibration: only CPU latency is calibrated; pass calibration=None on cuda")
        if not calibration.fits(threads, clock):
            raise ValueError(
                f"calibration: measured with threads={calibration.threads}, clock={calibration.clock!r} but this "
                f"measurement uses threads={threads}, clock={clock!r}; calibrate with the same settings"
            )
    torch_dtype = DTYPES[dtype]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    protocol = LatencyProtocol(
        device=str(dev),
        device_name=device_name(dev),
        runtime=runtime,  # type: ignore[arg-type]
        dtype=dtype,  # type: ignore[arg-type]
        batch=batch,
        resolution=resolution,
        channels_last=channels_last,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        clock=clock,  # type: ignore[arg-type]
        torch_version=torch.__version__,
        calibration=calibration,
        retain_freed_memory=retaining() if dev.type == "cpu" else False,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
    )
    reference = reference_workload() if calibration is not None else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(num_threads(threads))
        calls: dict[str, Callable[[], Any]] = {}
        peaks: dict[str, tuple[int | None, str]] = {}
        for name, model in models.items():
            ready = prepared(model, dev, torch_dtype, channels_last)
            stack.enter_context(eval_mode(ready))
            shape = (input_shapes or {}).get(name)
            x = torch.randn(batch, *(shape or (3, resolution, resolution)), generator=torch.Generator().manual_seed(0))
            x = x.to(device=dev, dtype=torch_dtype)
            x = x.contiguous(memory_format=memory_format) if shape is None else x.contiguous()
            calls[name] = runner(ready, x, runtime, threads)

        stack.enter_context(torch.inference_mode())
        for name, call in calls.items():  # warm-up, one model after another, peak memory on the way
            if warmup:
                peaks[name] = _peak_memory_during(dev, lambda c=call: [c() for _ in range(warmup)])
            else:
                peaks[name] = (None, "none")

        use_events = runtime in ("eager", "compile")
        timers = {name: Timer(dev, use_events, clock) for name in calls}
        ref_timer = Timer(dev, False, clock)
        if reference is not None:
            for _ in range(max(warmup, 3)):
                reference()
            list(calls.values())[-1]()  # the first reference pass follows a model pass, as every later one does
            ref_timer.time(reference)
        for _ in range(repeats):
            for name, call in calls.items():
                timers[name].time(call)
                if reference is not None:
                    ref_timer.time(reference)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other work on the machine
    records = {}
    ref_samples = ref_timer.results()
    for index, (name, timer) in enumerate(timers.items()):
        raw = timer.results()
        extra: dict[str, float] = {}
        if calibration is not None:
            extra = {
                "raw_median_ms": statistics.median(raw),
                "machine_speed": calibration.reference_ms / statistics.median(ref_samples),
            }
            raw = calibrated_samples(raw, ref_samples, calibration.reference_ms, len(timers), index)
        stats = _summary(raw)
        peak, source = peaks[name]
        records[name] = LatencyRecord(
            name=name,
            protocol=protocol,
            images_per_s=batch * 1e3 / stats["median_ms"] if stats["median_ms"] > 0 else math.inf,
            peak_memory_bytes=peak,
            peak_memory_source=source,  # type: ignore[arg-type]
            interleaved_with=len(models),
            load_average_1m=load,
            unit=measured_unit(calibration),
            **stats,
            **extra,
        )
    return records


def measure_latency(model: nn.Module, settings: LatencySettings, *, name: str = "model",
                    calibration: Calibration | None = None) -> LatencyRecord:
    """Latency record of one model: median/p90/CV over ``settings.repeats`` timed forward passes."""
    return measure_latencies({name: model}, settings, calibration=calibration)[name]


def measure_throughput(model: nn.Module, settings: LatencySettings, *, name: str = "model") -> LatencyRecord:
    """Images/s at the largest batch <= ``settings.batch`` that fits: the batch halves on CUDA out-of-memory."""
    s = _checked(settings)
    dev = check_device(s.device)
    size = s.batch
    while True:
        try:
            record = measure_latency(model, s.updated(batch=size), name=name)
        except torch.OutOfMemoryError:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if size == 1:
                raise
            size //= 2
            continue
        return record.model_copy(update={"batch_requested": s.batch})
