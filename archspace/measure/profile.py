"""Profiles: params, MACs in named conventions and latency records of several networks, timed side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from ..spec.errors import SpecError
from .latency.settings import LatencySettings


def calibration_from_file(path: Optional[Union[str, Path]], settings: LatencySettings) -> Any:
    """The CPU calibration kept in ``path`` when it exists and fits ``settings`` (threads, clock), else one
    measured now and saved there (atomically); without ``path``, one measured now."""
    from ..files import atomic_write_text
    from .latency.calibration import Calibration, load_or_calibrate

    path = Path(path) if path else None
    if path is not None and path.exists():
        try:
            cal = Calibration.model_validate_json(path.read_text())
        except ValueError:
            raise SpecError(f"--calibration: {path} is not a calibration file (delete it to measure a new one)") from None
        if not cal.fits(settings.threads, settings.clock):
            raise SpecError(f"--calibration: {path} was measured with {cal.threads} thread(s) on the {cal.clock} clock, "
                            f"this profile uses --threads {settings.threads} on the {settings.clock} clock; use another file")
        return load_or_calibrate(settings, cal)
    cal = load_or_calibrate(settings)
    if path is not None and cal is not None:
        atomic_write_text(path, cal.model_dump_json(indent=1) + "\n")
    return cal


def profile(specs: dict[str, Any], settings: Optional[LatencySettings], *, flops: Sequence[str],
            calibrate: bool = True, calibration_file: Optional[Union[str, Path]] = None,
            status: Optional[Callable[[str], Any]] = None, device_profile: Any = None) -> dict[str, dict]:
    """Per network: ``params``, ``flops`` (MACs per convention at ``settings.resolution``, batch 1), the FLOP
    record and, unless ``settings`` is None, a latency record; every network's repeats are interleaved.

    CPU latencies are calibrated (``calibrate``) with the calibration in ``calibration_file`` when given, else with
    ``device_profile``'s when it fits (then measured and predicted latency are in one unit); with a
    ``device_profile`` every network also gets ``predicted_ms`` and ``predicted`` (profile, unit, label)."""
    from ..nn.build import build
    from .flops import profile_flops
    from .latency import apply_process_settings, measure_latencies

    say = status or (lambda text: None)
    if settings is not None and settings.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SpecError(f"--device: {settings.device!r} but CUDA is not available on this machine (use --device cpu)")
    resolution = settings.resolution if settings is not None else 224
    apply_process_settings()
    out: dict[str, dict] = {}
    models = {}
    for name, spec in specs.items():
        say(f"{name}: building")
        model = build(spec).eval()
        say(f"{name}: counting FLOPs ({', '.join(flops)})")
        rec = profile_flops(model, (1, spec.in_chans, resolution, resolution), list(flops))
        out[name] = {"params": sum(p.numel() for p in model.parameters()), "flops": rec.macs,
                     "flops_record": rec.model_dump(mode="json")}
        models[name] = model
        if device_profile is not None:
            from .latency.model import predict_latency

            out[name]["predicted_ms"] = predict_latency(spec, device_profile)
            out[name]["predicted"] = {"profile": device_profile.name, "unit": device_profile.unit,
                                      "label": device_profile.label()}
    if settings is None:
        return out
    calibration = None
    if calibrate and settings.device == "cpu":
        say(f"calibrating: timing the reference workload on {settings.threads} thread(s)")
        own = device_profile.calibration if device_profile is not None and not calibration_file else None
        if own is not None and own.fits(settings.threads, settings.clock):
            calibration = own
        else:
            calibration = calibration_from_file(calibration_file, settings)
    say(f"timing {len(models)} model(s), repeats interleaved: {settings.repeats} x batch {settings.batch} on {settings.device}")
    from .latency.records import measured_unit

    profiled = device_profile is not None and calibration is not None and calibration == device_profile.calibration
    whose = (f"profile {device_profile.name}" if profiled else f"--calibration {calibration_file}" if calibration_file
             else "this process's reference")
    for name, rec in measure_latencies(models, settings, calibration=calibration).items():
        out[name]["latency"] = {**rec.model_dump(mode="json"), "unit": measured_unit(calibration, whose)}
    return out


def by_module(specs: dict[str, Any], resolution: int, conventions: Sequence[str]) -> dict[str, list[dict]]:
    """Params and MACs per module (stem, downsamples, every block, head) from the analytic complexity."""
    from ..vocab import CONVENTIONS
    from .complexity import complexity_by_module

    if not [c for c in conventions if c in CONVENTIONS]:
        raise SpecError("--by-module: give at least one of --flops " + " ".join(CONVENTIONS) + " (ptflops is counted only)")
    return {name: complexity_by_module(spec, resolution) for name, spec in specs.items()}
