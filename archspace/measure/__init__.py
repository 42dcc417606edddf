"""Cost of a model: FLOPs under named conventions, latency and throughput as records."""

from archspace.measure.flops import CONVENTIONS, FlopsRecord, count_flops, count_full_macs, profile_flops
from archspace.measure.latency import (
    Calibration,
    Comparison,
    LatencyProtocol,
    LatencyRecord,
    calibrate,
    calibrated_samples,
    compare,
    device_name,
    measure_latencies,
    measure_latency,
    measure_throughput,
    onnx_session,
    retain_freed_memory,
)

__all__ = [
    "CONVENTIONS",
    "Calibration",
    "Comparison",
    "FlopsRecord",
    "LatencyProtocol",
    "LatencyRecord",
    "calibrate",
    "calibrated_samples",
    "compare",
    "count_flops",
    "count_full_macs",
    "device_name",
    "measure_latencies",
    "measure_latency",
    "measure_throughput",
    "onnx_session",
    "retain_freed_memory",
    "profile_flops",
]
