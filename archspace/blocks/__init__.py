"""Block kinds, each one module holding its spec, its ``nn.Module`` and its analytic cost (the pycls way).

Each module of this package declares its kind once as ``KIND`` (a :class:`BlockKind`) and is listed in
:data:`MODULES`, so a new kind is one new file here plus one entry there. Everything else that lists
block kinds derives from :data:`REGISTRY`: the spec union (``spec.blocks``), the builder's modules
(``nn.build.BLOCKS``), the analytic costs (``measure.complexity``), the one-letter stacking codes,
the error paths and the space paths.

A kind's contract: ``spec`` is a frozen :class:`archspace.spec._base.Spec` with ``kind: Literal[name]``
and ``check(width) -> Optional[str]`` for width-dependent problems; ``module(spec, width,
drop_path)`` maps channels-last ``(B, H, W, C)`` to the same shape; ``cost(spec, width, h, w)``
returns the :class:`archspace.nn.costs.Cost` of exactly that module.
"""
from __future__ import annotations

from typing import Iterable

from . import convnext, effmod, msa, sam, vit
from ._kind import BlockKind

MODULES = (sam, effmod, msa, vit, convnext)  # every kind's module in listing order: a new kind is one entry here


def _registry(entries: Iterable[BlockKind]) -> dict[str, BlockKind]:
    """The kinds by name; refuses a repeated name or letter, or a spec whose tag differs from the name."""
    out: dict[str, BlockKind] = {}
    for kind in entries:
        tag = kind.spec.model_fields["kind"].default
        if tag != kind.name:
            raise ValueError(f"block kind {kind.name!r}: its spec's kind defaults to {tag!r}")
        if kind.name in out:
            raise ValueError(f"block kind {kind.name!r} is listed twice")
        if len(kind.letter) != 1 or not kind.letter.isupper() or any(k.letter == kind.letter for k in out.values()):
            raise ValueError(f"block kind {kind.name!r}: letter {kind.letter!r} must be one capital letter no other kind uses")
        out[kind.name] = kind
    return out


REGISTRY: dict[str, BlockKind] = _registry(m.KIND for m in MODULES)
