"""Block kinds, each one module holding its spec, its ``nn.Module`` and its analytic cost (the pycls way).

A module of this package defines a kind and registers it once with :func:`register`; the package
imports every module it holds, so a new kind is one new file here. Everything else that lists block
kinds derives from :data:`REGISTRY`: the spec union (``spec.blocks``), the builder's modules
(``nn.build.BLOCKS``), the analytic costs (``measure.complexity``), the one-letter stacking codes,
the error paths and the space paths.

A kind's contract: ``spec`` is a frozen :class:`archspace.spec._base.Spec` with ``kind: Literal[name]``
and ``check(width) -> Optional[str]`` for width-dependent problems; ``module(spec, width,
drop_path)`` maps channels-last ``(B, H, W, C)`` to the same shape; ``cost(spec, width, h, w)``
returns the :class:`archspace.measure.costs.Cost` of exactly that module.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class BlockKind:
    """One registered block kind."""

    name: str  # the spec's ``kind`` tag, e.g. "sam"
    letter: str  # one capital letter in pattern strings, e.g. "S"
    spec: type  # the pydantic spec class
    module: type  # the nn.Module class: module(spec, width, drop_path=0.0)
    cost: Callable[..., Any]  # cost(spec, width, h, w) -> Cost
    order: int  # position in listings (union, error messages)


REGISTRY: dict[str, BlockKind] = {}


def register(name: str, *, letter: str, spec: type, module: type, cost: Callable[..., Any], order: int = 100) -> BlockKind:
    """Register a block kind; refuses a second kind with the same name or letter, or a spec whose tag differs."""
    tag = spec.model_fields["kind"].default
    if tag != name:
        raise ValueError(f"block kind {name!r}: its spec's kind defaults to {tag!r}")
    if name in REGISTRY:
        raise ValueError(f"block kind {name!r} is registered twice")
    if len(letter) != 1 or not letter.isupper() or any(k.letter == letter for k in REGISTRY.values()):
        raise ValueError(f"block kind {name!r}: letter {letter!r} must be one capital letter no other kind uses")
    kind = BlockKind(name, letter, spec, module, cost, order)
    REGISTRY[name] = kind
    ordered = sorted(REGISTRY.values(), key=lambda k: (k.order, k.name))
    REGISTRY.clear()
    REGISTRY.update((k.name, k) for k in ordered)
    return kind


def kinds() -> list[str]:
    """The registered kind names, in listing order."""
    return list(REGISTRY)


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
