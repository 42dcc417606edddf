"""Stacking as a value: pure functions from per-kind counts and a strategy to a block sequence."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

STRATEGIES = ("alternate", "sequential", "half", "pattern")


def alternate(counts: Mapping[str, int]) -> list[str]:
    """Round-robin over the kinds in the given order (SMT's stage 3: SAM at even, MSA at odd index)."""
    left = dict(counts)
    out: list[str] = []
    while any(left.values()):
        for kind in counts:
            if left[kind]:
                out.append(kind)
                left[kind] -= 1
    return out


def sequential(counts: Mapping[str, int]) -> list[str]:
    """All blocks of the first kind, then the next (EfficientMod: conv blocks, then attention)."""
    return [kind for kind, n in counts.items() for _ in range(n)]


def half(kinds: Sequence[str], depth: int) -> list[str]:
    """The first ceil(depth/2) blocks of the first kind, the rest of the second."""
    first = (depth + 1) // 2
    return [kinds[0]] * first + [kinds[1]] * (depth - first)


def counts_for(strategy: str, kinds: Sequence[str], depth: int) -> dict[str, int]:
    """Per-kind counts that ``alternate`` or ``half`` give for two kinds over ``depth`` blocks."""
    first = (depth + 1) // 2
    return {kinds[0]: first, kinds[1]: depth - first}


MAX_DEPTH = 1024  # blocks in one stage


def expand(
    strategy: str,
    counts: Optional[Mapping[str, int]] = None,
    kinds: Optional[Sequence[str]] = None,
    depth: Optional[int] = None,
    pattern: Optional[Iterable[str]] = None,
) -> list[str]:
    """Expand a stacking value into the ordered block kinds; raises ValueError naming the field."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown stacking {strategy!r} (use one of {list(STRATEGIES)})")
    if strategy == "pattern":
        if not pattern:
            raise ValueError("pattern: an explicit pattern needs a non-empty list of block kinds")
        pattern = list(pattern)
        if len(pattern) > MAX_DEPTH:
            raise ValueError(f"pattern: {len(pattern)} blocks in one stage; at most {MAX_DEPTH}")
        return pattern
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or not 0 < depth <= MAX_DEPTH):
        raise ValueError(f"depth: {depth!r} must be a whole number of blocks from 1 to {MAX_DEPTH}")
    if counts is not None:
        for kind, n in counts.items():
            if not isinstance(n, int) or isinstance(n, bool):
                raise ValueError(f"counts.{kind}: {n!r} must be a whole number of blocks")
        if sum(counts.values()) > MAX_DEPTH:
            raise ValueError(f"counts: {sum(counts.values())} blocks in one stage; at most {MAX_DEPTH}")
    if counts is None:
        if not kinds or depth is None:
            raise ValueError(f"counts: stacking {strategy!r} needs counts, or kinds and depth")
        if strategy == "sequential" or len(kinds) != 2:
            raise ValueError(f"counts: stacking {strategy!r} with kinds/depth needs exactly two kinds and alternate or half (else give counts)")
        counts = counts_for(strategy, kinds, depth)
    if any(n < 0 for n in counts.values()) or sum(counts.values()) == 0:
        raise ValueError("counts: block counts must be >= 0 and not all zero")
    if strategy == "alternate":
        return alternate(counts)
    if strategy == "sequential":
        return sequential(counts)
    kinds = [k for k in counts]
    total = sum(counts.values())
    if len(kinds) == 1:
        return sequential(counts)
    if len(kinds) != 2 or dict(counts) != counts_for("half", kinds, total):
        want = counts_for("half", kinds[:2], total) if len(kinds) >= 2 else {}
        raise ValueError(f"counts: half needs two kinds split {want} for depth {total} (or use strategy: sequential)")
    return half(kinds, total)


def pattern_string(kinds: Iterable[str]) -> str:
    """Compact one-letter rendering of a block sequence, e.g. 'SMSMSMSM' (each kind's registered letter)."""
    from ..blocks import REGISTRY

    return "".join(REGISTRY[k].letter for k in kinds)
