"""EfficientMod block (effmod): spec, module and analytic cost.

Ma et al., "Efficient Modulation for Vision Networks", Sec. 3.2, Eq. 5: a context branch
f -> depth-wise conv + GELU -> g multiplies an expanded value branch, then a projection.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import torch
from pydantic import BeforeValidator, Field, model_validator
from torch import nn

from ..nn.costs import Cost, conv, elementwise, layernorm, linear
from ..nn.costs import layer_scale as layer_scale_cost
from ..nn.layers import DropPath, apply_layer_scale, layer_scale_gamma, nchw, nhwc
from ..spec._base import Eps, PosFloat, PosInt, Spec, _to_tuple, odd_kernels
from ._kind import BlockKind


class EffModSpec(Spec):
    """EfficientMod block: LN, context f -> depth-wise conv + GELU -> g, times the expanded value fc1, then fc2; layer-scaled residual."""

    kind: Literal["effmod"] = "effmod"
    mlp_ratio: Annotated[int, Field(gt=0, le=64)] = 6
    kernel_size: PosInt = 7
    layer_scale: Optional[PosFloat] = 1e-4
    norm_eps: Eps = 1e-5
    context: Annotated[tuple[Literal["f", "conv", "g"], ...], BeforeValidator(_to_tuple)] = ("f", "conv", "g")
    fusion: Literal["mul", "sum"] = "mul"

    @model_validator(mode="after")
    def _check(self) -> "EffModSpec":
        odd_kernels("kernel_size", (self.kernel_size,))
        if len(set(self.context)) != len(self.context) or list(self.context) != sorted(self.context, key=["f", "conv", "g"].index):
            raise ValueError("context: list each of f, conv, g at most once, in that order (EfficientMod Table 5 ablation)")
        return self

    def check(self, width: int) -> Optional[str]:
        """No width-dependent constraints."""
        return None


class EfficientModulation(nn.Module):
    """ctx = g(GELU(dwconv(f x))); out = fc2(act(fc1 x) * tile(ctx, r)); no GELU and no tiling when r = 1."""

    def __init__(self, spec: EffModSpec, width: int):
        super().__init__()
        self.r = spec.mlp_ratio
        k = spec.kernel_size
        self.sum = spec.fusion == "sum"
        self.fc1 = nn.Linear(width, width * self.r)
        self.act = nn.GELU() if self.r > 1 else nn.Identity()
        # Table 5 ablations drop f, the conv or g from the context branch (the GELU stays)
        self.f = nn.Linear(width, width) if "f" in spec.context else nn.Identity()
        self.ctx_conv = nn.Conv2d(width, width, k, padding=k // 2, groups=width) if "conv" in spec.context else None
        self.ctx_act = nn.GELU()
        self.g = nn.Linear(width, width) if "g" in spec.context else nn.Identity()
        self.fc2 = nn.Linear(width * self.r, width)

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

    def __init__(self, spec: EffModSpec, width: int, drop_path: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=spec.norm_eps)
        self.mod = EfficientModulation(spec, width)
        self.gamma = layer_scale_gamma(width, spec.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(apply_layer_scale(self.mod(self.norm(x)), self.gamma))


def effmod_cost(spec: EffModSpec, width: int, h: int, w: int) -> Cost:
    """EfficientMod block: LN, fc1, f, context conv, g, modulation, fc2, layer scale."""
    c = width
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
    return cost + layer_scale_cost(n, c, spec.layer_scale)


KIND = BlockKind("effmod", letter="E", spec=EffModSpec, module=EffModBlock, cost=effmod_cost)
