"""SMT's scale-aware modulation block (sam): spec, module and analytic cost.

Lin et al., "Scale-Aware Modulation Meet Transformer", Sec. 3.1: multi-head mixed convolution
(MHMC, one depth-wise kernel per head) and scale-aware aggregation (SAA) modulate a value
projection; then SMT's detail-specific FFN.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Annotated

import torch
from pydantic import Field, model_validator
from torch import nn

from ..nn.costs import Cost, batchnorm, conv, detail_ffn, elementwise, layernorm, linear
from ..nn.costs import layer_scale as layer_scale_cost
from ..nn.layers import DetailFFN, PreNormBlock, nchw, nhwc
from ..spec._base import MAX_INT, Eps, IntTuple, PosFloat, PosInt, Ratio, Spec, odd_kernels
from ._kind import BlockKind

Aggregation = Literal["saa", "ibn", "linear2", "linear1", "none"]
Split = Literal["even", "front", "last"]


def default_kernel_sizes(heads: int) -> tuple[int, ...]:
    """SMT's MHMC kernels: 3, 5, 7, ... one per head."""
    if heads > MAX_INT:
        raise ValueError(f"heads: {heads} is more than {MAX_INT} (use at most the stage width)")
    return tuple(3 + 2 * i for i in range(heads))


def head_channels(width: int, heads: int, split: str) -> tuple[int, ...]:
    """Channels per MHMC head: ``even`` (width/heads each), ``front`` (np.array_split) or ``last``."""
    if split == "front":
        base, rem = divmod(width, heads)
        return tuple(base + (1 if i < rem else 0) for i in range(heads))
    base = width // heads
    sizes = [base] * heads
    sizes[-1] += width - base * heads
    return tuple(sizes)


