"""One contract for every block kind: shape, gradients to every parameter, finite, train and eval."""
from __future__ import annotations

import pytest
import torch

from archspace import BLOCKS
from archspace.spec.blocks import EffModSpec, MSASpec, SAMSpec

CASES = {
    "sam-saa": (SAMSpec(heads=4), 32),
    "sam-ibn": (SAMSpec(heads=2, aggregation="ibn", expand_ratio=3), 32),
    "sam-linear2": (SAMSpec(heads=1, kernel_sizes=(5,), aggregation="linear2"), 16),
    "sam-linear1": (SAMSpec(heads=4, aggregation="linear1"), 32),
    "sam-none": (SAMSpec(heads=4, aggregation="none", layer_scale=0.5), 32),
    "sam-front": (SAMSpec(heads=6, split="front"), 40),
    "sam-last": (SAMSpec(heads=6, split="last", aggregation="saa"), 40),
    "effmod-r1": (EffModSpec(mlp_ratio=1), 24),
    "effmod-r6": (EffModSpec(mlp_ratio=6, kernel_size=5), 24),
    "effmod-nols": (EffModSpec(mlp_ratio=4, layer_scale=None), 24),
    "effmod-f-only": (EffModSpec(mlp_ratio=6, context=("f",)), 24),
    "effmod-conv-g": (EffModSpec(mlp_ratio=1, context=["conv", "g"]), 24),
    "effmod-sum": (EffModSpec(mlp_ratio=6, fusion="sum"), 24),
    "msa-smt": (MSASpec(heads=4, mlp_ratio=2.0), 32),
    "msa-smt-ls": (MSASpec(heads=2, layer_scale=1e-4), 32),
    "msa-vit": (MSASpec(flavor="vit", heads=8, mlp_ratio=4.0), 48),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("hw", [(7, 7), (4, 6), (1, 1)])
def test_block_contract(name, hw):
    spec, dim = CASES[name]
    torch.manual_seed(0)
    block = BLOCKS[spec.kind](spec, dim, drop_path=0.1)
    x = torch.randn(4, *hw, dim, requires_grad=True)
    block.train()
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in block.parameters())
    block.eval()
    with torch.no_grad():
        y1, y2 = block(x), block(x)
    assert torch.equal(y1, y2)  # eval is deterministic (no drop path)
    assert torch.isfinite(y1).all()


def test_sam_interleave_matches_official_order():
    """Channel g of head i lands at g*heads + i before aggregation (the official reshape + cat)."""
    spec = SAMSpec(heads=4, aggregation="none")
    block = BLOCKS["sam"](spec, 16).mixer
    torch.manual_seed(0)
    x = torch.randn(1, 5, 5, 16)
    s = block.s(x).permute(0, 3, 1, 2)
    heads = [conv(p) for conv, p in zip(block.local_convs, s.split(4, dim=1))]
    official = None
    for h in heads:  # the official loop: reshape(B, C/h, 1, H, W) and cat on dim 2
        h = h.reshape(1, 4, 1, 5, 5)
        official = h if official is None else torch.cat([official, h], 2)
    modulator = official.reshape(1, 16, 5, 5).permute(0, 2, 3, 1)
    expected = block.proj(modulator * block.v(x))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_uneven_interleave_is_round_robin():
    from archspace.blocks.sam import interleave_order

    assert interleave_order((2, 2)) == [0, 2, 1, 3]
    assert interleave_order((3, 2)) == [0, 3, 1, 4, 2]
