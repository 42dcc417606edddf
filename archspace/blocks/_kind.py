"""The record a block module declares as ``KIND``: its tag, stacking letter, spec, module and cost."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class BlockKind:
    """One block kind: ``module(spec, width, drop_path=0.0)``, ``cost(spec, width, h, w) -> Cost``."""

    name: str  # the spec's ``kind`` tag, e.g. "sam"
    letter: str  # one capital letter in pattern strings and arch labels, e.g. "S"
    spec: type  # the pydantic spec class
    module: type  # the nn.Module class
    cost: Callable[..., Any]