def saa_groups(width: int, heads: int) -> int:
    """Groups of SAA's first 1x1 conv: width/heads, or the largest divisor of width <= width//heads."""
    limit = max(width // heads, 1)
    return max(d for d in range(1, limit + 1) if width % d == 0)


class SAMSpec(Spec):
    """SMT scale-aware modulation: MHMC (per-head depth-wise kernels) + aggregation modulating v, then the detail-specific FFN."""

    kind: Literal["sam"] = "sam"
    heads: PosInt = 4
    kernel_sizes: IntTuple = ()
    split: Split = "even"
    aggregation: Aggregation = "saa"
    expand_ratio: Annotated[int, Field(gt=0, le=64)] = 2
    mlp_ratio: Ratio = 4.0
    qkv_bias: bool = True
    layer_scale: Optional[PosFloat] = None
    norm_eps: Eps = 1e-6

    @classmethod
    def derived(cls, fields: dict) -> dict:
        """Fields computed from the others when left out: kernel_sizes 3, 5, 7, ... from heads."""
        heads = fields.get("heads", 4)
        if isinstance(heads, int) and not isinstance(heads, bool) and 0 < heads <= MAX_INT:
            return {"kernel_sizes": list(default_kernel_sizes(heads))}
        return {}

    @model_validator(mode="before")
    @classmethod
    def _fill_kernels(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("kernel_sizes"):
            data = {**data, **cls.derived(data)}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SAMSpec":
        if len(self.kernel_sizes) != self.heads:
            raise ValueError(
                f"kernel_sizes: {len(self.kernel_sizes)} kernel sizes for {self.heads} heads "
                f"(give one per head, e.g. {list(default_kernel_sizes(self.heads))})"
            )
        odd_kernels("kernel_sizes", self.kernel_sizes)
        return self

    def check(self, width: int) -> Optional[str]:
        """Problems that need the stage width, as 'field: message (fix)'."""
        if self.heads > width:
            return f"heads: {self.heads} heads exceed width {width} (use at most {width} heads)"
        if self.split == "even" and width % self.heads:
            return f"heads: {self.heads} does not divide width {width} (use split: front)"
        if int(width * self.mlp_ratio) < 1:
            return f"mlp_ratio: {self.mlp_ratio} gives an empty hidden layer at width {width}"
        return None


def interleave_order(sizes: tuple[int, ...]) -> list[int]:
    """Source channel (head-major) of every output channel: channel g of each head in turn (official order)."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [starts[i] + g for g in range(max(sizes)) for i in range(len(sizes)) if g < sizes[i]]


def aggregation(kind: str, width: int, heads: int, expand: int) -> nn.Module:
    """Aggregation after MHMC: saa (grouped 1x1 -> BN -> GELU -> 1x1), ibn, linear2, linear1 or none."""
    if kind == "none":
        return nn.Identity()
    if kind == "linear1":
        return nn.Sequential(nn.Conv2d(width, width, 1))
    if kind == "linear2":
        return nn.Sequential(nn.Conv2d(width, width, 1), nn.GELU(), nn.Conv2d(width, width, 1))
    groups = saa_groups(width, heads) if kind == "saa" else 1
    return nn.Sequential(
        nn.Conv2d(width, width * expand, 1, groups=groups),
        nn.BatchNorm2d(width * expand),
        nn.GELU(),
        nn.Conv2d(width * expand, width, 1),
    )


class ScaleAwareModulation(nn.Module):
    """SAM: v = Wv x; modulator = agg(interleave(MHMC(Ws x))); out = proj(modulator * v)."""

    def __init__(self, spec: SAMSpec, width: int):
        super().__init__()
        self.sizes = head_channels(width, spec.heads, spec.split)
        self.v = nn.Linear(width, width, bias=spec.qkv_bias)
        self.s = nn.Linear(width, width, bias=spec.qkv_bias)
        self.local_convs = nn.ModuleList(
            nn.Conv2d(c, c, k, padding=k // 2, groups=c) for c, k in zip(self.sizes, spec.kernel_sizes)
        )
        self.even = len(set(self.sizes)) == 1
        if not self.even:
            self.register_buffer("order", torch.tensor(interleave_order(self.sizes)), persistent=False)
        self.agg = aggregation(spec.aggregation, width, spec.heads, spec.expand_ratio)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        v = self.v(x)  # B,H,W,C
        s = nchw(self.s(x))  # B,C,H,W, head-major channels
        parts = [conv(p) for conv, p in zip(self.local_convs, torch.split(s, self.sizes, dim=1))]
        if len(parts) == 1:
            m = parts[0]
        elif self.even:
            m = torch.stack(parts, dim=2).reshape(B, C, H, W)  # channel g of head i -> g*heads + i
        else:
            m = torch.cat(parts, dim=1).index_select(1, self.order)
        m = self.agg(m)  # B,C,H,W
        return self.proj(nhwc(m) * v)


class SAMBlock(PreNormBlock):
    """Pre-norm block: x + ls1 * SAM(LN x); x + ls2 * DetailFFN(LN x)."""

    def __init__(self, spec: SAMSpec, width: int, drop_path: float = 0.0):
        super().__init__(width, ScaleAwareModulation(spec, width), DetailFFN(width, int(width * spec.mlp_ratio)),
                         mixer_name="mixer", norm_eps=spec.norm_eps, layer_scale=spec.layer_scale, drop_path=drop_path)


def sam_cost(spec: SAMSpec, width: int, h: int, w: int) -> Cost:
    """SAM block: LN, v/s, MHMC, aggregation, modulation, proj, LN, detail FFN, layer scales."""
    c = width
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
    cost = cost + layernorm(n, c) + detail_ffn(n, h, w, c, int(c * spec.mlp_ratio))
    return cost + layer_scale_cost(n, c, spec.layer_scale) + layer_scale_cost(n, c, spec.layer_scale)


KIND = BlockKind("sam", letter="S", spec=SAMSpec, module=SAMBlock, cost=sam_cost)
