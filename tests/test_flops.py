"""Exact MACs of small hand-built modules under every convention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archspace.measure import CONVENTIONS, FlopsRecord, count_flops, count_full_macs, profile_flops


class ConvLinearNet(nn.Module):
    """Conv3x3/s2 (bias) -> BN -> ReLU -> grouped 1x1 conv (no bias) -> avg pool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.group = nn.Conv2d(8, 16, 1, groups=4, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group(F.relu(self.bn(self.conv(x))))  # (1,3,16,16) -> (1,16,8,8)
        return self.fc(self.pool(x).flatten(1))  # (1,10)


# conv: out 8x8x8 = 512 elements, 3*3*3 MACs each, + 512 for the bias
CONV = 512 * 27 + 512
# grouped 1x1: out 16x8x8 = 1024 elements, 8/4 = 2 input channels each, no bias
GROUP = 1024 * 2
FC = 16 * 10 + 10


def test_conv_linear_net_exact() -> None:
    macs = count_flops(ConvLinearNet(), (1, 3, 16, 16))
    assert macs == {
        "smt-paper": CONV + GROUP + FC,
        # fvcore: no biases; eval BatchNorm = 2 per element; adaptive_avg_pool2d = 1 per input
        "fvcore": 512 * 27 + 512 * 2 + GROUP + 16 * 64 + 16 * 10,
        "full": CONV + GROUP + FC,
    }


def test_batch_scales_counts() -> None:
    one = count_flops(ConvLinearNet(), (1, 3, 16, 16), conventions=("smt-paper", "full"))
    three = count_flops(ConvLinearNet(), (3, 3, 16, 16), conventions=("smt-paper", "full"))
    assert three == {k: 3 * v for k, v in one.items()}


class SDPA(nn.Module):
    """Input (B, heads, L, E) used as q and k; v keeps the first ``ev`` channels."""

    def __init__(self, ev: int, explicit: bool) -> None:
        super().__init__()
        self.ev, self.explicit = ev, explicit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = x, x, x[..., : self.ev]
        if not self.explicit:
            return F.scaled_dot_product_attention(q, k, v)
        attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return attn.softmax(dim=-1) @ v


@pytest.mark.parametrize("explicit", [False, True], ids=["sdpa", "matmul"])
def test_attention_exact(explicit: bool) -> None:
    # B*heads*Lq*Lk*E + B*heads*Lq*Lk*Ev = 2*5*5*8 + 2*5*5*4
    macs = count_flops(SDPA(ev=4, explicit=explicit), (1, 2, 5, 8))
    assert macs == {"smt-paper": 0, "fvcore": 600, "full": 600}


class Modulation(nn.Module):
    """EfficientMod-style: fc2(gamma * (v(x) * ctx(x).repeat(r))) on a (B, H, W, C) input."""

    def __init__(self, dim: int = 6, ratio: int = 2) -> None:
        super().__init__()
        self.ratio = ratio
        self.ctx = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim * ratio)
        self.gamma = nn.Parameter(torch.ones(dim * ratio))
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.v(x) * self.ctx(x).repeat(1, 1, 1, self.ratio)  # (1,4,4,12)
        y = 0.5 * (self.gamma * y)  # a scalar multiply is not a MAC
        return self.fc2(y)


def test_modulation_exact() -> None:
    tokens = 4 * 4
    ctx, v, fc2 = tokens * 6 * 6, tokens * 6 * 12, tokens * 12 * 6
    biases = tokens * 6 + tokens * 12 + tokens * 6
    products = 2 * tokens * 12  # ctx * v and gamma * y
    record = profile_flops(Modulation(), (1, 4, 4, 6))
    assert record.macs == {
        "smt-paper": ctx + v + fc2 + biases,
        "fvcore": ctx + v + fc2,
        "full": ctx + v + fc2 + biases + products,
    }
    assert record.fvcore_skipped_ops == {"aten::mul": 3, "aten::repeat": 1}


class TransposedLinear(nn.Module):
    """A Linear on a non-contiguous 3-d view (aten runs it as bmm + add)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(0, 1).transpose(1, 2))  # (1,2,4,5) -> (2,5,4) -> (2,5,3)


def test_linear_bias_counted_on_non_contiguous_input() -> None:
    assert count_flops(TransposedLinear(), (1, 2, 4, 5)) == {
        "smt-paper": 10 * 4 * 3 + 10 * 3,
        "fvcore": 10 * 4 * 3,
        "full": 10 * 4 * 3 + 10 * 3,
    }


class DataDependent(nn.Module):
    """Python control flow on a tensor value: cannot run on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() >= 0:
            x = x * x
        return self.fc(x)


def test_falls_back_to_real_tensors() -> None:
    # (1,1,3,4): 3 tokens; x*x = 12 products
    assert count_full_macs(DataDependent(), (1, 1, 3, 4)) == 3 * 4 * 2 + 3 * 2 + 12
    assert count_flops(DataDependent(), (1, 1, 3, 4), conventions=["smt-paper"]) == {
        "smt-paper": 3 * 4 * 2 + 3 * 2
    }


def test_record_fields_and_determinism() -> None:
    model = ConvLinearNet()
    first = profile_flops(model, (1, 3, 16, 16))
    assert isinstance(first, FlopsRecord)
    assert first.unit == "MACs"
    assert first.resolution == (16, 16) and first.batch == 1
    assert tuple(first.macs) == CONVENTIONS
    assert set(first.counters) == set(CONVENTIONS)
    assert set(first.versions) == {"torch", "fvcore"}
    assert profile_flops(model, (1, 3, 16, 16)) == first
    with pytest.raises(ValueError):  # frozen
        first.macs = {}  # type: ignore[misc]


def test_model_state_untouched() -> None:
    model = ConvLinearNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (1, 3, 16, 16))
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())


def test_conventions_subset_and_order() -> None:
    assert list(count_flops(ConvLinearNet(), (1, 3, 16, 16), conventions=("full", "smt-paper"))) == [
        "full",
        "smt-paper",
    ]
    assert count_flops(ConvLinearNet(), (1, 3, 16, 16), conventions="smt-paper") == {
        "smt-paper": CONV + GROUP + FC
    }


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="conventions: unknown convention 'thop'"):
        count_flops(ConvLinearNet(), conventions=("thop",))
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(ConvLinearNet(), input_shape=(3, 224, 224))


def test_meta_model_counts_without_fvcore() -> None:
    with torch.device("meta"):
        model = ConvLinearNet()
    assert count_flops(model, (1, 3, 16, 16), conventions=("smt-paper", "full")) == {
        "smt-paper": CONV + GROUP + FC,
        "full": CONV + GROUP + FC,
    }
    with pytest.raises(ValueError, match="model: the 'fvcore' convention traces a real forward"):
        count_flops(model, (1, 3, 16, 16))
