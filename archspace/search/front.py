"""Pareto maths over table rows: dominance, the non-dominated set, exact hypervolume and its curve over trials."""
from __future__ import annotations

from typing import Optional, Sequence


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[int]) -> bool:
    """a Pareto-dominates b (signs: +1 maximise, -1 minimise)."""
    better = False
    for x, y, s in zip(a, b, signs):
        if s * x < s * y:
            return False
        if s * x > s * y:
            better = True
    return better


def pareto_front(rows: Sequence[dict], keys: Sequence[str], directions: Sequence[str]) -> list[dict]:
    """The non-dominated rows over ``keys`` (rows missing a key are ignored), sorted by the first key."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    pts = [r for r in rows if all(r.get(k) is not None for k in keys)]
    front = []
    for r in pts:
        v = [float(r[k]) for k in keys]
        if not any(dominates([float(o[k]) for k in keys], v, signs) for o in pts if o is not r):
            if not any([float(f[k]) for k in keys] == v for f in front):
                front.append(r)
    return sorted(front, key=lambda r: float(r[keys[0]]))


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Hypervolume dominated by minimisation ``points`` up to ``reference`` (exact, slicing; fine for small fronts)."""
    pts = [list(p) for p in points if all(x < r for x, r in zip(p, reference))]
    if not pts:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in pts)
    pts.sort(key=lambda p: p[0])
    volume = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][0] if i + 1 < len(pts) else reference[0]
        if upper > p[0]:
            volume += (upper - p[0]) * hypervolume([q[1:] for q in pts[: i + 1]], reference[1:])
    return volume


def hypervolume_curve(rows: Sequence[dict], keys: Sequence[str], directions: Sequence[str],
                      reference: Optional[dict] = None) -> list[tuple[int, float]]:
    """Hypervolume of the front after each finished trial.

    With a ``reference`` row (the base network), each objective is taken as its ratio to the reference's
    value (oriented so smaller is better) and the reference point is 1.1 x the reference in every
    objective: runs of one base compare on one scale. Without it, objectives are normalised to [0, 1]
    over the run itself (comparable within the run only).
    """
    done = [r for r in rows if all(r.get(k) is not None for k in keys)]
    if not done:
        return []
    if reference is not None and all(reference.get(k) not in (None, 0) for k in keys):
        def ratio(r: dict) -> list[float]:
            return [float(r[k]) / float(reference[k]) if d == "minimize" else float(reference[k]) / max(float(r[k]), 1e-12)
                    for k, d in zip(keys, directions)]

        curve, seen = [], []
        for r in sorted(done, key=lambda r: int(r["number"])):
            seen.append(ratio(r))
            curve.append((int(r["number"]), hypervolume(seen, [1.1] * len(keys))))
        return curve
    lo = [min(float(r[k]) for r in done) for k in keys]
    hi = [max(float(r[k]) for r in done) for k in keys]

    def norm(r: dict) -> list[float]:
        out = []
        for k, d, a, b in zip(keys, directions, lo, hi):
            x = (float(r[k]) - a) / (b - a) if b > a else 0.0
            out.append(1.0 - x if d == "maximize" else x)  # minimisation in [0, 1]
        return out

    ref = [1.1] * len(keys)
    curve, seen = [], []
    for r in sorted(done, key=lambda r: int(r["number"])):
        seen.append(norm(r))
        curve.append((int(r["number"]), hypervolume(seen, ref)))
    return curve
