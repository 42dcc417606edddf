"""Device profiles and the latency model: per-part latency tables timed in context, and predictions from them.

A network's forward pass at batch 1 is its parts one after another (stem, each stage's downsample, each
block, the stage norms, the head), so its latency is close to the sum of its parts' latencies, each timed
on the map size it sees inside the network. A :class:`DeviceProfile` holds such a table for one device and
protocol, measured by :func:`measure_profile`, plus a correction fitted on a few whole networks (what the
sum misses: calls between parts, caches), and per-kind fits for parts it never timed.
:func:`predict_latency` looks a spec's parts up (exact entry, else interpolated between the entries of the
same part at other sizes, else the kind's fit) and applies the correction: no model is built.

Profiles are data (JSON): anyone can inspect, diff and share them. With a calibration (CPU) every entry is
in calibrated ms of the profile's own reference time, so a latency measured later against the same
calibration is in the same unit (see :class:`archspace.measure.latency.Calibration`).
"""
from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .records import Calibration, measured_unit
from .settings import LatencySettings

PROFILE_FORMAT = "archspace-device-profile-v1"
FIT_FEATURES = ("one", "mmacs", "melements")  # a kind's fit: ms = a + b * MMACs (full) + c * M elements in and out


class Entry(BaseModel):
    """One part's latency at one size: ms (median, in the profile's unit), its spread, and the features fits use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    family: str
    ms: float
    p90_ms: float
    cv: float
    mmacs: float
    melements: float
    seen: int = 1  # how many of the sampled networks contain this part


class NetworkPoint(BaseModel):
    """A whole network timed for the correction: its measured latency and the sum of its table lookups."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    spec_hash: str
    measured_ms: float
    parts_ms: float
    parts: int = 0  # how many parts the network has


class Correction(BaseModel):
    """``whole = scale * sum(parts) + per_part_ms * parts + offset_ms``, fitted on the profile's whole networks.

    A part timed alone pays a per-call cost that it does not pay inside the network (it runs after the
    calibration's reference workload, with colder caches, and with its own timer call), so the fit has
    a term per part; least squares on relative errors, so small networks count as much as large ones.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float = 1.0
    per_part_ms: float = 0.0
    offset_ms: float = 0.0
    networks: int = 0
    worst_fit_pct: Optional[float] = None  # the largest |error| of the fitted networks themselves

    def apply(self, parts_ms: float, parts: int) -> float:
        """The corrected latency of a network whose ``parts`` table lookups sum to ``parts_ms``."""
        return self.scale * parts_ms + self.per_part_ms * parts + self.offset_ms


class DeviceProfile(BaseModel):
    """A device's latency table for one protocol: identity, protocol, calibration, entries, correction, fits."""

    model_config = ConfigDict(extra="forbid")

    format: str = PROFILE_FORMAT
    name: str
    identity: dict[str, Any]
    protocol: LatencySettings
    calibration: Optional[Calibration] = None
    sources: list[str] = Field(default_factory=list)
    entries: dict[str, Entry] = Field(default_factory=dict)
    networks: list[NetworkPoint] = Field(default_factory=list)
    correction: Correction = Field(default_factory=Correction)
    fits: dict[str, list[float]] = Field(default_factory=dict)
    parts_seen: int = 0
    seconds: float = 0.0
    complete: bool = False
    _families: Optional[dict[str, list[tuple[float, float]]]] = PrivateAttr(default=None)

    @property
    def unit(self) -> str:
        """What an entry's ms are: 'ms calibrated to convnet112-v1=3.100ms (profile NAME)' or 'wall ms'."""
        return measured_unit(self.calibration, f"profile {self.name}")

    def label(self) -> str:
        """'NAME: AMD EPYC (avx2), eager, 1 thread(s), batch 1, 224 px' (what a predicted latency is of)."""
        p = self.protocol
        where = self.identity.get("gpu") or self.identity.get("name", "?")
        return f"{self.name}: {where}, {p.runtime}, {p.threads} thread(s), batch {p.batch}, {p.resolution} px"

    def families(self) -> dict[str, list[tuple[float, float]]]:
        """Per family, its entries as (MMACs, ms), sorted (built once)."""
        if self._families is None:
            fam: dict[str, list[tuple[float, float]]] = {}
            for e in self.entries.values():
                fam.setdefault(e.family, []).append((e.mmacs, e.ms))
            self._families = {k: sorted(v) for k, v in fam.items()}
        return self._families


