"""Multi-head self-attention block (msa): spec, module and analytic cost.

Flavor ``smt``: SMT's attention (q and kv projections, a local depth-wise conv on v) and its
detail-specific FFN. Flavor ``vit``: the ViT block EfficientMod appends (fused qkv through
heads x head_dim channels, plain MLP).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ..measure.costs import Cost, attention, conv, detail_ffn, layernorm, linear
from ..measure.costs import layer_scale as layer_scale_cost
from ..nn.layers import DetailFFN, DropPath, Mlp, layer_scale, nchw, nhwc
from ..spec._base import Eps, PosFloat, PosInt, Ratio, Spec
from . import register


_MSA_DEFAULTS = {
    "smt": {"qkv_bias": True, "min_head_dim": 0, "norm_eps": 1e-6, "mlp_ratio": 4.0},
    "vit": {"qkv_bias": False, "min_head_dim": 32, "norm_eps": 1e-5, "mlp_ratio": 4.0},
}


class MSASpec(Spec):
    """Multi-head self-attention block; flavor ``smt`` (q/kv, local dw-conv on v, detail-specific FFN) or ``vit`` (fused qkv, plain MLP)."""

    kind: Literal["msa"] = "msa"
    flavor: Literal["smt", "vit"] = "smt"
    heads: PosInt = 8
    min_head_dim: Annotated[int, Field(ge=0)] = 0
    qkv_bias: bool = True
    mlp_ratio: Ratio = 4.0
    layer_scale: Optional[PosFloat] = None
    norm_eps: Eps = 1e-6

    @model_validator(mode="before")
    @classmethod
    def _flavor_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            flavor = data.get("flavor", "smt")
            if flavor in _MSA_DEFAULTS:
                data = {**_MSA_DEFAULTS[flavor], **data}
        return data

    def head_dim(self, width: int) -> int:
        """Per-head width: width // heads, at least ``min_head_dim`` (EfficientMod uses 32)."""
        return max(width // self.heads, self.min_head_dim)

    def check(self, width: int) -> Optional[str]:
        """Problems that need the stage width, as 'field: message (fix)'.

        The ``vit`` flavor projects through heads x head_dim channels, as EfficientMod's official
        attention does, so any width works there; the ``smt`` flavor splits the width into heads.
        """
        if self.flavor == "vit":
            if self.head_dim(width) < 1:
                return f"heads: {self.heads} heads leave head_dim 0 at width {width} (set min_head_dim, e.g. 32)"
        elif width % self.heads:
            divisors = [h for h in (1, 2, 4, 8, 16, 32) if width % h == 0]
            return f"heads: {self.heads} does not divide width {width} (use one of {divisors})"
        if self.flavor == "smt" and self.min_head_dim > width // self.heads:
            return "min_head_dim: SMT attention needs head_dim = width // heads (set min_head_dim: 0)"
        if int(width * self.mlp_ratio) < 1:
            return f"mlp_ratio: {self.mlp_ratio} gives an empty hidden layer at width {width}"
        return None


class SMTAttention(nn.Module):
    """SMT MSA: q, kv projections; softmax(qk^T/sqrt(d)) v + dw3x3(v); proj."""

    def __init__(self, spec: MSASpec, width: int):
        super().__init__()
        self.heads = spec.heads
        self.q = nn.Linear(width, width, bias=spec.qkv_bias)
        self.kv = nn.Linear(width, 2 * width, bias=spec.qkv_bias)
        self.local_conv = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        h, d = self.heads, C // self.heads
        q = self.q(x).reshape(B, H * W, h, d).transpose(1, 2)  # B,h,N,d
        kv = self.kv(x).reshape(B, H * W, 2, h, d)
        k, v = kv.unbind(2)  # B,N,h,d each
        o = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2))  # B,h,N,d
        o = o.transpose(1, 2).reshape(B, H, W, C)
        local = nhwc(self.local_conv(nchw(v.reshape(B, H, W, C))))
        return self.proj(o + local)


class ViTAttention(nn.Module):
    """ViT attention as EfficientMod uses it: fused qkv to heads*head_dim, sdpa, proj back to width."""

    def __init__(self, spec: MSASpec, width: int):
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


class MSABlock(nn.Module):
    """Pre-norm block: x + ls1 * attn(LN x); x + ls2 * ffn(LN x); flavor picks attention and FFN."""

    def __init__(self, spec: MSASpec, width: int, drop_path: float = 0.0):
        super().__init__()
        smt = spec.flavor == "smt"
        hidden = int(width * spec.mlp_ratio)
        self.norm1 = nn.LayerNorm(width, eps=spec.norm_eps)
        self.attn = SMTAttention(spec, width) if smt else ViTAttention(spec, width)
        self.norm2 = nn.LayerNorm(width, eps=spec.norm_eps)
        self.mlp = DetailFFN(width, hidden) if smt else Mlp(width, hidden)
        self.gamma_1 = layer_scale(width, spec.layer_scale)
        self.gamma_2 = layer_scale(width, spec.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


def msa_cost(spec: MSASpec, width: int, h: int, w: int) -> Cost:
    """MSA block (smt or vit flavor): LN, projections, attention, LN, FFN, layer scales."""
    c = width
    n = h * w
    hidden = int(c * spec.mlp_ratio)
    if spec.flavor == "smt":
        d = c // spec.heads
        cost = linear(n, c, c, spec.qkv_bias) + linear(n, c, 2 * c, spec.qkv_bias) + attention(n, spec.heads, d)
        cost = cost + conv(h, w, c, c, 3, pad=1, groups=c)[0] + linear(n, c, c)
        ffn = detail_ffn(n, h, w, c, hidden)
    else:
        d = spec.head_dim(c)
        inner = spec.heads * d
        cost = linear(n, c, 3 * inner, spec.qkv_bias) + attention(n, spec.heads, d) + linear(n, inner, c)
        ffn = linear(n, c, hidden) + linear(n, hidden, c)
    cost = cost + layernorm(n, c) + layernorm(n, c) + ffn
    return cost + layer_scale_cost(n, c, spec.layer_scale) + layer_scale_cost(n, c, spec.layer_scale)


register("msa", letter="M", spec=MSASpec, module=MSABlock, cost=msa_cost, order=2)
