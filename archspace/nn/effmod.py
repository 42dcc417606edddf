"""EfficientMod block (Ma et al., "Efficient Modulation for Vision Networks", Sec. 3.2, Eq. 5)."""
from __future__ import annotations

import torch
from torch import nn

from ..spec.blocks import EffModBlock as EffModSpec
from .layers import DropPath, layer_scale, nchw, nhwc


class EfficientModulation(nn.Module):
    """ctx = g(GELU(dwconv(f x))); out = fc2(act(fc1 x) * tile(ctx, r)); no GELU and no tiling when r = 1."""

    def __init__(self, spec: EffModSpec, dim: int):
        super().__init__()
        self.r = spec.mlp_ratio
        k = spec.kernel_size
        self.sum = spec.fusion == "sum"
        self.fc1 = nn.Linear(dim, dim * self.r)
        self.act = nn.GELU() if self.r > 1 else nn.Identity()
        # Table 5 ablations drop f, the conv or g from the context branch (the GELU stays)
        self.f = nn.Linear(dim, dim) if "f" in spec.context else nn.Identity()
        self.ctx_conv = nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) if "conv" in spec.context else None
        self.ctx_act = nn.GELU()
        self.g = nn.Linear(dim, dim) if "g" in spec.context else nn.Identity()
        self.fc2 = nn.Linear(dim * self.r, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        ctx = self.f(x)
        if self.ctx_conv is not None:
            ctx = nhwc(self.ctx_conv(nchw(ctx)))
        ctx = self.g(self.ctx_act(ctx))  # B,H,W,C
        v = self.act(self.fc1(x))  # B,H,W,rC
        if self.r > 1:  # the official ctx.repeat(1,1,1,r): channel t*C+c meets ctx[c]
            v = v.view(B, H, W, self.r, C)
            v = (v + ctx.unsqueeze(3) if self.sum else v * ctx.unsqueeze(3)).view(B, H, W, self.r * C)
        else:
            v = v + ctx if self.sum else v * ctx
        return self.fc2(v)


class EffModBlock(nn.Module):
    """x + gamma * EfficientModulation(LN x)."""

    def __init__(self, spec: EffModSpec, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mod = EfficientModulation(spec, dim)
        self.gamma = layer_scale(dim, spec.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mod(self.norm(x))
        return x + self.drop_path(y if self.gamma is None else self.gamma * y)