def load_profile(path: str | Path) -> DeviceProfile:
    """A profile from its JSON file; ValueError with one line when the file is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"profile: {path} does not exist (measure one with archspace device measure --out {path})") from None
    except IsADirectoryError:
        raise ValueError(f"profile: {path} is not a device profile (JSON from archspace device measure)") from None
    return parse_profile(data, path)


def parse_profile(data: bytes | str, path: str | Path = "profile") -> DeviceProfile:
    """A profile from its JSON bytes or text (``path`` names it in errors); ValueError with one line when it is not one."""
    try:
        data = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"profile: {path} is not a device profile (JSON from archspace device measure)") from None
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise ValueError(f"profile: {path} is not a device profile of format {PROFILE_FORMAT}")
    try:
        return DeviceProfile.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc)
        raise ValueError(f"profile: {path} is damaged ({first.strip()}); measure it again") from None


# ----------------------------------------------------------------------------- parts and their keys

def _dump(obj: Any) -> str:
    return json.dumps(obj.model_dump(mode="json") if obj is not None else {}, sort_keys=True, separators=(",", ":"))


def part_key(part: Any) -> tuple[str, str]:
    """(key, family) of a :class:`~archspace.measure.complexity.Part`: the family is the part's own spec, the key
    adds its widths and input map size."""
    family = f"{part.kind}:{_dump(part.spec)}"
    key = f"{family}@{part.in_width}>{part.width}@{part.in_hw[0]}x{part.in_hw[1]}"
    return key, family


def _features(part: Any) -> tuple[float, float]:
    """(MMACs in the 'full' convention, million elements in and out) of a part at batch 1."""
    elements = part.in_width * part.in_hw[0] * part.in_hw[1] + part.width * part.hw[0] * part.hw[1]
    return part.cost.full / 1e6, elements / 1e6


def spec_parts(spec: Any, resolution: int) -> list[Any]:
    """The parts of a spec (its modules with their map sizes) at ``resolution``."""
    from ..complexity import parts

    return parts(spec, resolution)


# ----------------------------------------------------------------------------- prediction

def _fit_value(coef: Sequence[float], mmacs: float, melements: float) -> float:
    return coef[0] + coef[1] * mmacs + coef[2] * melements


def _interpolate(points: list[tuple[float, float]], mmacs: float) -> float:
    """Piecewise-linear ms over MMACs between a family's entries; beyond them the nearest two's line, at least
    a tenth of the nearest entry's ms."""
    xs = [p[0] for p in points]
    i = bisect.bisect_left(xs, mmacs)
    lo, hi = (i - 1, i) if 0 < i < len(points) else ((0, 1) if i == 0 else (len(points) - 2, len(points) - 1))
    (x0, y0), (x1, y1) = points[lo], points[hi]
    y = y0 if x1 == x0 else y0 + (y1 - y0) * (mmacs - x0) / (x1 - x0)
    nearest = points[0][1] if i == 0 else points[-1][1] if i >= len(points) else y
    return max(y, 0.1 * nearest)


def predict_part(part: Any, profile: DeviceProfile) -> tuple[float, str]:
    """(ms, how) of one part: 'table' (an exact entry), 'interpolated' (same part, other sizes) or 'fit' (its kind's fit)."""
    key, family = part_key(part)
    entry = profile.entries.get(key)
    if entry is not None:
        return entry.ms, "table"
    mmacs, melements = _features(part)
    points = profile.families().get(family)
    coef = profile.fits.get(part.kind) or profile.fits.get("*")
    if points and len(points) >= 2:
        return _interpolate(points, mmacs), "interpolated"
    if points and coef is not None:  # one size measured: scale it by the kind's fit
        e = next(e for e in profile.entries.values() if e.family == family)
        ratio = _fit_value(coef, mmacs, melements) / max(_fit_value(coef, e.mmacs, e.melements), 1e-9)
        return e.ms * max(ratio, 0.05), "interpolated"
    if coef is None:
        raise ValueError(f"profile: {profile.name} has no entry and no fit for a {part.kind!r} part; measure it with "
                         f"archspace device measure --space ... covering this kind")
    return max(_fit_value(coef, mmacs, melements), 0.0), "fit"


def predict_parts(spec: Any, profile: DeviceProfile) -> list[dict[str, Any]]:
    """Per part of ``spec``: module name, kind, predicted ms (before the correction) and how it was found."""
    out = []
    for part in spec_parts(spec, profile.protocol.resolution):
        ms, how = predict_part(part, profile)
        out.append({"module": part.module, "kind": part.kind, "ms": ms, "how": how})
    return out


def predict_latency(spec: Any, profile: DeviceProfile | str | Path) -> float:
    """Predicted latency of ``spec`` (a NetSpec, preset name or spec file) on ``profile``'s device and protocol, in
    the profile's unit (:attr:`DeviceProfile.unit`): the sum of its parts' table entries, corrected."""
    from ...spec.io import load_spec

    profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    spec = load_spec(spec)
    parts = spec_parts(spec, profile.protocol.resolution)
    total = sum(predict_part(p, profile)[0] for p in parts)
    return max(profile.correction.apply(total, len(parts)), 0.0)


