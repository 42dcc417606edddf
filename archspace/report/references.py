"""Reference networks (presets or spec files) measured under a run's own protocol, drawn beside its trials.

A space's ``references`` (or ``archspace report RUN --references A,B``) are trained and timed exactly
as a trial of the run: the same evaluator, seed, latency settings and calibration. They are kept in
``RUN_DIR/references.csv`` with the protocol they were measured under, so a later report reuses them
and a changed protocol measures them again. Each gets its *standing* against the searched trials:
the same architecture as a trial, dominated by a trial, dominating trials (ahead of the searched front), or
on the front beside them (where the search did not sample). References are never trials: they do not count
toward the budget or enter the front.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..files import atomic_write_text
from ..search.results import read_table, to_csv
from ..search.space import Space
from ..search.front import dominates, pareto_front
from ..vocab import VALUE_COLUMNS

FILE = "references.csv"
COLUMNS = ["reference", "verdict", "reason", "arch", "spec_hash", *VALUE_COLUMNS, "standing", "seconds", "protocol_key"]


def protocol_key(space: Space) -> str:
    """What a reference's numbers depend on (evaluator, measurement protocol, classes, seed), hashed."""
    from ..search.trial import evaluator_key

    return hashlib.sha256(f"{evaluator_key(space)}|seed={space.seed}".encode()).hexdigest()[:12]


def read_references(run_dir: Path, space: Space) -> list[dict]:
    """The references of a run measured under its current protocol (rows of references.csv)."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return []
    key = protocol_key(space)
    return [r for r in read_table(path) if r.get("protocol_key") == key]


def measure_reference(space: Space, name: str, calibration: Any = None) -> dict:
    """One reference measured as a trial of the space (trained even when over the space's limits)."""
    from ..search.trial import run_trial, screen_spec
    from ..spec.io import load_spec, spec_from_dict, spec_to_dict

    spec = load_spec(name)
    spec = spec_from_dict({**spec_to_dict(spec), "num_classes": space.num_classes}, name)
    over = space.model_copy(update={"constraints": space.constraints.model_copy(update={"infeasible": "train"})})
    out = run_trial(over, screen_spec(over, spec, space.seed), None, calibration)
    row: dict[str, Any] = {"reference": Path(name).stem if name.endswith((".yaml", ".yml")) else name,
                           "verdict": out.verdict, "reason": out.reason, "arch": spec.label(), "spec_hash": out.spec_hash,
                           "seconds": round(out.seconds, 3), "protocol_key": protocol_key(space)}
    row.update({k: v for k, v in out.values.items() if k in VALUE_COLUMNS})
    return row


def measure_references(run_dir: Path, space: Space, names: Sequence[str], calibration: Any = None,
                       say: Optional[Callable[[str], Any]] = None) -> list[dict]:
    """Measure the references not yet measured under this protocol; references.csv is rewritten after each one,
    so an interrupted report keeps what it finished. Returns every reference of the run's protocol."""
    run_dir = Path(run_dir)
    rows = {r["reference"]: r for r in read_references(run_dir, space)}
    for i, name in enumerate(names):
        label = Path(name).stem if name.endswith((".yaml", ".yml")) else name
        if label in rows:
            continue
        if say is not None:
            say(f"reference {i + 1}/{len(names)}: {label}: training and timing it under the run's protocol")
        rows[label] = measure_reference(space, name, calibration)
        write_references(run_dir, list(rows.values()))
    return list(rows.values())


def write_references(run_dir: Path, rows: Sequence[dict]) -> None:
    atomic_write_text(Path(run_dir) / FILE, to_csv(list(rows), COLUMNS))


def standing(ref: dict, trials: Sequence[dict], space: Space) -> str:
    """Where a reference stands against the run's complete trials, over the space's objectives, in words."""
    keys = [o.key for o in space.objectives]
    if ref.get("verdict") not in ("complete", "infeasible") or any(ref.get(k) is None for k in keys):
        return f"not measured: {ref.get('reason') or ref.get('verdict')}"
    over = f"; over the space's limits ({ref['reason']})" if ref.get("verdict") == "infeasible" else ""
    done = [t for t in trials if t.get("verdict") == "complete" and all(t.get(k) is not None for k in keys)]
    same = next((t for t in done if t.get("spec_hash") == ref.get("spec_hash")), None)
    if same is not None:
        return f"the same architecture as trial {int(same['number'])}{over}"
    signs = [1 if d == "maximize" else -1 for d in space.directions]
    v = [float(ref[k]) for k in keys]
    margin = lambda a, b: sum(s * (float(a[k]) - float(b[k])) / max(abs(float(b[k])), 1e-12) for k, s in zip(keys, signs))
    beaters = [t for t in done if dominates([float(t[k]) for k in keys], v, signs)]
    if beaters:
        best = max(beaters, key=lambda t: margin(t, ref))
        diffs = ", ".join(_diff(k, float(best[k]), float(ref[k]), space) for k in keys)
        return f"dominated by trial {int(best['number'])} ({diffs}){over}"
    beaten = [t for t in done if dominates(v, [float(t[k]) for k in keys], signs)]
    if beaten:
        front = {int(t["number"]) for t in pareto_front(done, keys, space.directions)}
        on_front = [t for t in beaten if int(t["number"]) in front]
        worst = max(on_front or beaten, key=lambda t: margin(ref, t))
        diffs = ", ".join(_diff(k, float(ref[k]), float(worst[k]), space) for k in keys)
        others = len(beaten) - 1
        what = "front trial" if on_front else "trial"
        more = f" and {others} other trial{'s' if others > 1 else ''}" if others else ""
        return f"dominates {what} {int(worst['number'])} ({diffs}){more}{over}"
    return "on the front: it neither dominates nor is dominated by a searched trial (the search did not sample where it lies)" + over


def _diff(key: str, a: float, b: float, space: Space) -> str:
    """How ``a`` differs from ``b``: top-1 in points when trained, anything else (a zero-cost score, a cost) in %."""
    if key == "accuracy" and space.evaluator.kind == "train":
        return f"accuracy {a - b:+.1f} points"
    name = f"{space.evaluator.kind} score" if key == "accuracy" else key
    return f"{name} {100.0 * (a / b - 1.0):+.0f}%" if b else f"{name} {a:.3g} vs {b:.3g}"


def with_standing(rows: Sequence[dict], trials: Sequence[dict], space: Space) -> list[dict]:
    return [{**r, "standing": standing(r, trials, space)} for r in rows]
