"""Cost of a model: FLOPs under named conventions, latency and throughput as records."""

from archspace._lazy import lazy_attributes

_LAZY = {
    "CONVENTIONS": "flops",
    "FlopsRecord": "flops",
    "count_flops": "flops",
    "count_full_macs": "flops",
    "profile_flops": "flops",
    "Calibration": "latency",
    "Comparison": "latency",
    "LatencyProtocol": "latency",
    "LatencyRecord": "latency",
    "calibrate": "latency",
    "calibrated_samples": "latency",
    "compare": "latency",
    "device_name": "latency",
    "measure_latencies": "latency",
    "measure_latency": "latency",
    "measure_throughput": "latency",
    "onnx_session": "latency",
    "retain_freed_memory": "latency",
    "LatencySettings": "latency",
    "load_or_calibrate": "latency",
    "apply_process_settings": "latency",
    "DeviceProfile": "latency.model",
    "load_profile": "latency.model",
    "measure_profile": "latency.model",
    "predict_latency": "latency.model",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


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
    "LatencySettings",
    "load_or_calibrate",
    "apply_process_settings",
    "DeviceProfile",
    "load_profile",
    "measure_profile",
    "predict_latency",
]