# ----------------------------------------------------------------------------- fitting

def _lstsq(rows: list[list[float]], ys: list[float]) -> list[float]:
    import numpy as np

    coef, *_ = np.linalg.lstsq(np.asarray(rows, dtype=float), np.asarray(ys, dtype=float), rcond=None)
    return [float(c) for c in coef]


def fit_kinds(entries: dict[str, Entry]) -> dict[str, list[float]]:
    """Per kind with at least 3 entries, and over all entries ('*'), ms = a + b * MMACs + c * M elements."""
    by_kind: dict[str, list[Entry]] = {}
    for e in entries.values():
        by_kind.setdefault(e.kind, []).append(e)
    out = {}
    for kind, es in [*by_kind.items(), ("*", list(entries.values()))]:
        if len(es) >= 3:
            out[kind] = _lstsq([[1.0, e.mmacs, e.melements] for e in es], [e.ms for e in es])
    return out


def fit_correction(points: Sequence[NetworkPoint]) -> Correction:
    """Scale and per-part cost from whole networks, on relative errors; the scale alone when fewer than 3 networks
    or too similar part counts cannot tell the two apart; no correction without any network."""
    if not points:
        return Correction()
    scale, per_part = sum(p.measured_ms for p in points) / max(sum(p.parts_ms for p in points), 1e-9), 0.0
    counts = [p.parts for p in points]
    if len(points) >= 3 and min(counts) > 0 and max(counts) >= 1.2 * min(counts):  # part counts vary: both terms fit
        both = _lstsq([[p.parts_ms / p.measured_ms, p.parts / p.measured_ms] for p in points], [1.0] * len(points))
        if 0.7 <= both[0] <= 1.4:  # else the networks do not tell the two terms apart: keep the scale alone
            scale, per_part = both
    c = Correction(scale=scale, per_part_ms=per_part, networks=len(points))
    worst = max(abs(c.apply(p.parts_ms, p.parts) - p.measured_ms) / p.measured_ms for p in points)
    return c.model_copy(update={"worst_fit_pct": 100 * worst})


# ----------------------------------------------------------------------------- measuring

class _Head:
    """The head as a module: NHWC features of the last stage -> forward_head of their NCHW view."""

    @staticmethod
    def of(net: Any) -> Any:
        from torch import nn

        class Head(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x):  # noqa: D401
                return self.net.forward_head(x.permute(0, 3, 1, 2))

        return Head()


def _modules_and_shapes(net: Any, spec: Any, resolution: int, wanted: set[str]) -> tuple[dict[str, Any], dict[str, tuple]]:
    """The built modules named in ``wanted`` and the input shape (no batch) each sees in one forward pass."""
    import torch

    modules: dict[str, Any] = {}
    shapes: dict[str, tuple] = {}
    hooks = []
    for name in wanted:
        module = _Head.of(net) if name == "head" else net.get_submodule(name)
        modules[name] = module
        if name != "head":
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, n=name: shapes.__setitem__(n, tuple(args[0].shape[1:]))))
    hooks.append(net.stages.register_forward_hook(lambda m, args, out: shapes.__setitem__("head", tuple(out.shape[1:]))))
    try:
        with torch.inference_mode():
            net(torch.zeros(1, spec.in_chans, resolution, resolution))
    finally:
        for h in hooks:
            h.remove()
    return modules, {k: shapes[k] for k in modules}


def _check_resumable(old: DeviceProfile, identity: dict, settings: LatencySettings, out: Path) -> None:
    if old.protocol != settings:
        diff = [k for k in LatencySettings.model_fields if getattr(old.protocol, k) != getattr(settings, k)]
        raise ValueError(f"--out: {out} was measured with other settings ({', '.join(diff)}); give the same settings "
                         f"to resume it, or another --out")
    for key in ("name", "cpu_flags", "gpu", "torch_version"):
        if old.identity.get(key) != identity.get(key):
            raise ValueError(f"--out: {out} was measured on another device or software ({key}: "
                             f"{old.identity.get(key)!r}, here {identity.get(key)!r}); use another --out")


