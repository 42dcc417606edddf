"""Presets and the 42 SMT ablation readings: exact parameter counts, forward/backward at proxy sizes."""
from __future__ import annotations

import pytest
import torch

import archspace
from archspace.spec.official import smt_variant_from_delta
from conftest import n_params

PRESET_REFERENCE = {
    "smt_t": "smt_t", "smt_s": "smt_s", "smt_b": "smt_b", "smt_l": "smt_l", "smt_l_layerscale": "smt_l_layerscale",
    "efficientmod_xxs": "efficientmod_xxs", "efficientmod_xs": "efficientmod_xs",
    "efficientmod_s": "efficientmod_s", "efficientmod_s_conv": "efficientmod_s_conv",
}


def meta_params(spec) -> int:
    with torch.device("meta"):
        return n_params(archspace.build(spec))


@pytest.mark.parametrize("name", sorted(PRESET_REFERENCE))
def test_preset_params_exact(name, reference_counts):
    assert meta_params(archspace.load_spec(name)) == reference_counts["presets"][PRESET_REFERENCE[name]]["params"]


def test_smt_m_readings(reference_counts):
    printed = reference_counts["smt_m"]["candidates"]["[4, 4, 4, 2]"]["params"]
    narrowed = reference_counts["smt_m"]["alternative_dims"]["dims=[64, 128, 256, 384] mlp=[4, 4, 4, 2] depths=[1, 1, 4, 1]"]["params"]
    assert meta_params(archspace.load_spec("smt_m")) == printed == 7_854_504
    assert meta_params(archspace.load_spec("smt_m_6p5m")) == narrowed == 6_508_200
    assert round(narrowed / 1e6, 1) == 6.5


def test_all_42_ablation_readings_params_exact(reference_counts):
    rows = reference_counts["smt_ablations"]
    assert len(rows) == 42
    for row in rows:
        spec = smt_variant_from_delta(row["cfg_delta"], name=row["label"])
        assert meta_params(spec) == row["params"], row["label"]


def test_presets_equal_official_constructor_specs():
    smt = dict(embed_dims=[64, 128, 256, 512], ca_num_heads=[4, 4, 4, -1], sa_num_heads=[-1, -1, 8, 16],
               qkv_bias=True, ca_attentions=[1, 1, 1, 0], expand_ratio=2)
    assert archspace.load_spec("smt_t") == archspace.spec_from_official(
        "smt", name="smt_t", mlp_ratios=[4, 4, 4, 2], depths=[2, 2, 8, 1], head_conv=3, **smt)
    assert archspace.load_spec("smt_b") == archspace.spec_from_official(
        "smt", name="smt_b", mlp_ratios=[8, 6, 4, 2], depths=[4, 6, 28, 2], head_conv=7, **smt)
    ratios = [[1, 6] * 8] * 4
    assert archspace.load_spec("efficientmod_s") == archspace.spec_from_official(
        "efficientmod", name="efficientmod_s", embed_dim=[32, 64, 144, 312], depths=[4, 4, 8, 4],
        attention_depth=[0, 0, 4, 4], mlp_ratio=ratios, conv_group_dim=ratios, att_ratio=[4, 4, 4, 5],
        context_size=[[7] * 16] * 4, patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_pad=[3, 1, 1, 1],
        use_layerscale=True)


@pytest.mark.parametrize("name", archspace.preset_names())
def test_preset_forward_backward_small_images(name):
    torch.manual_seed(0)
    model = archspace.build(name, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 1, 1)  # NCHW, as features_only's maps


@pytest.mark.parametrize("size", [32, 64, 96, 224])
def test_input_sizes(size):
    model = archspace.build("smt_m_6p5m", num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 7)
        assert model.forward_features(torch.randn(1, 3, size, size)).shape == (1, 384, size // 32, size // 32)


def test_model_interface():
    model = archspace.build("efficientmod_xxs")
    assert model.num_classes == 1000
    x = torch.randn(1, 3, 64, 64)
    pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pre.shape == (1, 256)
    model.reset_classifier(5)
    assert model(x).shape == (1, 5)
    model.reset_classifier(0)
    assert model(x).shape == (1, 256)
    assert archspace.build("smt_t", num_classes=3).head.out_features == 3


def test_drop_path_schedule():
    spec = archspace.load_spec("smt_t").model_copy(update={"drop_path_rate": 0.2})
    rates = [r for stage in spec.drop_path_rates() for r in stage]
    assert len(rates) == 13 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    model = archspace.build(spec)
    assert model.stages[3].blocks[0].drop_path.p == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["smt_t", "efficientmod_xxs"])
def test_dense_prediction_features_nchw_at_strides_4_to_32(name):
    backbone = archspace.build(name, features_only=True).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = backbone(x)
    spec = archspace.load_spec(name)
    assert [f["reduction"] for f in backbone.feature_info] == [4, 8, 16, 32]
    assert [f["num_chs"] for f in backbone.feature_info] == [s.width for s in spec.stages]
    assert [tuple(m.shape) for m in maps] == [(1, s.width, 64 // r, 96 // r) for s, r in zip(spec.stages, (4, 8, 16, 32))]
    net = archspace.build(name).eval()
    net.load_state_dict({k: v for k, v in backbone.net.state_dict().items()}, strict=False)
    with torch.no_grad():  # the last map is the classifier's features, in NCHW
        assert torch.equal(net.forward_features(x), maps[-1])
        two = archspace.build(name, features_only=True, out_indices=(1, -1))
        two.load_state_dict(backbone.state_dict())
        assert [m.shape[1] for m in two.eval()(x)] == [spec.stages[1].width, spec.stages[3].width]
