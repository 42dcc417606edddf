"""The block-spec union, derived from the registry of block kinds (``archspace.blocks``).

Each kind's spec lives beside its module and cost in ``archspace/blocks/<kind>.py``; this module
assembles the discriminated union that stage specs hold, and reads the one retired block form:
``{kind: msa, flavor: smt|vit}`` from before SMT's and EfficientMod's attention became two kinds.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field

from ..blocks import REGISTRY
from ..blocks.effmod import EffModSpec
from ..blocks.msa import MSASpec
from ..blocks.sam import SAMSpec, default_kernel_sizes, head_channels, saa_groups
from ..blocks.vit import ViTSpec


def upgrade_retired(data: Any) -> Any:
    """``{kind: msa, flavor: vit, ...}`` -> ``{kind: vit, ...}``; ``flavor: smt`` and SMT's ``min_head_dim`` dropped."""
    if not isinstance(data, dict) or data.get("kind") != "msa" or not {"flavor", "min_head_dim"} & set(data):
        return data
    data = dict(data)
    flavor = data.pop("flavor", "smt")
    if flavor == "vit":
        return {**data, "kind": "vit"}
    if flavor != "smt":
        raise ValueError(f"flavor: {flavor!r} is not smt or vit (or drop it: kind msa is SMT's attention, kind vit EfficientMod's)")
    if type(data.get("min_head_dim")) is int and data["min_head_dim"] >= 0:
        del data["min_head_dim"]  # SMT's heads always split the width: the retired field changed nothing
    return data


BLOCK_SPECS: dict[str, type] = {name: kind.spec for name, kind in REGISTRY.items()}
BlockSpec = Annotated[Union[tuple(BLOCK_SPECS.values())], Field(discriminator="kind"), BeforeValidator(upgrade_retired)]

__all__ = ["BLOCK_SPECS", "BlockSpec", "EffModSpec", "MSASpec", "SAMSpec", "ViTSpec", "default_kernel_sizes",
           "head_channels", "saa_groups", "upgrade_retired"]
