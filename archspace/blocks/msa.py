"""SMT's multi-head self-attention block (msa): spec, module and analytic cost.

Lin et al., "Scale-Aware Modulation Meet Transformer": the attention block of SMT's later stages, q and
kv projections with a local depth-wise 3x3 conv on v beside the softmax attention, then SMT's
detail-specific FFN. EfficientMod's
attention block is the ``vit`` kind (``archspace/blocks/vit.py``).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.costs import Cost, attention, conv, detail_ffn, layernorm, linear
from ..nn.costs import layer_scale as layer_scale_cost
from ..nn.layers import DetailFFN, PreNormBlock, nchw, nhwc
from ..spec._base import Eps, PosFloat, PosInt, Ratio, Spec
from ._kind import BlockKind


class MSASpec(Spec):
    """SMT self-attention: q/kv projections, softmax attention + depth-wise 3x3 on v, detail-specific FFN; heads divide the width."""

    kind: Literal["msa"] = "msa"
    heads: PosInt = 8
    qkv_bias: bool = True
    mlp_ratio: Ratio = 4.0
    layer_scale: Optional[PosFloat] = None
    norm_eps: Eps = 1e-6

    def check(self, width: int) -> Optional[str]:
        """Problems that need the stage width, as 'field: message (fix)'."""
        if width % self.heads:
            divisors = [h for h in (1, 2, 4, 8, 16, 32) if width % h == 0]
            return f"heads: {self.heads} does not divide width {width} (use one of {divisors}, or kind: vit)"
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


class MSABlock(PreNormBlock):
    """Pre-norm block: x + ls1 * SMTAttention(LN x); x + ls2 * DetailFFN(LN x)."""

    def __init__(self, spec: MSASpec, width: int, drop_path: float = 0.0):
        super().__init__(width, SMTAttention(spec, width), DetailFFN(width, int(width * spec.mlp_ratio)),
                         mixer_name="attn", norm_eps=spec.norm_eps, layer_scale=spec.layer_scale, drop_path=drop_path)


def msa_cost(spec: MSASpec, width: int, h: int, w: int) -> Cost:
    """SMT MSA block: LN, q, kv, attention, local conv, proj, LN, detail FFN, layer scales."""
    c = width
    n = h * w
    cost = layernorm(n, c) + linear(n, c, c, spec.qkv_bias) + linear(n, c, 2 * c, spec.qkv_bias)
    cost = cost + attention(n, spec.heads, c // spec.heads) + conv(h, w, c, c, 3, pad=1, groups=c)[0] + linear(n, c, c)
    cost = cost + layernorm(n, c) + detail_ffn(n, h, w, c, int(c * spec.mlp_ratio))
    return cost + layer_scale_cost(n, c, spec.layer_scale) + layer_scale_cost(n, c, spec.layer_scale)


KIND = BlockKind("msa", letter="M", spec=MSASpec, module=MSABlock, cost=msa_cost)
