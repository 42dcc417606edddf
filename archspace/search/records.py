"""One record per trial: how both engines store an :class:`Outcome` and read it back as a table row.

The Optuna engine keeps a trial's record in its user attributes, the Ray engine in the trial's last
report (``record_json``); both encode it with :func:`encode` and turn it into a ``trials.csv`` row
with :func:`row`. A trial whose worker (or driver) died is bookkept by :func:`crashed` in both.
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional

from ..spec.io import spec_to_dict
from ..vocab import VALUE_COLUMNS
from .latency import REPORT_PREFIX

FIELDS = ("verdict", "reason", "spec_hash", "values", "cost", "seconds", "seed", "spec", "arch", "latency", "accuracy")


def encode(out: Any) -> dict[str, Any]:
    """The outcome as a JSON-able record (the spec becomes a dict here, and only here); None fields left out."""
    record: dict[str, Any] = {"verdict": out.verdict, "reason": out.reason, "spec_hash": out.spec_hash,
                              "values": out.values, "cost": out.cost, "seconds": out.seconds, "seed": out.seed}
    if out.spec is not None:
        record["spec"] = spec_to_dict(out.spec)
        record["arch"] = out.spec.label()
    if out.latency is not None:
        record["latency"] = out.latency
    if out.accuracy is not None:
        record["accuracy"] = {k: v for k, v in out.accuracy.items() if k != "budget"}
    return {k: v for k, v in record.items() if v is not None}


def row(number: int, state: str, params: Any, record: dict[str, Any], **context: Any) -> dict[str, Any]:
    """A trials.csv row from a record: the verdict, reason, hash, time and values, with the engine's ``context``
    (worker, reference, cached_from, retry_of)."""
    seconds = record.get("seconds")
    out = {"number": number, "state": state, "verdict": record.get("verdict"), "reason": record.get("reason"),
           "spec_hash": record.get("spec_hash"), "arch": record.get("arch"),
           "seconds": round(float(seconds), 3) if isinstance(seconds, (int, float)) else None,
           "params": params if isinstance(params, str) else json.dumps(params, sort_keys=True)}
    for key in ("worker", "reference", "cached_from", "retry_of"):
        out[key] = context.get(key)
    values = record.get("values") or {}
    out.update({k: v for k, v in values.items() if (k in VALUE_COLUMNS or k.startswith(REPORT_PREFIX))
                and isinstance(v, (int, float)) and math.isfinite(v)})
    unit = (record.get("latency") or {}).get("unit")
    if unit and "latency_ms" in out:
        out["latency_unit"] = unit
    return out


def crashed(crashes: int, max_retries: int, retry: Optional[str] = None,
            cause: str = "worker died mid-trial") -> tuple[str, str]:
    """(verdict, reason) of a trial whose process died (``cause``): ``failed`` once it has crashed more than
    ``max_retries`` times along its chain, else ``killed``, the reason saying what became of it (``retry``, e.g.
    'retried as trial 7')."""
    if crashes > max_retries:
        return "failed", f"{cause}; crashed {crashes} time{'s' if crashes > 1 else ''}"
    return "killed", f"{cause}; {retry}" if retry else cause
