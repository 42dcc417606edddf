"""Analytic complexity of a spec (params and MACs per convention), without building a model.

Mirrors the modules in ``archspace.nn`` one to one, like pycls' ``complexity`` methods, so a search
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

from dataclasses import dataclass, fields

from ..spec.blocks import EffModBlock, MSABlock, SAMBlock, head_channels, saa_groups
from ..spec.io import load_spec
from ..spec.net import NetSpec


@dataclass
class Cost:
    """Parameters and MACs per convention."""

    params: int = 0
    smt_paper: int = 0
    fvcore: int = 0
    full: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        """{'params': ..., 'smt-paper': ..., 'fvcore': ..., 'full': ...}."""
        return {"params": self.params, "smt-paper": self.smt_paper, "fvcore": self.fvcore, "full": self.full}


def linear(n: int, cin: int, cout: int, bias: bool = True) -> Cost:
    """Linear layer on n tokens."""
    macs = n * cin * cout
    b = cout if bias else 0
    return Cost(cin * cout + b, macs + n * b, macs, macs + n * b)


def conv(h: int, w: int, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1,
         bias: bool = True) -> tuple[Cost, int, int]:
    """Conv2d on an h x w map; returns the cost and the output size."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    per = cin // groups * k * k
    out = ho * wo * cout
    b = cout if bias else 0
    return Cost(cout * per + b, out * per + (out if bias else 0), out * per, out * per + (out if bias else 0)), ho, wo


def layernorm(n: int, c: int) -> Cost:
    """LayerNorm over c channels on n tokens."""
    return Cost(2 * c, 0, 5 * n * c, 0)


def batchnorm(n: int, c: int) -> Cost:
    """BatchNorm (eval) on c channels at n positions."""
    return Cost(2 * c, 0, 2 * n * c, 0)


def attention(n: int, heads: int, head_dim: int) -> Cost:
    """Softmax attention matmuls: q k^T and attn v."""
    macs = 2 * heads * n * n * head_dim
    return Cost(0, 0, macs, macs)


def elementwise(numel: int) -> Cost:
    """An elementwise product (counted only in 'full')."""
    return Cost(0, 0, 0, numel)


def _layer_scale(n: int, c: int, init) -> Cost:
    return Cost(c, 0, 0, n * c) if init is not None else Cost()


def _detail_ffn(n: int, h: int, w: int, c: int, hidden: int) -> Cost:
    dw, _, _ = conv(h, w, hidden, hidden, 3, pad=1, groups=hidden)
    return linear(n, c, hidden) + dw + linear(n, hidden, c)


