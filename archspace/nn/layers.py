"""Small shared layers: drop path, layer scale, the pre-norm residual block, channels-last conv helpers, FFNs."""
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


def layer_scale_gamma(width: int, init: Optional[float]) -> Optional[nn.Parameter]:
    """Per-channel residual scale gamma initialised to ``init``, or None when layer scale is off.

    The block holds gamma itself (``blocks.0.gamma_1``, the key of the official checkpoints); a module
    owning it would save it as ``blocks.0.gamma_1.gamma``.
    """
    return None if init is None else nn.Parameter(init * torch.ones(width))


def apply_layer_scale(y: torch.Tensor, gamma: Optional[nn.Parameter]) -> torch.Tensor:
    """gamma * y per channel, or y when the block has no layer scale."""
    return y if gamma is None else gamma * y


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


class PreNormBlock(nn.Module):
    """Pre-norm residual pair: x + drop_path(gamma_1 * mixer(LN x)); x + drop_path(gamma_2 * mlp(LN x)).

    The token mixer is stored under ``mixer_name`` (``attn`` or ``mixer``), the name the official
    checkpoints give it, so state_dict keys stay theirs.
    """

    def __init__(self, width: int, mixer: nn.Module, mlp: nn.Module, *, mixer_name: str, norm_eps: float,
                 layer_scale: Optional[float], drop_path: float):
        super().__init__()
        self.mixer_name = mixer_name
        self.norm1 = nn.LayerNorm(width, eps=norm_eps)
        self.add_module(mixer_name, mixer)
        self.norm2 = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = mlp
        self.gamma_1 = layer_scale_gamma(width, layer_scale)
        self.gamma_2 = layer_scale_gamma(width, layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixer = getattr(self, self.mixer_name)
        x = x + self.drop_path(apply_layer_scale(mixer(self.norm1(x)), self.gamma_1))  # B,H,W,C
        return x + self.drop_path(apply_layer_scale(self.mlp(self.norm2(x)), self.gamma_2))
