"""ConvNeXt block (convnext): spec, module and analytic cost.

Liu et al., "A ConvNet for the 2020s" (CVPR 2022), Fig. 4: a depth-wise k x k convolution,
LayerNorm, an inverted-bottleneck MLP (Linear -> GELU -> Linear) and a layer-scaled residual.
The pure-convolution block that hybrid-design papers compare modulation and attention against.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import model_validator
from torch import nn

from ..nn.costs import Cost, conv, layernorm, linear
from ..nn.costs import layer_scale as layer_scale_cost
from ..nn.layers import DropPath, Mlp, apply_layer_scale, layer_scale_gamma, nchw, nhwc
from ..spec._base import Eps, PosFloat, PosInt, Ratio, Spec, odd_kernels
from ._kind import BlockKind


class ConvNeXtSpec(Spec):
    """ConvNeXt block: depth-wise conv, LN, MLP with ``mlp_ratio``, layer scale (1e-6 as in ConvNeXt)."""

    kind: Literal["convnext"] = "convnext"
    kernel_size: PosInt = 7
    mlp_ratio: Ratio = 4.0
    layer_scale: Optional[PosFloat] = 1e-6
    norm_eps: Eps = 1e-6

    @model_validator(mode="after")
    def _check(self) -> "ConvNeXtSpec":
        odd_kernels("kernel_size", (self.kernel_size,))
        return self

    def check(self, width: int) -> Optional[str]:
        """Problems that need the stage width, as 'field: message (fix)'."""
        if int(width * self.mlp_ratio) < 1:
            return f"mlp_ratio: {self.mlp_ratio} gives an empty hidden layer at width {width}"
        return None


class ConvNeXtBlock(nn.Module):
    """x + drop_path(gamma * MLP(LN(dwconv x))), channels-last."""

    def __init__(self, spec: ConvNeXtSpec, width: int, drop_path: float = 0.0):
        super().__init__()
        k = spec.kernel_size
        self.dwconv = nn.Conv2d(width, width, k, padding=k // 2, groups=width)
        self.norm = nn.LayerNorm(width, eps=spec.norm_eps)
        self.mlp = Mlp(width, int(width * spec.mlp_ratio))
        self.gamma = layer_scale_gamma(width, spec.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(nhwc(self.dwconv(nchw(x)))))  # B,H,W,C
        return x + self.drop_path(apply_layer_scale(y, self.gamma))


def convnext_cost(spec: ConvNeXtSpec, width: int, h: int, w: int) -> Cost:
    """ConvNeXt block: depth-wise conv, LN, fc1, fc2, layer scale."""
    c = width
    n, k, hidden = h * w, spec.kernel_size, int(c * spec.mlp_ratio)
    cost = conv(h, w, c, c, k, pad=k // 2, groups=c)[0] + layernorm(n, c) + linear(n, c, hidden) + linear(n, hidden, c)
    return cost + layer_scale_cost(n, c, spec.layer_scale)


KIND = BlockKind("convnext", letter="C", spec=ConvNeXtSpec, module=ConvNeXtBlock, cost=convnext_cost)
