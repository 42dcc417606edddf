"""Populations: a planned random sample of a space, balanced over the design choices under study.

A search with ``sampler: {kind: random, by: [heads, s3_stacking]}`` samples a *population* in the sense
of Radosavovic et al. (NDS): every member is a uniform draw of the space, except that the values of the
``by`` parameters are balanced, so each value of each of them gets the same share of the members (within
one). The plan is drawn here from the space's seed, before any trial runs, in blocks of
``lcm(len(values))`` members: each block holds every value of every ``by`` parameter equally often, so
every prefix of whole blocks is balanced and a larger budget extends the plan without changing its
start (a resume with ``--trials`` twice as large adds members, it never redraws them). A member whose
values give no valid network, or one over a hard constraint, has its free values redrawn (its ``by``
values kept), so a population is of networks the search would train. The plan is enqueued into the
study (``enqueued: population:<i>``), so it is resumable, shared by workers and cached like any search,
and two runs of one space and seed with other evaluators (a training proxy and a zero-cost one) sample
the same architectures.
"""
from __future__ import annotations

import math
import random
from typing import Any, Optional

from ..spec.errors import SpecError
from .space import Param, Space, _RandomTrial, base_spec, editable, spec_for, suggest

KEY = "population:"
REDRAWS = 50  # free-value redraws of one member before it is kept as drawn (and fails as its trial)


def by_params(space: Space) -> list[Param]:
    """The parameters a population is balanced over, in the order ``sampler.by`` names them."""
    named = {p.name: p for p in space.params}
    return [named[n] for n in space.sampler.by]


def values_of(p: Param) -> list[Any]:
    """Every value a balanced parameter takes (as Optuna stores it)."""
    if p.choices is not None:
        return p.encoded_choices()
    return list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))


def block_size(space: Space) -> int:
    """Members per balanced block: the least common multiple of the ``by`` parameters' numbers of values."""
    return math.lcm(*(len(values_of(p)) for p in by_params(space))) if space.sampler.by else 1


def trials_for(space: Space, per_value: int) -> int:
    """The budget that gives every value of every ``by`` parameter at least ``per_value`` members (whole blocks)."""
    most = max(len(values_of(p)) for p in by_params(space))
    size = block_size(space)
    return math.ceil(per_value * most / size) * size


def _feasible(space: Space, values: dict[str, Any], base: Optional[dict]) -> bool:
    try:
        spec = spec_for(space, values, base)
    except (SpecError, ValueError):
        return False
    c = space.constraints
    if c.max_params is None and c.max_flops is None:
        return True
    from ..measure.complexity import complexity

    cost = complexity(spec, space.measure.resolution, num_classes=space.num_classes)
    return not c.first_violation(cost)


def plan(space: Space, n: Optional[int] = None) -> list[dict[str, Any]]:
    """The first ``n`` members (default: the budget) of the space's population plan, as parameter values."""
    n = space.budget.trials if n is None else n
    rng = random.Random(f"population:{space.name}:{space.seed}")
    balanced = by_params(space)
    size = block_size(space)
    base = None if any("@variant" in p.paths for p in space.params) else editable(base_spec(space))
    members: list[dict[str, Any]] = []
    while len(members) < n:
        block = []
        for p in balanced:
            values = values_of(p)
            column = values * (size // len(values))
            rng.shuffle(column)
            block.append(column)
        for i in range(size):
            fixed = {p.name: column[i] for p, column in zip(balanced, block)}
            for _ in range(REDRAWS):
                values = {**suggest(_RandomTrial(rng), space), **fixed}
                if _feasible(space, values, base):
                    break
            members.append(values)
    return members[:n]


def points(space: Space) -> list[tuple[dict, dict]]:
    """The plan as enqueued points (params, user attrs)."""
    return [(values, {"enqueued": f"{KEY}{i}"}) for i, values in enumerate(plan(space))]


def counts(space: Space, members: Optional[list[dict[str, Any]]] = None) -> dict[str, dict[str, int]]:
    """Members per value of each ``by`` parameter in the plan (or in ``members``)."""
    members = plan(space) if members is None else members
    return {p.name: {str(v): sum(m.get(p.name) == v for m in members) for v in values_of(p)} for p in by_params(space)}


def describe(space: Space) -> str:
    """'population of 128: 32 per value of heads, 64 per value of s3_stacking (balanced blocks of 4; ...)'."""
    parts = []
    for name, per in counts(space).items():
        lo, hi = min(per.values()), max(per.values())
        parts.append(f"{lo if lo == hi else f'{lo}-{hi}'} per value of {name}")
    return (f"population of {space.budget.trials}: {', '.join(parts)} (balanced blocks of {block_size(space)}; "
            "the other values uniform)")
