"""Results as a table: one row per trial, one column per searched parameter, numeric objectives, protocol columns.

``trials.csv`` is written from :func:`table` and read back typed by :func:`read_table`;
:func:`archspace.jobs.results` (``archspace.results``) returns the same table as a pandas DataFrame.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional, Union

from ..vocab import VALUE_COLUMNS
from .latency import REPORT_PREFIX
from .space import Space

HEAD = ["number", "state", "verdict", "reason", "arch", "spec_hash", *VALUE_COLUMNS]
TAIL = ["reference", "cached_from", "retry_of", "seconds", "worker"]
PROTOCOL = ["evaluator", "dataset", "train_device", "train_epochs", "train_images", "test_images", "train_resolution",
            "train_stem_stride", "train_width_mult", "gmacs_convention", "latency_source", "latency_unit",
            "latency_device", "latency_batch", "latency_resolution", "latency_threads"]
STRINGS = {"state", "verdict", "reason", "arch", "spec_hash", "reference", "worker", "evaluator", "dataset",
           "train_device", "gmacs_convention", "latency_source", "latency_unit", "latency_device", "standing",
           "protocol_key"}
INTS = {"number", "cached_from", "retry_of", "train_epochs", "train_images", "test_images", "train_resolution",
        "train_stem_stride", "latency_batch", "latency_resolution", "latency_threads"}
PARAM = "param_"


def protocol(space: Space) -> dict[str, Any]:
    """The measuring protocol of a space's trials, as table columns (the training budget resolved for its device)."""
    ev, m = space.evaluator, space.measure
    out: dict[str, Any] = {k: None for k in PROTOCOL}
    out.update(evaluator=ev.kind, gmacs_convention=next((o.convention for o in space.objectives if o.metric == "flops"),
                                                        "smt-paper"))
    if ev.kind != "params" and ev.kind != "flops":
        out["dataset"] = ev.dataset
    if ev.kind == "train":
        b = ev.budget
        out.update(train_device=ev.device, train_epochs=b.epochs, train_images=b.train_subset, test_images=b.test_subset,
                   train_resolution=b.resolution, train_stem_stride=b.stem_stride, train_width_mult=b.width_mult)
    if m.latency == "predicted":
        from .latency import load, unit

        p = load(m.profile)[0].protocol
        out.update(latency_source="predicted", latency_unit=unit(space), latency_device=p.device, latency_batch=p.batch,
                   latency_resolution=p.resolution, latency_threads=p.threads)
    elif m.latency:
        from .latency import calibration_reference, unit

        calibrated = m.calibrate and str(m.device).startswith("cpu")  # the run's own reference: each row says its value
        out.update(latency_source="measured", latency_unit=unit(space, calibration_reference(space)) if not calibrated
                   or m.profile else "ms calibrated to this run's reference",
                   latency_device=m.device, latency_batch=m.batch, latency_resolution=m.resolution,
                   latency_threads=m.threads)
    return out


def accuracy_label(p: dict[str, Any]) -> str:
    """'fashion-mnist, 1 ep x 2,400 img, 32 px, stem s2, w0.5' (or 'synflow score') from :func:`protocol` columns."""
    if p["evaluator"] != "train":
        return f"{p['evaluator']} score" + (f" on {p['dataset']}" if p["dataset"] else "")
    images = "all" if p["train_images"] is None else f"{p['train_images']:,}"
    parts = [str(p["dataset"]), f"{p['train_epochs']} ep x {images} img", f"{p['train_resolution']} px"]
    if p["train_stem_stride"]:
        parts.append(f"stem s{p['train_stem_stride']}")
    if p["train_width_mult"]:
        parts.append(f"w{p['train_width_mult']}")
    return ", ".join(parts)


def latency_label(p: dict[str, Any]) -> Optional[str]:
    """'cpu, batch 1, 224 px, 1 thread(s), wall ms' (or 'predicted ms on NAME: ...') from :func:`protocol` columns;
    None when latency is not measured."""
    if not p["latency_device"]:
        return None
    if p.get("latency_source") == "predicted":
        return p["latency_unit"]
    return f"{_where(p)}, {p['latency_unit']}" if p.get("latency_unit") else _where(p)


