"""EfficientMod's attention block (vit): spec, module and analytic cost.

Ma et al., "Efficient Modulation for Vision Networks": the official ``AttentionBlock`` appended after
the modulation blocks of stages 3 and 4. Its attention projects through heads x head_dim channels,
head_dim = max(width // heads, 32), with a fused qkv without bias, so any width works; then a plain MLP.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..nn.costs import Cost, attention, layernorm, linear
from ..nn.costs import layer_scale as layer_scale_cost
from ..nn.layers import Mlp, PreNormBlock
from ..spec._base import Eps, PosFloat, PosInt, Ratio, Spec
from ._kind import BlockKind


class ViTSpec(Spec):
    """ViT block as EfficientMod appends it: fused qkv (no bias) through heads x head_dim channels, softmax attention, plain MLP."""

    kind: Literal["vit"] = "vit"
    heads: PosInt = 8
    min_head_dim: Annotated[int, Field(ge=0)] = 32
    qkv_bias: bool = False
    mlp_ratio: Ratio = 4.0
    layer_scale: Optional[PosFloat] = None
    norm_eps: Eps = 1e-5

    def head_dim(self, width: int) -> int:
        """Per-head width: width // heads, at least ``min_head_dim`` (EfficientMod uses 32)."""
        return max(width // self.heads, self.min_head_dim)

    def check(self, width: int) -> Optional[str]:
        """Problems that need the stage width, as 'field: message (fix)'."""
        if self.head_dim(width) < 1:
            return f"heads: {self.heads} heads leave head_dim 0 at width {width} (set min_head_dim, e.g. 32)"
        if int(width * self.mlp_ratio) < 1:
            return f"mlp_ratio: {self.mlp_ratio} gives an empty hidden layer at width {width}"
        return None


class ViTAttention(nn.Module):
    """ViT attention as EfficientMod uses it: fused qkv to heads*head_dim, sdpa, proj back to width."""

    def __init__(self, spec: ViTSpec, width: int):
        super().__init__()
        self.heads = spec.heads
        self.head_dim = spec.head_dim(width)
        inner = self.heads * self.head_dim
        self.qkv = nn.Linear(width, 3 * inner, bias=spec.qkv_bias)
        self.proj = nn.Linear(inner, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B,h,N,d
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(B, H, W, self.heads * self.head_dim))


class ViTBlock(PreNormBlock):
    """Pre-norm block: x + ls1 * ViTAttention(LN x); x + ls2 * Mlp(LN x)."""

    def __init__(self, spec: ViTSpec, width: int, drop_path: float = 0.0):
        super().__init__(width, ViTAttention(spec, width), Mlp(width, int(width * spec.mlp_ratio)),
                         mixer_name="attn", norm_eps=spec.norm_eps, layer_scale=spec.layer_scale, drop_path=drop_path)


def vit_cost(spec: ViTSpec, width: int, h: int, w: int) -> Cost:
    """ViT block: LN, qkv, attention, proj, LN, fc1, fc2, layer scales."""
    c = width
    n = h * w
    d = spec.head_dim(c)
    inner = spec.heads * d
    hidden = int(c * spec.mlp_ratio)
    cost = layernorm(n, c) + linear(n, c, 3 * inner, spec.qkv_bias) + attention(n, spec.heads, d) + linear(n, inner, c)
    cost = cost + layernorm(n, c) + linear(n, c, hidden) + linear(n, hidden, c)
    return cost + layer_scale_cost(n, c, spec.layer_scale) + layer_scale_cost(n, c, spec.layer_scale)


KIND = BlockKind("vit", letter="V", spec=ViTSpec, module=ViTBlock, cost=vit_cost)
