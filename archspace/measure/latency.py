"""Latency and throughput measurements as records that carry their protocol.

A number is only meaningful with the conditions it was taken under (device, runtime, dtype,
batch, resolution, memory format, threads, warm-up, repeats, statistic), so every result is a
:class:`LatencyRecord` holding a :class:`LatencyProtocol`, and :func:`compare` states which
protocol fields differ instead of comparing unlike numbers silently. Nothing here changes
global torch state behind the caller's back: the thread count is restored, and the caller's
model is neither moved, cast nor left in another train/eval mode.

On a shared CPU the machine's own speed drifts by 20-30% over seconds to minutes, at times more
(measured on a 2-core VM), which no number of repeats averages away. A :class:`Calibration` fixes that: a
small fixed reference workload is timed once (``calibrate``), then run right before and after
every timed forward pass; each sample is rescaled by how much slower or faster the reference ran
than at calibration time. Latencies measured against one calibration are comparable across
profiles and processes on the same machine; the raw wall-clock median is kept beside them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from archspace.measure.flops import _eval_mode

Runtime = Literal["eager", "compile", "onnxrt-cpu", "onnxrt-cuda"]
DType = Literal["fp32", "fp16", "bf16"]
Clock = Literal["wall", "thread"]
RUNTIMES: tuple[str, ...] = ("eager", "compile", "onnxrt-cpu", "onnxrt-cuda")
CLOCKS: tuple[str, ...] = ("wall", "thread")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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


class LatencyProtocol(BaseModel):
    """The conditions of a latency measurement: two records compare only if these are equal.

    ``clock`` is ``wall`` (perf_counter, or CUDA events on a GPU) or ``thread``: the calling
    thread's CPU time, which leaves out the time the OS gives to other processes on a shared
    machine (CPU, one thread, eager or compiled only). ``retain_freed_memory`` says the C
    allocator kept freed memory mapped (see :func:`retain_freed_memory`).
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


class LatencyRecord(BaseModel):
    """One model's latency under one protocol: median, p90, CV, images/s and peak memory.

    ``interleaved_with`` counts the models whose repeats were interleaved with this one;
    ``load_average_1m`` is the machine's 1-minute load average when the measurement ended.
    With a calibration, ``median_ms``, ``p90_ms``, ``mean_ms`` and ``cv`` are of calibrated
    samples; ``raw_median_ms`` is the plain wall-clock median and ``machine_speed`` the
    calibration's reference time over the reference's median time during this measurement (1.0:
    as fast as when calibrated; 0.8: the machine ran 20% slower). Both are None uncalibrated.
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


# --------------------------------------------------------------------------- validation


def _check_device(device: str) -> torch.device:
    """A torch device for 'cpu', 'cuda' or 'cuda:N', with CUDA checked to exist."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: unsupported device {device!r}; use 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


