"""The one builder: spec -> nn.Module (stem, stages of blocks, head), like pycls' AnyNet."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from ..blocks import REGISTRY
from ..spec.net import NetSpec, StageSpec
from .stems import STEMS, Downsample

BLOCKS: dict[str, type[nn.Module]] = {name: kind.module for name, kind in REGISTRY.items()}


class Stage(nn.Module):
    """Optional downsampling, the block sequence, optional closing LN."""

    def __init__(self, spec: StageSpec, in_dim: int, drop_paths: list[float]):
        super().__init__()
        self.downsample = Downsample(spec.downsample, in_dim, spec.width) if spec.downsample else nn.Identity()
        self.blocks = nn.Sequential(*(BLOCKS[b.kind](b, spec.width, p) for b, p in zip(spec.blocks, drop_paths)))
        self.norm = nn.LayerNorm(spec.width, eps=spec.norm_eps) if spec.norm_eps is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.downsample(x)))


class HybridNet(nn.Module):
    """Stem -> stages -> global pool -> linear; blocks run channels-last, features come out NCHW (timm's convention)."""

    def __init__(self, spec: NetSpec, num_classes: Optional[int] = None):
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes if num_classes is None else num_classes
        widths = [s.width for s in spec.stages]
        self.num_features = widths[-1]
        self.stem = STEMS[spec.stem.kind](spec.stem, spec.in_chans, widths[0])
        rates = spec.drop_path_rates()
        self.stages = nn.Sequential(
            *(Stage(s, widths[max(i - 1, 0)], rates[i]) for i, s in enumerate(spec.stages))
        )
        self.pool = spec.head.pool
        # EfficientMod pools with an nn.AdaptiveAvgPool2d module (hook-based counters such as ptflops see it)
        self.avgpool = nn.AdaptiveAvgPool2d(1) if self.pool == "avgpool" else None
        self.head_drop = nn.Dropout(spec.head.dropout)
        self.head = nn.Linear(self.num_features, self.num_classes) if self.num_classes > 0 else nn.Identity()
        self.feature_info = [{"num_chs": w, "reduction": r, "module": f"stages.{i}"}
                             for i, (w, r) in enumerate(zip(widths, spec.stage_strides()))]
        if not next(self.parameters()).is_meta:  # a meta-device model (counting parameters) has no values to initialise
            self.apply(_init_weights)

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Sequence[int]] = None,
                              intermediates_only: bool = False):
        """Per-stage feature maps in NCHW (timm's convention), for detection or segmentation necks.

        ``indices``: which stages (default all; negative counts from the end). Returns the list of maps,
        or with ``intermediates_only=False`` the final features (as ``forward_features``) and the list.
        Strides and channels are in ``feature_info``.
        """
        n = len(self.stages)
        take = sorted({i % n for i in (range(n) if indices is None else indices)})
        maps = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in take:
                maps.append(x.permute(0, 3, 1, 2).contiguous())
            if intermediates_only and i == take[-1]:
                return maps
        return maps if intermediates_only else (x.permute(0, 3, 1, 2), maps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> features (B, C_last, H/stride, W/stride), NCHW like ``features_only``'s maps."""
        return self.stages(self.stem(x)).permute(0, 3, 1, 2)  # B,C,H,W (a view of the channels-last map)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the NCHW features of ``forward_features`` and classify (or return the pooled features)."""
        if self.pool == "mean":
            x = x.mean(dim=(2, 3))  # B,C
        else:
            x = self.avgpool(x).flatten(1)  # B,C
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (0 removes it)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_weights(self.head)


def _init_weights(m: nn.Module) -> None:
    """Official SMT init: linear trunc-normal(0.02) with zero bias, conv normal(0, sqrt(2/fan_out))."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class FeatureNet(nn.Module):
    """A backbone: the network without its head, returning every (or the chosen) stage's NCHW map."""

    def __init__(self, net: HybridNet, out_indices: Optional[Sequence[int]] = None):
        super().__init__()
        n = len(net.stages)
        self.out_indices = sorted({i % n for i in (range(n) if out_indices is None else out_indices)})
        net.reset_classifier(0)
        self.net = net
        self.feature_info = [net.feature_info[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.forward_intermediates(x, self.out_indices, intermediates_only=True)


def build(spec, num_classes: Optional[int] = None, *, features_only: bool = False,
          out_indices: Optional[Sequence[int]] = None):
    """Build the PyTorch model of a spec (a NetSpec, a YAML path or a preset name).

    ``features_only=True`` gives a :class:`FeatureNet` backbone (timm's convention): its forward returns
    the NCHW maps of the stages in ``out_indices`` (default all), described by ``feature_info``.
    """
    from ..spec.io import load_spec

    net = HybridNet(load_spec(spec), num_classes)
    return FeatureNet(net, out_indices) if features_only else net
