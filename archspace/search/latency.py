"""Where a search's latency comes from, and the unit it is in: one place for both engines, tables and plots.

A space's ``measure.latency`` is ``measured`` (each trial's network timed on the worker that runs it) or
``predicted`` (the latency model of the device profile ``measure.profile``: looked up, nothing built or
timed, the same number on every worker and node). ``measure.report_profiles`` adds predicted latencies on
other devices to every trial's record without searching on them. Profiles are read once per process
(keyed by path, size and modification time) and identified by the digest of their bytes, so a cached
result is reused only under the same profile.

Every latency a search records carries its unit (:func:`unit`): ``wall ms`` (timed, uncalibrated, or on a
GPU), ``ms calibrated to convnet112-v1=2.624ms (profile NAME)`` (timed on the CPU and rescaled to a
named profile's reference time, comparable between runs on the same kind of machine), ``ms calibrated
to convnet112-v1=2.624ms (this run's reference)`` (the run's own calibration) or ``predicted ms on NAME:
AMD EPYC (avx512), eager, 1 thread(s), batch 1, 224 px``.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..spec.errors import SpecError

if TYPE_CHECKING:
    from ..measure.latency import Calibration
    from ..measure.latency.model import DeviceProfile
    from .space import Space

REPORT_PREFIX = "latency_ms:"  # trials.csv column of a reported profile's predicted latency: latency_ms:NAME


def _parse(data: bytes, path: str) -> tuple["DeviceProfile", str]:
    """(profile, digest) of a profile file's bytes."""
    from ..measure.latency.model import parse_profile

    return parse_profile(data, path), hashlib.sha256(data).hexdigest()[:16]


@lru_cache(maxsize=32)
def _load(path: str, size: int, mtime_ns: int) -> tuple["DeviceProfile", str]:
    if not Path(path).is_file():  # a folder: the model's own one-line error
        from ..measure.latency.model import load_profile

        load_profile(path)
    return _parse(Path(path).read_bytes(), path)


_SHIPPED: dict[str, tuple["DeviceProfile", str]] = {}  # profiles a driver sent with its trials, by the driver's path


def ship(space: "Space") -> dict[str, str]:
    """The text of every profile a space names, by path: what a Ray trial on another node predicts with."""
    return {path: Path(path).read_bytes().decode("utf-8") for _, path in profiles(space)}


def receive(shipped: dict[str, str]) -> None:
    """Use the profiles a driver shipped (:func:`ship`) for their paths in this process, whatever lies there."""
    for path, text in shipped.items():
        if path not in _SHIPPED:
            _SHIPPED[path] = _parse(text.encode("utf-8"), path)


def load(path: str, field: str = "measure.profile") -> tuple["DeviceProfile", str]:
    """(profile, digest) of the device profile at ``path``; one-line SpecError naming ``field`` otherwise."""
    if path in _SHIPPED:
        return _SHIPPED[path]
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise SpecError(f"{field}: {path} does not exist (measure one with archspace device measure --out {path})") from None
    try:
        return _load(str(p), st.st_size, st.st_mtime_ns)
    except ValueError as exc:
        raise SpecError(f"{field}: {' '.join(str(exc).split()).removeprefix('profile: ')}") from None


def digest(path: Optional[str]) -> Optional[str]:
    """The digest of a profile's bytes (what a cached trial must have been predicted with); None without one."""
    return load(path)[1] if path else None


def profiles(space: "Space") -> list[tuple[str, str]]:
    """(field, path) of every profile a space names: the search's own, then the reported ones."""
    m = space.measure
    out = [("measure.profile", m.profile)] if m.profile else []
    return out + [(f"measure.report_profiles[{i}]", p) for i, p in enumerate(m.report_profiles)]


