"""Small shared layers: drop path, layer scale, channels-last conv helpers, FFNs."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability p (training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def layer_scale(dim: int, init: Optional[float]) -> Optional[nn.Parameter]:
    """Per-channel residual scale initialised to ``init``, or None when layer scale is off."""
    return None if init is None else nn.Parameter(init * torch.ones(dim))


def nchw(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, C, H, W) view."""
    return x.permute(0, 3, 1, 2)


def nhwc(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C) view."""
    return x.permute(0, 2, 3, 1)


class DetailFFN(nn.Module):
    """SMT's detail-specific FFN: fc1 -> (x + dw3x3(x)) -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)  # B,H,W,hidden
        x = self.act(x + nhwc(self.dwconv(nchw(x))))
        return self.fc2(x)  # B,H,W,C


class Mlp(nn.Module):
    """Plain MLP: fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
