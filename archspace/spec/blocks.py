"""Block specs: SMT's scale-aware modulation (sam), EfficientMod (effmod) and self-attention (msa).

Each block spec holds only its own fields; checks that need the stage width live in ``check``.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from ._base import MAX_INT, Eps, IntTuple, NonNegFloat, PosFloat, PosInt, Ratio, Spec, _to_tuple

Aggregation = Literal["saa", "ibn", "linear2", "linear1", "none"]
Split = Literal["even", "front", "last"]


def default_kernel_sizes(heads: int) -> tuple[int, ...]:
    """SMT's MHMC kernels: 3, 5, 7, ... one per head."""
    if heads > MAX_INT:
        raise ValueError(f"heads: {heads} is more than {MAX_INT} (use at most the stage width)")
    return tuple(3 + 2 * i for i in range(heads))


def head_channels(width: int, heads: int, split: str) -> tuple[int, ...]:
    """Channels per MHMC head: ``even`` (width/heads each), ``front`` (np.array_split) or ``last``."""
    if split == "front":
        base, rem = divmod(width, heads)
        return tuple(base + (1 if i < rem else 0) for i in range(heads))
    base = width // heads
    sizes = [base] * heads
    sizes[-1] += width - base * heads
    return tuple(sizes)


def saa_groups(width: int, heads: int) -> int:
    """Groups of SAA's first 1x1 conv: width/heads, or the largest divisor of width <= width//heads."""
    limit = max(width // heads, 1)
    return max(d for d in range(1, limit + 1) if width % d == 0)


def _odd_kernels(field: str, sizes: tuple[int, ...]) -> None:
    for k in sizes:
        if k <= 0 or k % 2 == 0:
            raise ValueError(f"{field}: kernel size {k} must be odd and positive (use 3, 5, 7, ...)")


class SAMBlock(Spec):
    """SMT scale-aware modulation: MHMC (per-head depth-wise kernels) + aggregation modulating v, then the detail-specific FFN."""

    kind: Literal["sam"] = "sam"
    heads: PosInt = 4
    kernel_sizes: IntTuple = ()
    split: Split = "even"
    aggregation: Aggregation = "saa"
    expand_ratio: Annotated[int, Field(gt=0, le=64)] = 2
    mlp_ratio: Ratio = 4.0
    qkv_bias: bool = True
    layer_scale: Optional[PosFloat] = None
    norm_eps: Eps = 1e-6

    @model_validator(mode="before")
    @classmethod
    def _fill_kernels(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("kernel_sizes"):
            heads = data.get("heads", 4)
            if isinstance(heads, int) and not isinstance(heads, bool) and 0 < heads <= MAX_INT:
                data = {**data, "kernel_sizes": default_kernel_sizes(heads)}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SAMBlock":
        if len(self.kernel_sizes) != self.heads:
            raise ValueError(
                f"kernel_sizes: {len(self.kernel_sizes)} kernel sizes for {self.heads} heads "
                f"(give one per head, e.g. {list(default_kernel_sizes(self.heads))})"
            )
        _odd_kernels("kernel_sizes", self.kernel_sizes)
        return self

    def check(self, width: int) -> Optional[str]:
        """Problems that need the stage width, as 'field: message (fix)'."""
        if self.heads > width:
            return f"heads: {self.heads} heads exceed width {width} (use at most {width} heads)"
        if self.split == "even" and width % self.heads:
            return f"heads: {self.heads} does not divide width {width} (use split: front)"
        if int(width * self.mlp_ratio) < 1:
            return f"mlp_ratio: {self.mlp_ratio} gives an empty hidden layer at width {width}"
        return None


class EffModBlock(Spec):
    """EfficientMod block: LN, context f -> depth-wise conv + GELU -> g, times the expanded value fc1, then fc2; layer-scaled residual."""

    kind: Literal["effmod"] = "effmod"
    mlp_ratio: Annotated[int, Field(gt=0, le=64)] = 6
    kernel_size: PosInt = 7
    layer_scale: Optional[PosFloat] = 1e-4
    norm_eps: Eps = 1e-5
    context: Annotated[tuple[Literal["f", "conv", "g"], ...], BeforeValidator(_to_tuple)] = ("f", "conv", "g")
    fusion: Literal["mul", "sum"] = "mul"

    @model_validator(mode="after")
    def _check(self) -> "EffModBlock":
        _odd_kernels("kernel_size", (self.kernel_size,))
        if len(set(self.context)) != len(self.context) or list(self.context) != sorted(self.context, key=["f", "conv", "g"].index):
            raise ValueError("context: list each of f, conv, g at most once, in that order (EfficientMod Table 5 ablation)")
        return self

    def check(self, width: int) -> Optional[str]:
        """No width-dependent constraints."""
        return None


_MSA_DEFAULTS = {
    "smt": {"qkv_bias": True, "min_head_dim": 0, "norm_eps": 1e-6, "mlp_ratio": 4.0},
    "vit": {"qkv_bias": False, "min_head_dim": 32, "norm_eps": 1e-5, "mlp_ratio": 4.0},
}


class MSABlock(Spec):
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
            return f"min_head_dim: SMT attention needs head_dim = width // heads (set min_head_dim: 0)"
        if int(width * self.mlp_ratio) < 1:
            return f"mlp_ratio: {self.mlp_ratio} gives an empty hidden layer at width {width}"
        return None


BlockSpec = Annotated[Union[SAMBlock, EffModBlock, MSABlock], Field(discriminator="kind")]
BLOCK_SPECS: dict[str, type] = {"sam": SAMBlock, "effmod": EffModBlock, "msa": MSABlock}
