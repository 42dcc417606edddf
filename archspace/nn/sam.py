"""SMT scale-aware modulation block (Lin et al., "Scale-Aware Modulation Meet Transformer", Sec. 3.1)."""
from __future__ import annotations

import torch
from torch import nn

from ..spec.blocks import SAMBlock as SAMSpec
from ..spec.blocks import head_channels, saa_groups
from .layers import DetailFFN, DropPath, layer_scale, nchw, nhwc


def interleave_order(sizes: tuple[int, ...]) -> list[int]:
    """Source channel (head-major) of every output channel: channel g of each head in turn (official order)."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [starts[i] + g for g in range(max(sizes)) for i in range(len(sizes)) if g < sizes[i]]


def aggregation(kind: str, dim: int, heads: int, expand: int) -> nn.Module:
    """Aggregation after MHMC: saa (grouped 1x1 -> BN -> GELU -> 1x1), ibn, linear2, linear1 or none."""
    if kind == "none":
        return nn.Identity()
    if kind == "linear1":
        return nn.Sequential(nn.Conv2d(dim, dim, 1))
    if kind == "linear2":
        return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 1))
    groups = saa_groups(dim, heads) if kind == "saa" else 1
    return nn.Sequential(
        nn.Conv2d(dim, dim * expand, 1, groups=groups),
        nn.BatchNorm2d(dim * expand),
        nn.GELU(),
        nn.Conv2d(dim * expand, dim, 1),
    )


class ScaleAwareModulation(nn.Module):
    """SAM: v = Wv x; modulator = agg(interleave(MHMC(Ws x))); out = proj(modulator * v)."""

    def __init__(self, spec: SAMSpec, dim: int):
        super().__init__()
        self.sizes = head_channels(dim, spec.heads, spec.split)
        self.v = nn.Linear(dim, dim, bias=spec.qkv_bias)
        self.s = nn.Linear(dim, dim, bias=spec.qkv_bias)
        self.local_convs = nn.ModuleList(
            nn.Conv2d(c, c, k, padding=k // 2, groups=c) for c, k in zip(self.sizes, spec.kernel_sizes)
        )
        self.even = len(set(self.sizes)) == 1
        if not self.even:
            self.register_buffer("order", torch.tensor(interleave_order(self.sizes)), persistent=False)
        self.agg = aggregation(spec.aggregation, dim, spec.heads, spec.expand_ratio)
        self.proj = nn.Linear(dim, dim)

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


class SAMBlock(nn.Module):
    """Pre-norm block: x + ls1 * SAM(LN x); x + ls2 * DetailFFN(LN x)."""

    def __init__(self, spec: SAMSpec, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mixer = ScaleAwareModulation(spec, dim)
        self.norm2 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mlp = DetailFFN(dim, int(dim * spec.mlp_ratio))
        self.gamma_1 = layer_scale(dim, spec.layer_scale)
        self.gamma_2 = layer_scale(dim, spec.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
