"""The block-spec union, derived from the registry of block kinds (``archspace.blocks``).

Each kind's spec lives beside its module and cost in ``archspace/blocks/<kind>.py``; this module
only assembles the discriminated union that stage specs hold.
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from ..blocks import REGISTRY
from ..blocks.effmod import EffModSpec
from ..blocks.msa import MSASpec
from ..blocks.sam import SAMSpec, default_kernel_sizes, head_channels, saa_groups

BLOCK_SPECS: dict[str, type] = {name: kind.spec for name, kind in REGISTRY.items()}
BlockSpec = Annotated[Union[tuple(BLOCK_SPECS.values())], Field(discriminator="kind")]

__all__ = ["BLOCK_SPECS", "BlockSpec", "EffModSpec", "MSASpec", "SAMSpec", "default_kernel_sizes", "head_channels",
           "saa_groups"]
