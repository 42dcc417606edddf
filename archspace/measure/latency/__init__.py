"""Latency and throughput measurements as records that carry their protocol.

Modules, each importing only those before it: ``settings`` (what to measure under), ``records`` (results
and their protocol), ``compare`` (side-by-side tables), ``process`` (explicit process-wide settings),
``runtimes`` (eager, compiled, ONNX Runtime), ``clock`` (timing one call), ``calibration`` (the
reference workload and the one load-or-measure policy) and ``timing`` (the measuring loops).

A number is only meaningful with the conditions it was taken under (device, runtime, dtype,
batch, resolution, memory format, threads, warm-up, repeats, statistic), so every result is a
:class:`LatencyRecord` holding a :class:`LatencyProtocol`, and :func:`compare` states which
protocol fields differ instead of comparing unlike numbers silently. Nothing here changes
global torch state behind the caller's back: the thread count is restored, and the caller's
model is neither moved, cast nor left in another train/eval mode.

On a shared CPU the machine's own speed drifts over seconds to minutes (measured figures:
README, "Measuring cost"), which no number of repeats averages away. A :class:`Calibration` fixes that: a
small fixed reference workload is timed once (``calibrate``), then run right before and after
every timed forward pass; each sample is rescaled by how much slower or faster the reference ran
than at calibration time. Latencies measured against one calibration are comparable across
profiles and processes on the same machine; the raw wall-clock median is kept beside them.
"""
from __future__ import annotations

from archspace._lazy import lazy_attributes

from .compare import Comparison, compare
from .process import apply_process_settings, retain_freed_memory
from .records import REFERENCE_WORKLOAD, Calibration, LatencyProtocol, LatencyRecord
from .settings import CLOCKS, DTYPE_NAMES, RUNTIMES, LatencySettings

# the modules that import torch load on first use, so the settings and records above import without it
_LAZY = {
    "calibrate": "calibration", "load_or_calibrate": "calibration",
    "device_name": "runtimes", "onnx_session": "runtimes",
    "calibrated_samples": "timing", "measure_latencies": "timing", "measure_latency": "timing",
    "measure_throughput": "timing",
}

__all__ = [
    "CLOCKS", "Calibration", "Comparison", "DTYPE_NAMES", "LatencyProtocol", "LatencyRecord", "LatencySettings",
    "REFERENCE_WORKLOAD", "RUNTIMES", "apply_process_settings", "calibrate", "calibrated_samples", "compare",
    "device_name", "load_or_calibrate", "measure_latencies", "measure_latency", "measure_throughput", "onnx_session",
    "retain_freed_memory",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
