"""The run directory's tables: trials, Pareto set (CSV + buildable specs) and summary, written from a study."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from ..files import atomic_write_text
from .front import pareto_front
from .results import columns, table, to_csv
from .space import Space

def write_results(run_dir: Path, space: Space, rows: list[dict], specs: dict[str, dict]) -> dict[str, Any]:
    """Write pareto/<trial>_<hash>.yaml, summary.json, then pareto.csv and trials.csv (each atomic, the CSVs last)."""
    import yaml

    from .rundir import HEX, safe_child

    run_dir = Path(run_dir)
    keys = [o.key for o in space.objectives]
    complete = [r for r in rows if r.get("verdict") == "complete"]
    front = pareto_front(complete, keys, space.directions)
    pdir = run_dir / "pareto"
    pdir.mkdir(parents=True, exist_ok=True)
    keep = set()
    for r in front:
        spec = specs.get(r["spec_hash"])
        if spec is None or not HEX.match(str(r["spec_hash"])):  # a hash from a shared storage never becomes a path part
            continue
        path = safe_child(pdir, f"trial{int(r['number']):04d}_{r['spec_hash']}.yaml")
        keep.add(path.name)
        spec = {**spec, "name": f"{space.name}_trial{int(r['number'])}"}
        header = "# " + ", ".join(f"{k}={r[k]:.4g}" for k in keys if r.get(k) is not None) + "\n"
        atomic_write_text(path, header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100))
    for old in pdir.glob("*.yaml"):
        if old.name not in keep:
            old.unlink()
    reasons: dict[str, int] = {}
    for r in rows:
        if r.get("verdict") not in ("complete", "running"):
            reason = str(r.get("reason") or r.get("verdict"))[:120]
            reasons[reason] = reasons.get(reason, 0) + 1
    summary = {"space": space.name, "trials": sum(r.get("verdict") not in ("running", "killed") for r in rows), "complete": len(complete),
               "front": len(front), "objectives": [o.model_dump(mode="json") for o in space.objectives], "reasons": reasons}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    cols = columns(space)
    atomic_write_text(run_dir / "pareto.csv", to_csv(table(space, front, specs), cols))
    atomic_write_text(run_dir / "trials.csv", to_csv(table(space, rows, specs), cols))
    return summary
