"""Multi-head self-attention blocks: SMT's (local conv on v, detail FFN) and the ViT block EfficientMod appends."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec.blocks import MSABlock as MSASpec
from .layers import DetailFFN, DropPath, Mlp, layer_scale, nchw, nhwc


class SMTAttention(nn.Module):
    """SMT MSA: q, kv projections; softmax(qk^T/sqrt(d)) v + dw3x3(v); proj."""

    def __init__(self, spec: MSASpec, dim: int):
        super().__init__()
        self.heads = spec.heads
        self.q = nn.Linear(dim, dim, bias=spec.qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=spec.qkv_bias)
        self.local_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)

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
    """ViT attention as EfficientMod uses it: fused qkv to heads*head_dim, sdpa, proj back to dim."""

    def __init__(self, spec: MSASpec, dim: int):
        super().__init__()
        self.heads = spec.heads
        self.head_dim = spec.head_dim(dim)
        inner = self.heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=spec.qkv_bias)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B,h,N,d
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(B, H, W, self.heads * self.head_dim))


class MSABlock(nn.Module):
    """Pre-norm block: x + ls1 * attn(LN x); x + ls2 * ffn(LN x); flavor picks attention and FFN."""

    def __init__(self, spec: MSASpec, dim: int, drop_path: float = 0.0):
        super().__init__()
        smt = spec.flavor == "smt"
        hidden = int(dim * spec.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.attn = SMTAttention(spec, dim) if smt else ViTAttention(spec, dim)
        self.norm2 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mlp = DetailFFN(dim, hidden) if smt else Mlp(dim, hidden)
        self.gamma_1 = layer_scale(dim, spec.layer_scale)
        self.gamma_2 = layer_scale(dim, spec.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
