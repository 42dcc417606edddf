"""Validate any archspace file by its kind (a spec, a search space, an ablation) and summarise it.

The kind comes from the content: an ablation has ``rows``, a space ``params`` or ``objectives``, a
spec ``stages`` (a name that is not a file is a preset). Every problem is one SpecError line naming
the file and the field. A spec's params come from :func:`archspace.measure.complexity.complexity`
(no model is built).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from ..measure.complexity import complexity
from ..spec.errors import SpecError
from ..spec.io import load_spec, read_yaml
from ..spec.net import NetSpec

Kind = Literal["spec", "space", "ablation"]
KINDS: dict[str, str] = {"ablation": "rows", "space": "params and objectives", "spec": "stages"}


def file_kind(path: Union[str, Path]) -> Kind:
    """'ablation', 'space' or 'spec', from the file's top-level keys (a name that is no file: a preset, a spec)."""
    p = Path(path)
    if not p.is_file():
        return "spec"
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise SpecError(f"{p}: expected a mapping (a spec has {KINDS['spec']}, a space {KINDS['space']}, "
                        f"an ablation {KINDS['ablation']})")
    if "rows" in data:
        return "ablation"
    if "params" in data or "objectives" in data:
        return "space"
    if "stages" in data:
        return "spec"
    raise SpecError(f"{p}: not an archspace file: a spec has {KINDS['spec']}, a space {KINDS['space']}, "
                    f"an ablation {KINDS['ablation']} (none of them is here)")


def spec_summary(spec: NetSpec) -> dict[str, Any]:
    """Name, params (analytic, 1 model's worth), depth, stride, stem kind and per-stage width/depth/counts/pattern/kinds."""
    return {
        "name": spec.name,
        "params": complexity(spec)["params"],
        "depth": spec.depth,
        "stride": spec.stride,
        "stem": spec.stem.kind,
        "stages": [{"width": s.width, "depth": s.depth, "counts": s.counts(), "pattern": s.pattern,
                    "kinds": [b.kind for b in s.blocks]} for s in spec.stages],
    }


def validate_file(path: Union[str, Path]) -> dict[str, Any]:
    """Load and check a spec, space or ablation file (or a preset name): a summary dict with ``file``, ``ok``
    and ``kind``, or a one-line SpecError."""
    kind = file_kind(path)
    head = {"file": str(path), "ok": True, "kind": kind}
    if kind == "space":
        from .space import grid_size, load_space

        space = load_space(path)
        gridded = all(p.choices is not None or p.is_int for p in space.params)
        return {**head, "name": space.name, "params": [p.name for p in space.params],
                "objectives": [o.key for o in space.objectives], "constraints": space.constraints.names,
                "references": list(space.references), "grid_size": grid_size(space) if gridded else None,
                "trials": space.budget.trials, "evaluator": space.evaluator.kind}
    if kind == "ablation":
        from .ablation import load_ablation

        ab = load_ablation(path)
        return {**head, "name": ab.name, "title": ab.title, "rows": [r.label for r in ab.rows], "seeds": ab.seeds,
                "trials": len(ab.rows) * ab.seeds, "evaluator": ab.evaluator.kind,
                "reproduces_paper": [r.label for r in ab.rows if r.reproduces_paper]}
    return {**head, **spec_summary(load_spec(path))}


def describe(summary: dict[str, Any]) -> str:
    """One line for the terminal: 'ok: FILE: space NAME, 3 parameters (...), objectives ...' and so on per kind."""
    d = summary
    if d["kind"] == "space":
        grid = f", grid of {d['grid_size']:,}" if d.get("grid_size") else ""
        return (f"ok: {d['file']}: space {d['name']}, {len(d['params'])} parameters ({', '.join(d['params'])}), "
                f"objectives {', '.join(d['objectives'])}{grid}")
    if d["kind"] == "ablation":
        return (f"ok: {d['file']}: ablation {d['name']}, {len(d['rows'])} rows x {d['seeds']} seeds = {d['trials']} trials "
                f"({d['evaluator']}), {len(d['reproduces_paper'])} rows reproduce the paper's params and FLOPs")
    return f"ok: {d['file']}: {d['params']:,} params, stages " + " | ".join(s["pattern"] for s in d["stages"])