def _where(p: dict[str, Any]) -> str:
    return f"{p['latency_device']}, batch {p['latency_batch']}, {p['latency_resolution']} px, {p['latency_threads']} thread(s)"


def latency_axis(p: dict[str, Any]) -> Optional[str]:
    """The latency axis of a plot or table: 'predicted latency (ms) on NAME: AMD EPYC (avx512), eager, ...' or
    'latency (wall ms): cpu, batch 1, 224 px, 1 thread(s)'; None when latency is not measured."""
    if not p["latency_device"]:
        return None
    if p.get("latency_source") == "predicted":
        return "predicted latency (ms) on " + str(p["latency_unit"]).removeprefix("predicted ms on ")
    return f"latency ({p.get('latency_unit') or 'ms'}): {_where(p)}"


def with_units(p: dict[str, Any], rows: Optional[list[dict]]) -> dict[str, Any]:
    """``p`` with the latency unit the rows recorded (a run's own calibration is known only from its trials)."""
    units = {r.get("latency_unit") for r in rows or () if r.get("latency_unit")}
    return {**p, "latency_unit": units.pop()} if len(units) == 1 else p


def protocol_words(space: Space) -> str:
    """The protocol in words: 'accuracy: fashion-mnist, 1 ep x 2,400 img, ...; MACs: smt-paper; latency: cpu, ...'."""
    p = protocol(space)
    return f"accuracy: {accuracy_label(p)}; MACs: {p['gmacs_convention']}; latency: {latency_label(p) or 'not measured'}"


def columns(space: Space) -> list[str]:
    """The table's columns for a space (a reported device profile's predicted latency after the values)."""
    from .latency import report_columns

    return [*HEAD, *report_columns(space), *(PARAM + p.name for p in space.params), *TAIL, *PROTOCOL]


def table(space: Space, rows: list[dict], specs: Optional[dict[str, dict]] = None) -> list[dict[str, Any]]:
    """Engine rows (``params`` as JSON) -> table rows: one column per parameter, the architecture label, the protocol."""
    from ..spec.io import spec_from_dict
    from .space import spec_for

    proto = protocol(space)
    labels: dict[str, str] = {}
    out = []
    for r in rows:
        row = {k: r.get(k) for k in (*HEAD, *TAIL)}
        row.update({k: v for k, v in r.items() if k.startswith(REPORT_PREFIX)})
        values = r.get("params") or {}
        values = json.loads(values) if isinstance(values, str) else values
        for p in space.params:
            v = values.get(p.name)
            row[PARAM + p.name] = ",".join(str(x) for x in v) if isinstance(v, list) else v
        h = r.get("spec_hash")
        if not row.get("arch") and h:
            if h not in labels:
                try:  # the stored spec, else the spec the sampled values give
                    spec = spec_from_dict(specs[h]) if specs and h in specs else spec_for(space, values)
                    labels[h] = spec.label()
                except Exception:  # noqa: BLE001 - a spec stored by another version: no label
                    labels[h] = None
            row["arch"] = labels[h]
        row.update(proto)
        if r.get("latency_unit"):  # the unit its latency was recorded in (a run's own calibration says its value)
            row["latency_unit"] = r["latency_unit"]
        out.append(row)
    return out


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(round(v, 6))
    return "" if v is None else v


def to_csv(rows: list[dict], cols: list[str]) -> str:
    """CSV text: floats rounded to 6 decimals, None empty."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in cols})
    return buf.getvalue()


def parse(column: str, text: str) -> Any:
    """One CSV cell, typed by its column: strings stay strings (a hash of digits keeps its zeros), numbers parse."""
    if text == "":
        return None
    if column in STRINGS:
        return text
    if column in INTS:
        try:
            return int(text)
        except ValueError:
            return text
    for t in (int, float):
        try:
            v = t(text)
        except ValueError:
            continue
        if t is float and not math.isfinite(v) and text.lower().lstrip("+-") not in ("inf", "infinity", "nan"):
            return text  # '123e45678901' is a word here, not infinity
        return v
    return text


def read_table(path: Union[str, Path]) -> list[dict[str, Any]]:
    """Rows of a CSV written by archspace, each cell typed by its column."""
    with open(path, newline="") as fh:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]