def _check_protocol(
    runtime: str,
    dtype: str,
    batch: int,
    resolution: int,
    threads: int,
    warmup: int,
    repeats: int,
    clock: str = "wall",
    device: str = "cpu",
) -> None:
    """Raise a one-line ValueError naming the first bad argument."""
    if clock not in CLOCKS:
        raise ValueError(f"clock: unknown clock {clock!r}; choose from {', '.join(CLOCKS)}")
    if clock == "thread" and (
        not str(device).startswith("cpu") or threads != 1 or runtime not in ("eager", "compile")
    ):
        raise ValueError(
            "clock: 'thread' times the calling thread's CPU time; use it only with device='cpu', "
            "threads=1 and runtime eager or compile"
        )
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if runtime.startswith("onnxrt") and dtype != "fp32":
        raise ValueError(f"dtype: runtime {runtime!r} is measured in fp32 only; use dtype='fp32'")
    for label, value, low in (
        ("batch", batch, 1),
        ("resolution", resolution, 1),
        ("threads", threads, 1),
        ("warmup", warmup, 0),
        ("repeats", repeats, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{label}: expected an int >= {low}, got {value!r}")


def device_name(device: str | torch.device = "cpu") -> str:
    """Human name of a device: the CPU model from /proc/cpuinfo, or the CUDA device name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


# --------------------------------------------------------------------------- runners


@contextlib.contextmanager
def _num_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread count, restoring the previous one afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _prepared(model: nn.Module, dev: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    """The model on ``dev`` in ``dtype`` (and channels-last); a copy when anything must change."""
    tensors = [*model.parameters(), *model.buffers()]
    needs_change = channels_last or any(
        t.device != dev or (t.is_floating_point() and t.dtype != dtype) for t in tensors
    )
    if not needs_change:
        return model
    moved = copy.deepcopy(model).to(device=dev, dtype=dtype)
    return moved.to(memory_format=torch.channels_last) if channels_last else moved


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the ONNX exporter's progress lines and warnings (printed to stdout/stderr and logs)."""
    import io
    import logging
    import warnings

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_session(model: nn.Module, x: torch.Tensor, runtime: str = "onnxrt-cpu", threads: int = 1) -> Any:
    """Export ``model`` (traced at input ``x``, fp32) to ONNX and open it in ONNX Runtime.

    The session's input is named ``input`` and its output ``output``; ``runtime`` picks the
    provider (``onnxrt-cpu``: CPUExecutionProvider, ``onnxrt-cuda``: CUDAExecutionProvider),
    ``threads`` its intra-op threads. Needs ``pip install 'archspace[onnx]'``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        package = "onnxruntime-gpu" if runtime == "onnxrt-cuda" else "onnxruntime"
        raise ImportError(
            f"runtime {runtime!r} needs ONNX Runtime: pip install {package} onnx onnxscript"
        ) from None
    providers = ["CUDAExecutionProvider"] if runtime == "onnxrt-cuda" else ["CPUExecutionProvider"]
    if providers[0] not in ort.get_available_providers():
        raise ValueError(f"runtime: {runtime!r} needs the {providers[0]}, which this onnxruntime lacks")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.onnx")
        with _quiet_export():
            torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["output"], dynamo=True,
                              verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(path, sess_options=options, providers=providers)


def _onnx_runner(model: nn.Module, x: torch.Tensor, runtime: str, threads: int) -> Callable[[], Any]:
    """Export ``model`` to ONNX and return a call that runs it once in ONNX Runtime."""
    session = onnx_session(model, x, runtime, threads)
    feed = {"input": x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def _runner(model: nn.Module, x: torch.Tensor, runtime: str, threads: int) -> Callable[[], Any]:
    """A zero-argument call that runs one forward pass under ``runtime``."""
    if runtime == "eager":
        return lambda: model(x)
    if runtime == "compile":
        compiled = torch.compile(model)
        return lambda: compiled(x)
    return _onnx_runner(model, x, runtime, threads)


class _Timer:
    """Times one call in milliseconds: CUDA events on a GPU, else perf_counter or thread CPU time."""

    def __init__(self, dev: torch.device, use_events: bool, clock: str = "wall") -> None:
        self.dev = dev
        self.use_events = use_events and dev.type == "cuda"
        self.now = time.thread_time if clock == "thread" else time.perf_counter
        self.pending: list[tuple[Any, Any]] = []
        self.samples: list[float] = []

    def time(self, call: Callable[[], Any]) -> None:
        if self.use_events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            self.pending.append((start, end))
        else:
            t0 = self.now()
            call()
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            self.samples.append((self.now() - t0) * 1e3)

    def results(self) -> list[float]:
        if self.pending:
            torch.cuda.synchronize(self.dev)
            self.samples.extend(start.elapsed_time(end) for start, end in self.pending)
            self.pending.clear()
        return self.samples


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


_RETAINING = False


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory mapped for the rest of this process; True if it now does.

    By default glibc returns large freed blocks to the OS, so every CPU forward pass page-faults
    its activations back in: ~5,000-7,400 minor faults per batch-1 224 px smt_t pass, varying
    from pass to pass (in two back-to-back processes: 159-210 ms per pass by default, 158-173 ms
    retained). Raising the mmap
    threshold to 32 MiB and turning off trimming removes those faults (0 per pass), the way
    jemalloc/tcmalloc deployments run. CPU latency measurements call this (it cannot be undone:
    the process keeps its peak heap); False where the C library is not glibc.
    """
    global _RETAINING
    if _RETAINING:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = all(
            libc.mallopt(option, value) == 1
            for option, value in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
        )
    except (OSError, AttributeError):
        return False
    _RETAINING = ok
    return ok


def _reference_workload() -> Callable[[], Any]:
    """The calibration workload: a fixed seeded conv net (dense, depth-wise and 1x1 convs, BN, GELU) at 112 px.

    Its op mix resembles the networks archspace builds, so machine slow-downs hit it and them
    alike; one pass takes 4-7 ms on one thread of a 2-core EPYC VM. Built without touching the
    global RNG.
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
    be comparable (a search stores it with its study). ~2 s at the defaults.
    """
    _check_protocol("eager", "fp32", 1, 1, threads, warmup, repeats, clock, "cpu")
    retain_freed_memory()
    run = _reference_workload()
    timer = _Timer(torch.device("cpu"), use_events=False, clock=clock)
    with _num_threads(threads):
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


def calibrated_samples(
    samples: Sequence[float], reference: Sequence[float], reference_ms: float, models: int, index: int
) -> list[float]:
    """Rescale model ``index``'s samples by the reference times measured right before and after each.

    ``reference`` holds, per round, ``models + 1`` reference times (one before the first model and
    one after each); sample r of model ``index`` lies between reference r*(models+1)+index and the
    next. Calibrated sample = raw * reference_ms / mean(before, after).
    """
    stride = models + 1
    if len(reference) != stride * len(samples):
        raise ValueError(f"reference: expected {stride * len(samples)} reference times, got {len(reference)}")
    out = []
    for r, raw in enumerate(samples):
        before, after = reference[r * stride + index], reference[r * stride + index + 1]
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


# --------------------------------------------------------------------------- public


def measure_latencies(
    models: Mapping[str, nn.Module],
    *,
    device: str = "cpu",
    batch: int = 1,
    resolution: int = 224,
    dtype: str = "fp32",
    runtime: str = "eager",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    channels_last: bool = False,
    clock: str = "wall",
    calibration: Calibration | None = None,
) -> dict[str, LatencyRecord]:
    """Latency records of several models, repeats interleaved round-robin so noise hits all alike.

    With ``calibration`` (CPU only) the reference workload runs before the first model of every
    round and after each model, and the records hold calibrated samples (see :class:`Calibration`).
    """
    if not models:
        raise ValueError("models: give at least one model")
    _check_protocol(runtime, dtype, batch, resolution, threads, warmup, repeats, clock, device)
    dev = _check_device(device)
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
    retained = retain_freed_memory() if dev.type == "cpu" else False
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
        retain_freed_memory=retained,
    )
    reference = _reference_workload() if calibration is not None else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_num_threads(threads))
        calls: dict[str, Callable[[], Any]] = {}
        peaks: dict[str, tuple[int | None, str]] = {}
        for name, model in models.items():
            prepared = _prepared(model, dev, torch_dtype, channels_last)
            stack.enter_context(_eval_mode(prepared))
            x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
            x = x.to(device=dev, dtype=torch_dtype).contiguous(memory_format=memory_format)
            calls[name] = _runner(prepared, x, runtime, threads)

        stack.enter_context(torch.inference_mode())
        for name, call in calls.items():  # warm-up, one model after another, peak memory on the way
            if warmup:
                peaks[name] = _peak_memory_during(dev, lambda c=call: [c() for _ in range(warmup)])
            else:
                peaks[name] = (None, "none")

        use_events = runtime in ("eager", "compile")
        timers = {name: _Timer(dev, use_events, clock) for name in calls}
        ref_timer = _Timer(dev, False, clock)
        if reference is not None:
            for _ in range(max(warmup, 3)):
                reference()
        for _ in range(repeats):
            if reference is not None:
                ref_timer.time(reference)
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
            **stats,
            **extra,
        )
    return records


