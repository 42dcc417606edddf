"""Cost of a model: FLOPs under named conventions, latency and throughput as records."""

from archspace.measure.flops import CONVENTIONS, FlopsRecord, count_flops, count_full_macs, profile_flops
from archspace.measure.latency import (
    Comparison,
    LatencyProtocol,
    LatencyRecord,
    compare,
    device_name,
    measure_latencies,
    measure_latency,
    measure_throughput,
)

__all__ = [
    "CONVENTIONS",
    "Comparison",
    "FlopsRecord",
    "LatencyProtocol",
    "LatencyRecord",
    "compare",
    "count_flops",
    "count_full_macs",
    "device_name",
    "measure_latencies",
    "measure_latency",
    "measure_throughput",
    "profile_flops",
]
