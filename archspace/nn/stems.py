"""Stems and downsampling layers; all return channels-last (B, H, W, C) maps."""
from __future__ import annotations

import torch
from torch import nn

from ..spec.net import DownsampleSpec, EffModStemSpec, SMTStemSpec
from .layers import nchw, nhwc


class SMTStem(nn.Module):
    """SMT stem: conv kxk s2 (s1 at proxy stride 2, no bias) -> BN -> ReLU -> conv 2x2 s2 -> LN."""

    def __init__(self, spec: SMTStemSpec, in_chans: int, width: int):
        super().__init__()
        k = spec.kernel_size
        self.conv1 = nn.Conv2d(in_chans, width, k, stride=spec.stride // 2, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 2, stride=2)
        self.norm = nn.LayerNorm(width, eps=spec.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.act(self.bn(self.conv1(x))))  # B,C,H/stride,W/stride
        return self.norm(nhwc(x))


class EffModStem(nn.Module):
    """EfficientMod stem: conv kxk stride s -> LN."""

    def __init__(self, spec: EffModStemSpec, in_chans: int, width: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, spec.kernel_size, stride=spec.stride, padding=spec.padding)
        self.norm = nn.LayerNorm(width, eps=spec.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(nhwc(self.conv(x)))


class Downsample(nn.Module):
    """Downsampling between stages: conv kxk stride s -> LN."""

    def __init__(self, spec: DownsampleSpec, in_dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, spec.kernel_size, stride=spec.stride, padding=spec.pad)
        self.norm = nn.LayerNorm(out_dim, eps=spec.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(nhwc(self.conv(nchw(x))))


STEMS = {"smt": SMTStem, "effmod": EffModStem}
