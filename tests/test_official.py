"""spec_from_official: every official constructor argument accepted; what cannot be represented is refused clearly."""
from __future__ import annotations

import json

import pytest

import archspace
from archspace.spec.official import EFFMOD_DEFAULTS, SMT_DEFAULTS


def test_fixture_constructor_args_are_accepted(fixtures_dir):
    for stem, family in (("smt_small_fixture", "smt"), ("effmod_small_fixture", "efficientmod")):
        meta = json.loads((fixtures_dir / f"{stem}.json").read_text())
        spec = archspace.spec_from_official(family, **meta["official_constructor_args"])
        kinds = [[b.kind for b in s.blocks] for s in spec.stages]
        expected = [[{"SAM": "sam", "MSA": "msa", "EfficientMod": "effmod", "Attention": "vit"}[k] for k in st] for st in meta["block_types"]]
        assert kinds == expected


def test_smt_defaults_match_official_signature():
    spec = archspace.spec_from_official("smt")  # SMT() with its own defaults: depths 2/2/8/1, mlp 8/6/4/2, no qkv bias
    assert [s.depth for s in spec.stages] == [2, 2, 8, 1]
    assert spec.stages[0].blocks[0].mlp_ratio == 8.0 and spec.stages[0].blocks[0].qkv_bias is False
    assert set(SMT_DEFAULTS) >= {"embed_dims", "ca_num_heads", "sa_num_heads", "mlp_ratios", "depths", "ca_attentions",
                                 "head_conv", "expand_ratio", "qkv_bias", "use_layerscale", "num_classes"}
    assert set(EFFMOD_DEFAULTS) >= {"embed_dim", "depths", "attention_depth", "mlp_ratio", "att_ratio", "context_size",
                                    "conv_group_dim", "patch_size", "patch_stride", "patch_pad", "use_layerscale", "num_classes"}


def test_layerscale_and_num_classes():
    spec = archspace.spec_from_official("smt", use_layerscale=True, layerscale_value=1e-5, num_classes=10)
    assert spec.num_classes == 10
    assert all(b.layer_scale == 1e-5 for s in spec.stages for b in s.blocks)


@pytest.mark.parametrize("family, kwargs, fragment", [
    ("smt", {"qk_scale": 0.1}, "qk_scale: 0.1 cannot be represented"),
    ("smt", {"num_stages": 3}, "num_stages: 3 cannot be represented"),
    ("smt", {"head_conv": 5}, "head_conv: 5 cannot be represented"),
    ("smt", {"attn_drop_rate": 0.1}, "attn_drop_rate: 0.1 cannot be represented"),
    ("smt", {"depths": [2, 2, 8]}, "depths: expected a list of 4 per-stage values"),
    ("smt", {"embed_dims": [64, 128, 250, 512]}, "stages[2].blocks[0].heads: 4 does not divide width 250 (use split: front)"),
    ("smt", {"windowsize": 7}, "windowsize: not an argument of the official SMT constructor"),
    ("efficientmod", {"conv_group_dim": [[1, 2]] * 4, "mlp_ratio": [[1, 6]] * 4}, "conv_group_dim[0][1]: 2 cannot be represented"),
    ("efficientmod", {"context_size": [[[3, 7]] * 2] * 4}, "cannot be represented (one context kernel per block"),
    ("efficientmod", {"bias": False}, "bias: False cannot be represented"),
    ("efficientmod", {"mlp_ratio": [[1.5, 6]] * 4, "conv_group_dim": [[1.5, 6]] * 4}, "mlp_ratio[0][0]: 1.5 cannot be represented"),
    ("resnet", {}, "family: 'resnet' is not known"),
])
def test_refusals(family, kwargs, fragment):
    base = {}
    if family == "efficientmod":
        base = dict(embed_dim=[16, 32, 48, 64], depths=[2, 2, 2, 2], mlp_ratio=[[1, 6]] * 4, conv_group_dim=[[1, 6]] * 4,
                    context_size=[[7, 7]] * 4)
    with pytest.raises(archspace.SpecError) as exc:
        archspace.spec_from_official(family, **{**base, **kwargs})
    assert fragment in str(exc.value)
