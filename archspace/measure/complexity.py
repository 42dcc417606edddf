"""Analytic complexity of a spec (params and MACs per convention), without building a model.

Adds up each block kind's own ``cost`` (``archspace.blocks``, beside its module, like pycls' ``complexity``
methods), so a search
can reject specs outside a budget in well under a millisecond each. Tests pin it to the counted
values of the built module (``archspace.measure.flops``) and to the official reference numbers.

Conventions (all multiply-accumulates, batch 1):
- ``smt-paper``: every Conv2d and Linear, bias included (one MAC per output element), nothing else.
- ``fvcore``: fvcore's rules: conv/linear without bias, LayerNorm 5 and eval BatchNorm 2 per element,
  adaptive average pooling 1 per input element, attention matmuls (q k^T and attn v).
- ``full``: ``smt-paper`` plus the attention matmuls and every elementwise product between
  tensors (modulation, layer scale).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

from ..blocks import REGISTRY
from ..nn.costs import Cost, batchnorm, conv, layernorm, linear
from ..spec.io import load_spec
from ..spec.net import NetSpec

BLOCK_COSTS = {name: kind.cost for name, kind in REGISTRY.items()}


@functools.lru_cache(maxsize=1 << 16)
def _block_cost(block, width: int, h: int, w: int) -> Cost:
    """A block's cost, remembered: a search or a latency prediction meets the same blocks again and again (frozen specs)."""
    return BLOCK_COSTS[block.kind](block, width, h, w)


class Part(NamedTuple):
    """One module of a spec at a resolution: its name in the built model, kind, own spec (None for a norm or the
    head), input and output widths and map sizes, and its cost."""

    module: str
    kind: str
    spec: Any
    in_width: int
    width: int
    in_hw: tuple[int, int]
    hw: tuple[int, int]
    cost: Cost


def parts(spec, resolution: int | tuple[int, int] = 224, num_classes: int | None = None) -> list[Part]:
    """The modules of a spec in forward order (stem, each stage's downsample, each block, stage norm, head) with the
    map sizes they see, derived from the spec alone: the one walk behind the per-module costs and latency tables."""
    spec = load_spec(spec) if not isinstance(spec, NetSpec) else spec
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    classes = spec.num_classes if num_classes is None else num_classes
    out: list[Part] = []
    c0 = spec.stages[0].width
    st = spec.stem
    start = (h, w)
    if st.kind == "smt":
        c1, h1, w1 = conv(h, w, spec.in_chans, c0, st.kernel_size, st.stride // 2, st.kernel_size // 2, bias=False)
        c2, h, w = conv(h1, w1, c0, c0, 2, 2)
        stem = c1 + batchnorm(h1 * w1, c0) + c2 + layernorm(h * w, c0)
    else:
        cs, h, w = conv(h, w, spec.in_chans, c0, st.kernel_size, st.stride, st.padding)
        stem = cs + layernorm(h * w, c0)
    out.append(Part("stem", "stem", st, spec.in_chans, c0, start, (h, w), stem))
    prev = c0
    for i, stage in enumerate(spec.stages):
        c = stage.width
        if stage.downsample is not None:
            ds = stage.downsample
            before = (h, w)
            cc, h, w = conv(h, w, prev, c, ds.kernel_size, ds.stride, ds.pad)
            out.append(Part(f"stages.{i}.downsample", "downsample", ds, prev, c, before, (h, w), cc + layernorm(h * w, c)))
        for j, block in enumerate(stage.blocks):
            out.append(Part(f"stages.{i}.blocks.{j}", block.kind, block, c, c, (h, w), (h, w),
                            _block_cost(block, c, h, w)))
        if stage.norm_eps is not None:
            out.append(Part(f"stages.{i}.norm", "norm", None, c, c, (h, w), (h, w), layernorm(h * w, c)))
        prev = c
    head = Cost()
    if spec.head.pool == "avgpool":
        head = head + Cost(0, 0, h * w * prev, 0)
    if classes > 0:
        head = head + linear(1, prev, classes)
    out.append(Part("head", "head", spec.head, prev, classes, (h, w), (1, 1), head))
    return out


def complexity_by_module(spec, resolution: int | tuple[int, int] = 224, num_classes: int | None = None) -> list[dict]:
    """Params and MACs of every module of a spec (stem, each stage's downsample, each block, stage norm, head),
    named as in the built model's ``state_dict`` (``stages.2.blocks.3``), with the block kind and the map size."""
    return [{"module": p.module, "kind": p.kind, "map": f"{p.hw[0]}x{p.hw[1]}", **p.cost.as_dict()}
            for p in parts(spec, resolution, num_classes)]


def complexity(spec, resolution: int | tuple[int, int] = 224, num_classes: int | None = None) -> dict[str, int]:
    """Params and MACs ('smt-paper', 'fvcore', 'full') of a spec at a resolution, batch 1, without building it."""
    rows = complexity_by_module(spec, resolution, num_classes)
    return {k: sum(r[k] for r in rows) for k in ("params", "smt-paper", "fvcore", "full")}