def measure_latency(
    model: nn.Module,
    *,
    name: str = "model",
    device: str = "cpu",
    batch: int = 1,
    resolution: int = 224,
    dtype: str = "fp32",
    runtime: str = "eager",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    channels_last: bool = False,
    clock: str = "wall",
    calibration: Calibration | None = None,
) -> LatencyRecord:
    """Latency record of one model: median/p90/CV over ``repeats`` timed forward passes."""
    return measure_latencies(
        {name: model},
        device=device,
        batch=batch,
        resolution=resolution,
        dtype=dtype,
        runtime=runtime,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        channels_last=channels_last,
        clock=clock,
        calibration=calibration,
    )[name]


def measure_throughput(
    model: nn.Module,
    *,
    name: str = "model",
    device: str = "cuda",
    batch: int = 64,
    resolution: int = 224,
    dtype: str = "fp32",
    runtime: str = "eager",
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 30,
    channels_last: bool = False,
) -> LatencyRecord:
    """Images/s at the largest batch <= ``batch`` that fits: the batch halves on CUDA out-of-memory."""
    _check_protocol(runtime, dtype, batch, resolution, threads, warmup, repeats)
    dev = _check_device(device)
    size = batch
    while True:
        try:
            record = measure_latency(
                model,
                name=name,
                device=device,
                batch=size,
                resolution=resolution,
                dtype=dtype,
                runtime=runtime,
                threads=threads,
                warmup=warmup,
                repeats=repeats,
                channels_last=channels_last,
            )
        except torch.OutOfMemoryError:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if size == 1:
                raise
            size //= 2
            continue
        return record.model_copy(update={"batch_requested": batch})


