"""Records side by side: the shared protocol, the fields that differ, one row per record."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from .records import LatencyRecord


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