def sam_cost(spec: SAMBlock, c: int, h: int, w: int) -> Cost:
    """SAM block: LN, v/s, MHMC, aggregation, modulation, proj, LN, detail FFN, layer scales."""
    n = h * w
    cost = layernorm(n, c) + linear(n, c, c, spec.qkv_bias) + linear(n, c, c, spec.qkv_bias)
    for ch, k in zip(head_channels(c, spec.heads, spec.split), spec.kernel_sizes):
        cost = cost + conv(h, w, ch, ch, k, pad=k // 2, groups=ch)[0]
    e = spec.expand_ratio
    if spec.aggregation == "linear1":
        cost = cost + conv(h, w, c, c, 1)[0]
    elif spec.aggregation == "linear2":
        cost = cost + conv(h, w, c, c, 1)[0] + conv(h, w, c, c, 1)[0]
    elif spec.aggregation in ("saa", "ibn"):
        groups = saa_groups(c, spec.heads) if spec.aggregation == "saa" else 1
        cost = cost + conv(h, w, c, c * e, 1, groups=groups)[0] + batchnorm(n, c * e) + conv(h, w, c * e, c, 1)[0]
    cost = cost + elementwise(n * c) + linear(n, c, c)
    cost = cost + layernorm(n, c) + _detail_ffn(n, h, w, c, int(c * spec.mlp_ratio))
    return cost + _layer_scale(n, c, spec.layer_scale) + _layer_scale(n, c, spec.layer_scale)


def effmod_cost(spec: EffModBlock, c: int, h: int, w: int) -> Cost:
    """EfficientMod block: LN, fc1, f, context conv, g, modulation, fc2, layer scale."""
    n, r, k = h * w, spec.mlp_ratio, spec.kernel_size
    cost = layernorm(n, c) + linear(n, c, c * r)
    if "f" in spec.context:
        cost = cost + linear(n, c, c)
    if "conv" in spec.context:
        cost = cost + conv(h, w, c, c, k, pad=k // 2, groups=c)[0]
    if "g" in spec.context:
        cost = cost + linear(n, c, c)
    if spec.fusion == "mul":
        cost = cost + elementwise(n * c * r)
    cost = cost + linear(n, c * r, c)
    return cost + _layer_scale(n, c, spec.layer_scale)


def msa_cost(spec: MSABlock, c: int, h: int, w: int) -> Cost:
    """MSA block (smt or vit flavor): LN, projections, attention, LN, FFN, layer scales."""
    n = h * w
    hidden = int(c * spec.mlp_ratio)
    if spec.flavor == "smt":
        d = c // spec.heads
        cost = linear(n, c, c, spec.qkv_bias) + linear(n, c, 2 * c, spec.qkv_bias) + attention(n, spec.heads, d)
        cost = cost + conv(h, w, c, c, 3, pad=1, groups=c)[0] + linear(n, c, c)
        ffn = _detail_ffn(n, h, w, c, hidden)
    else:
        d = spec.head_dim(c)
        inner = spec.heads * d
        cost = linear(n, c, 3 * inner, spec.qkv_bias) + attention(n, spec.heads, d) + linear(n, inner, c)
        ffn = linear(n, c, hidden) + linear(n, hidden, c)
    cost = cost + layernorm(n, c) + layernorm(n, c) + ffn
    return cost + _layer_scale(n, c, spec.layer_scale) + _layer_scale(n, c, spec.layer_scale)


BLOCK_COSTS = {"sam": sam_cost, "effmod": effmod_cost, "msa": msa_cost}


def complexity(spec, resolution: int | tuple[int, int] = 224, num_classes: int | None = None) -> dict[str, int]:
    """Params and MACs ('smt-paper', 'fvcore', 'full') of a spec at a resolution, batch 1, without building it."""
    spec = load_spec(spec) if not isinstance(spec, NetSpec) else spec
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    classes = spec.num_classes if num_classes is None else num_classes
    c0 = spec.stages[0].width
    st = spec.stem
    if st.kind == "smt":
        c1, h1, w1 = conv(h, w, spec.in_chans, c0, st.kernel_size, st.stride // 2, st.kernel_size // 2, bias=False)
        c2, h, w = conv(h1, w1, c0, c0, 2, 2)
        total = c1 + batchnorm(h1 * w1, c0) + c2 + layernorm(h * w, c0)
    else:
        total, h, w = conv(h, w, spec.in_chans, c0, st.kernel_size, st.stride, st.padding)
        total = total + layernorm(h * w, c0)
    prev = c0
    for stage in spec.stages:
        c = stage.width
        if stage.downsample is not None:
            ds = stage.downsample
            cc, h, w = conv(h, w, prev, c, ds.kernel_size, ds.stride, ds.pad)
            total = total + cc + layernorm(h * w, c)
        for block in stage.blocks:
            total = total + BLOCK_COSTS[block.kind](block, c, h, w)
        if stage.norm_eps is not None:
            total = total + layernorm(h * w, c)
        prev = c
    if spec.head.pool == "avgpool":
        total = total + Cost(0, 0, h * w * prev, 0)
    if classes > 0:
        total = total + linear(1, prev, classes)
    return total.as_dict()
