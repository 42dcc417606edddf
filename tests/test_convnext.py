"""The ConvNeXt block kind: the published block's arithmetic, exact costs, and its place in a hybrid space."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archspace
from archspace.blocks.convnext import ConvNeXtSpec
from archspace.measure.complexity import BLOCK_COSTS
from archspace.search.space import base_values, load_space, spec_for
from conftest import REPO


def reference_convnext(x_nchw: torch.Tensor, block) -> torch.Tensor:
    """ConvNeXt's block as published (channels-first in and out): dwconv, permute, LN, pwconv1, GELU, pwconv2, gamma."""
    y = F.conv2d(x_nchw, block.dwconv.weight, block.dwconv.bias, padding=block.dwconv.padding, groups=x_nchw.shape[1])
    y = y.permute(0, 2, 3, 1)
    y = F.layer_norm(y, (y.shape[-1],), block.norm.weight, block.norm.bias, block.norm.eps)
    y = F.linear(F.gelu(F.linear(y, block.mlp.fc1.weight, block.mlp.fc1.bias)), block.mlp.fc2.weight, block.mlp.fc2.bias)
    y = block.gamma * y
    return x_nchw + y.permute(0, 3, 1, 2)


def test_block_equals_the_published_formulation():
    torch.manual_seed(0)
    block = archspace.BLOCKS["convnext"](ConvNeXtSpec(layer_scale=0.5), 24).double().eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 24, 9, 7, dtype=torch.float64)
    ours = block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(ours, reference_convnext(x, block), atol=1e-12)


def test_convnext_t_stage1_block_params():
    """ConvNeXt-T's first-stage block at width 96: 79,296 parameters (dw 7x7 + LN + 96->384->96 MLP + gamma)."""
    cost = BLOCK_COSTS["convnext"](ConvNeXtSpec(), 96, 56, 56)
    block = archspace.BLOCKS["convnext"](ConvNeXtSpec(), 96)
    assert cost.params == sum(p.numel() for p in block.parameters()) == 79_296
    assert cost.smt_paper == 56 * 56 * (96 * 49 + 96 + 96 * 384 + 384 + 384 * 96 + 96)


@pytest.mark.parametrize("field, value, message", [
    ("kernel_size", 6, "kernel_size: kernel size 6 must be odd and positive"),
    ("mlp_ratio", 0.0, "mlp_ratio"),
    ("layer_scale", -1.0, "layer_scale"),
])
def test_bad_fields_are_one_line_errors(field, value, message):
    data = {"name": "c", "stages": [{"width": 32, "stack": {"strategy": "sequential", "counts": {"convnext": 1}},
                                     "convnext": {field: value}}]}
    with pytest.raises(archspace.SpecError, match=message) as err:
        archspace.spec.io.spec_from_dict(data)
    assert "\n" not in str(err.value) and "stages[0]" in str(err.value)


def test_hybrid_space_samples_convnext_stages():
    space = load_space(REPO / "spaces" / "hybrid.yaml")
    values = {**base_values(space), "s1_sam": 0, "s1_effmod": 0, "s1_convnext": 2, "s2_convnext": 1}
    spec = spec_for(space, values)
    assert spec.stages[0].pattern == "CC" and "C" in spec.stages[1].pattern
    model = archspace.build(spec, num_classes=10)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