class Comparison(BaseModel):
    """Records side by side: the shared protocol, the fields that differ, and one row per record."""

    model_config = ConfigDict(frozen=True)

    common: dict[str, Any]
    differing: dict[str, list[Any]]
    rows: list[dict[str, Any]]

    @property
    def comparable(self) -> bool:
        """True when every record was taken under the same protocol."""
        return not self.differing

    def render(self) -> str:
        """A plain-text table, headed by a warning naming the protocol fields that differ."""
        lines = []
        if self.differing:
            fields = ", ".join(f"{k} ({' / '.join(map(str, v))})" for k, v in self.differing.items())
            lines.append(f"WARNING: protocols differ in {fields}; these numbers are not comparable")
        lines.append("protocol: " + ", ".join(f"{k}={v}" for k, v in self.common.items()))
        columns = list(self.rows[0]) if self.rows else []
        cells = [[_cell(row[c]) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        lines.extend("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e3 else f"{value:,.0f}"
    return str(value)


def compare(
    records: Sequence[LatencyRecord] | Mapping[str, LatencyRecord], *, strict: bool = False
) -> Comparison:
    """Side-by-side table of records; differing protocol fields are listed (or raise if ``strict``)."""
    items = list(records.values()) if isinstance(records, Mapping) else list(records)
    if not items:
        raise ValueError("records: give at least one LatencyRecord")
    protocols = []
    for r in items:
        protocol = r.protocol.model_dump()
        protocol["calibration"] = r.protocol.calibration.label() if r.protocol.calibration else None
        protocols.append(protocol)
    common: dict[str, Any] = {}
    differing: dict[str, list[Any]] = {}
    for field in protocols[0]:
        values = [p[field] for p in protocols]
        if all(v == values[0] for v in values):
            common[field] = values[0]
        else:
            differing[field] = values
    if strict and differing:
        raise ValueError(
            f"records: protocols differ in {', '.join(differing)}; measure them under one protocol"
        )
    base = items[0].median_ms
    calibrated = any(r.raw_median_ms is not None for r in items)
    rows = []
    for record, protocol in zip(items, protocols, strict=True):
        row: dict[str, Any] = {"name": record.name}
        row.update({field: protocol[field] for field in differing})
        row.update(
            median_ms=record.median_ms,
            p90_ms=record.p90_ms,
            cv=record.cv,
            images_per_s=record.images_per_s,
            vs_first=record.median_ms / base if base > 0 else math.nan,
        )
        if calibrated:
            row.update(raw_median_ms=record.raw_median_ms, machine_speed=record.machine_speed)
        rows.append(row)
    return Comparison(common=common, differing=differing, rows=rows)