def measure_profile(specs: Sequence[tuple[str, Any]], settings: LatencySettings, *, out: str | Path,
                    name: Optional[str] = None, networks: int = 30, minutes: float = 10.0,
                    sources: Sequence[str] = (), progress: Optional[Callable[[int, int, str], Any]] = None,
                    chunk: int = 48) -> DeviceProfile:
    """Time the parts of ``specs`` on this machine (each in context: built inside its network, timed at the input
    shape it sees there, with ``settings``' protocol) and ``networks`` of the specs whole, and write the profile.

    Parts shared by many specs go first; ``minutes`` bounds the measuring (what is left is predicted from the
    fits; at least one group is timed); the file is rewritten atomically after every group, and a run on an
    existing ``out`` with the same settings and device resumes it. ``progress(done, total, text)`` is called as parts are timed.
    """
    import torch

    from ...files import atomic_write_text
    from ...nn.build import build
    from ...spec.io import spec_hash
    from .calibration import load_or_calibrate
    from .process import apply_process_settings
    from .runtimes import device_identity
    from .timing import measure_latencies

    settings = settings.latency_settings()
    out = Path(out)
    say = progress or (lambda done, total, text: None)
    identity = device_identity(settings.device)
    started = time.monotonic()
    deadline = started + 60 * minutes
    old = load_profile(out) if out.exists() else None
    if old is not None:
        _check_resumable(old, identity, settings, out)
    apply_process_settings()
    calibration = load_or_calibrate(settings, old.calibration if old is not None else None)
    profile = DeviceProfile(name=name or (old.name if old else out.stem), identity=identity, protocol=settings,
                            calibration=calibration, sources=sorted({*(old.sources if old else ()), *sources}),
                            entries=dict(old.entries) if old else {}, networks=list(old.networks) if old else [],
                            seconds=old.seconds if old else 0.0)

    # every distinct part of the specs, how many specs use it, and the first spec that has it
    seen: dict[str, list] = {}
    for index, (_, spec) in enumerate(specs):
        for part in spec_parts(spec, settings.resolution):
            key, family = part_key(part)
            if key in seen:
                seen[key][0] += 1
            else:
                seen[key] = [1, index, part, family]
    profile.parts_seen = len(seen)
    whole = [i for i in range(min(networks, len(specs)))]
    done_hashes = {p.spec_hash for p in profile.networks}
    todo = [k for k in seen if k not in profile.entries]
    first_nets = {k for i in whole for k in (part_key(p)[0] for p in spec_parts(specs[i][1], settings.resolution))}
    todo.sort(key=lambda k: (k not in first_nets, -seen[k][0], seen[k][1]))
    total = len(todo)
    done = 0

    def save() -> None:
        profile.seconds = (old.seconds if old else 0.0) + time.monotonic() - started
        profile.entries = {**profile.entries}
        profile._families = None
        profile.fits = fit_kinds(profile.entries)
        points = []
        for p in profile.networks:
            if p.spec_hash in spec_by_hash:
                mine = spec_parts(spec_by_hash[p.spec_hash], settings.resolution)
                p = p.model_copy(update={"parts_ms": sum(predict_part(q, profile)[0] for q in mine), "parts": len(mine)})
            points.append(p)
        profile.networks = points
        profile.correction = fit_correction(points)
        atomic_write_text(out, profile.model_dump_json(indent=1) + "\n")

    spec_by_hash = {spec_hash(s): s for _, s in specs}
    say(0, total, f"{len(seen)} distinct parts in {len(specs)} networks, {total} to time")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        groups = 0
        while todo and (groups == 0 or time.monotonic() < deadline):  # one group at least: every run makes progress
            groups += 1
            # the spec of the highest-priority pending part, and every pending part it has
            index = seen[todo[0]][1]
            spec_name, spec = specs[index]
            mine = {part_key(p)[0]: p for p in spec_parts(spec, settings.resolution)}
            keys = [k for k in todo if k in mine][:chunk]
            net = build(spec).eval()
            modules, shapes = _modules_and_shapes(net, spec, settings.resolution, {mine[k].module for k in keys})
            by_module = {mine[k].module: k for k in keys}
            records = measure_latencies({m: modules[m] for m in by_module}, settings, calibration=calibration,
                                        input_shapes=shapes)
            for module, rec in records.items():
                key = by_module[module]
                count, _, part, family = seen[key]
                mmacs, melements = _features(part)
                profile.entries[key] = Entry(kind=part.kind, family=family, ms=rec.median_ms, p90_ms=rec.p90_ms,
                                             cv=rec.cv, mmacs=mmacs, melements=melements, seen=count)
            todo = [k for k in todo if k not in profile.entries]
            done = total - len(todo)
            save()
            say(done, total, f"{spec_name}: {len(keys)} parts")
        # whole networks for the correction, once their parts are in the table
        nets = {}
        for i in whole:
            spec_name, spec = specs[i]
            h = spec_hash(spec)
            if h not in done_hashes and h not in {v[0] for v in nets.values()} and time.monotonic() < deadline + 60:
                nets[f"{spec_name}#{i}"] = (h, build(spec).eval())
        if nets:
            say(done, total, f"timing {len(nets)} whole networks for the correction")
            records = measure_latencies({k: v[1] for k, v in nets.items()}, settings, calibration=calibration)
            for k, rec in records.items():
                profile.networks.append(NetworkPoint(name=k, spec_hash=nets[k][0], measured_ms=rec.median_ms, parts_ms=0.0))
    profile.complete = not todo
    save()
    return profile