def check(space: "Space", base: Any, source: str = "space") -> None:
    """Every profile a space names loads, was measured at the space's resolution and batch, predicts the ``base``
    network, and (for calibration) fits the space's threads and clock; one line naming the field otherwise."""
    m = space.measure
    names: dict[str, str] = {}
    for field, path in profiles(space):
        try:
            prof, _ = load(path, field)
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None
        p = prof.protocol
        if (p.resolution, p.batch) != (m.resolution, m.batch):
            raise SpecError(f"{source}: {field}: {path} was measured at batch {p.batch}, {p.resolution} px; the space "
                            f"measures at batch {m.batch}, {m.resolution} px (set measure.batch: {p.batch} and "
                            f"measure.resolution: {p.resolution}, or measure a profile of this space with archspace device "
                            f"measure --space {source})")
        if field.startswith("measure.report"):
            if prof.name in names:
                raise SpecError(f"{source}: {field}: two report profiles are named {prof.name!r} ({names[prof.name]} "
                                f"and {path}); give them distinct names (archspace device measure --name)")
            names[prof.name] = path
        if field == "measure.profile" and m.timed and m.calibrate and str(m.device).startswith("cpu"):
            cal = prof.calibration
            if cal is None:
                raise SpecError(f"{source}: {field}: {path} holds no CPU calibration to measure latency against "
                                f"(it was measured uncalibrated or on a GPU); drop measure.profile or use latency: predicted")
            if not cal.fits(m.threads, m.clock):
                raise SpecError(f"{source}: {field}: {path}'s calibration was timed on {cal.threads} thread(s), "
                                f"{cal.clock} clock; the space measures on {m.threads} thread(s), {m.clock} clock "
                                f"(match measure.threads and measure.clock)")
        if m.latency == "predicted" or field.startswith("measure.report"):
            from ..measure.latency.model import predict_latency

            try:
                predict_latency(base, prof)
            except ValueError as exc:
                raise SpecError(f"{source}: {field}: {path} cannot predict the base network: "
                                f"{' '.join(str(exc).split()).removeprefix('profile: ')}") from None


def unit(space: "Space", calibration: Optional["Calibration"] = None) -> Optional[str]:
    """The unit of a space's ``latency_ms``, with ``calibration`` the one its timed trials used; None without latency."""
    m = space.measure
    if not m.latency:
        return None
    if m.latency == "predicted":
        return f"predicted ms on {load(m.profile)[0].label()}"
    from ..measure.latency.records import measured_unit

    if not str(m.device).startswith("cpu"):
        calibration = None
    return measured_unit(calibration, f"profile {load(m.profile)[0].name}" if m.profile else "this run's reference")


def predicted(space: "Space", spec: Any) -> dict[str, Any]:
    """The latency record of ``spec`` predicted on the space's profile: source, profile, digest, unit, median."""
    from ..measure.latency.model import predict_latency

    m = space.measure
    prof, dig = load(m.profile)
    ms = predict_latency(spec, prof)
    return {"source": "predicted", "profile": prof.name, "profile_path": m.profile, "profile_digest": dig,
            "unit": unit(space), "label": prof.label(), "median_ms": ms,
            "images_per_s": 1000.0 * m.batch / ms if ms > 0 else float("inf")}


def reported(space: "Space", spec: Any) -> dict[str, float]:
    """Predicted latency of ``spec`` on each of the space's report profiles, by profile name."""
    from ..measure.latency.model import predict_latency

    return {prof.name: predict_latency(spec, prof) for prof in (load(p)[0] for p in space.measure.report_profiles)}


def report_columns(space: "Space") -> list[str]:
    """trials.csv columns of the reported profiles: latency_ms:NAME each."""
    return [REPORT_PREFIX + load(p)[0].name for p in space.measure.report_profiles]


def calibration_reference(space: "Space") -> Optional["Calibration"]:
    """The named profile's calibration that timed CPU latency is expressed in; None when the space names none."""
    m = space.measure
    if not (m.timed and m.calibrate and m.profile and str(m.device).startswith("cpu")):
        return None
    return load(m.profile)[0].calibration


def key(space: "Space") -> dict[str, Any]:
    """The measurement protocol as a cache key: the profiles by digest, not by where their files lie."""
    data = space.measure.model_dump(mode="json")
    data["profile"] = digest(space.measure.profile)
    data["report_profiles"] = [digest(p) for p in space.measure.report_profiles]
    return data
