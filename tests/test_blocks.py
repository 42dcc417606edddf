"""One contract for every block kind: shape, gradients to every parameter, finite, train and eval."""
from __future__ import annotations

import pytest
import torch

import archspace
import archspace.blocks

from archspace import BLOCKS
from archspace.spec.blocks import EffModSpec, MSASpec, SAMSpec, ViTSpec

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
    "vit": (ViTSpec(heads=8, mlp_ratio=4.0), 48),
    "vit-split-ls": (ViTSpec(heads=3, min_head_dim=0, layer_scale=1e-4), 48),
}


def _default_cases():
    """Every registered kind with its default spec: a new kind joins the contract suite by registering."""
    from archspace.blocks import REGISTRY

    return {f"default-{name}": (kind.spec(), 32) for name, kind in REGISTRY.items()}


CASES.update(_default_cases())


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


def test_every_registry_agrees():
    """The spec union, the builder's modules, the costs, letters, error tags and space paths all list the same kinds."""
    import typing

    from archspace.blocks import REGISTRY
    from archspace.measure.complexity import BLOCK_COSTS
    from archspace.spec.blocks import BLOCK_SPECS, BlockSpec
    from archspace.spec.errors import loc_to_path
    from archspace.spec.stacking import pattern_string

    kinds = list(REGISTRY)
    assert len(kinds) >= 3
    assert list(BLOCKS) == list(BLOCK_SPECS) == list(BLOCK_COSTS) == kinds
    union = typing.get_args(typing.get_args(BlockSpec)[0])
    assert list(union) == [REGISTRY[k].spec for k in kinds]
    letters = pattern_string(kinds)
    assert len(set(letters)) == len(kinds) and letters.isupper()
    for k in kinds:
        assert REGISTRY[k].spec.model_fields["kind"].default == k
        assert BLOCKS[k] is REGISTRY[k].module and BLOCK_COSTS[k] is REGISTRY[k].cost
        assert loc_to_path(("stages", 0, "blocks", 1, k, "norm_eps")) == "stages[0].blocks[1].norm_eps"


@pytest.mark.parametrize("kind", __import__("archspace.blocks", fromlist=["REGISTRY"]).REGISTRY)
def test_every_kind_builds_in_a_network_and_in_a_space(kind):
    """A stage of the kind builds with exact analytic params, and a space can search its fields on a base without it."""
    from archspace.measure.complexity import complexity
    from archspace.search.space import Space, base_values, spec_for
    from archspace.spec.io import spec_from_dict

    net = spec_from_dict({"name": f"one_{kind}", "num_classes": 10, "stages": [
        {"width": 32, "stack": {"strategy": "sequential", "counts": {kind: 2}}},
        {"width": 64, "downsample": {"kernel_size": 2, "stride": 2}, "stack": {"strategy": "sequential", "counts": {kind: 1}}}]})
    assert net.stages[0].pattern == archspace.blocks.REGISTRY[kind].letter * 2
    model = archspace.build(net)
    assert sum(p.numel() for p in model.parameters()) == complexity(net, 32)["params"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    space = Space.model_validate({"name": f"s_{kind}", "base": "smt_t", "evaluator": {"kind": "params"},
                                  "objectives": [{"metric": "params", "direction": "minimize"}],
                                  "params": [{"name": "eps", "path": f"stages[3].{kind}.norm_eps", "choices": [1e-6, 1e-5]},
                                             {"name": "n", "path": f"stages[3].stack.counts.{kind}", "low": 0, "high": 1}]})
    assert base_values(space) is not None  # the base is enqueued although stage 4 has no such block
    spec = spec_for(space, {"eps": 1e-5, "n": 1})
    assert kind in spec.stages[3].counts() and all(b.norm_eps == 1e-5 for b in spec.stages[3].blocks if b.kind == kind)


def test_registry_refuses_a_repeated_name_or_letter_or_a_wrong_tag():
    from dataclasses import replace

    from archspace.blocks import _registry, effmod, sam

    assert list(_registry([sam.KIND, effmod.KIND])) == ["sam", "effmod"]
    with pytest.raises(ValueError, match="letter 'S' must be one capital letter no other kind uses"):
        _registry([sam.KIND, replace(effmod.KIND, letter="S")])
    with pytest.raises(ValueError, match="'sam' is listed twice"):
        _registry([sam.KIND, sam.KIND])
    with pytest.raises(ValueError, match="its spec's kind defaults to 'effmod'"):
        _registry([replace(effmod.KIND, name="mod")])
