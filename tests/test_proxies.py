"""Zero-cost proxies: finite scores on real Fashion-MNIST, discrimination, and no side effects."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from archspace.evaluate.data import FASHION_MNIST_ROOT
from archspace.evaluate.proxies import PROXIES, ProxyResult, count_macs, proxy_batch, score, score_proxy

pytestmark = pytest.mark.skipif(
    not (Path(FASHION_MNIST_ROOT) / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


def conv_net(width: int = 16, depth: int = 2, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    """Conv-BN-act stack, pool, linear."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), act()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), act()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


class TokenMixer(nn.Module):
    """Patchify conv, LayerNorm + GELU MLP over tokens, mean pool, linear: a LayerNorm model."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)  # B, N, C
        t = t + self.mlp(self.norm(t))
        return self.head(t.mean(1))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return proxy_batch(size=64, resolution=32)


def test_proxy_batch_is_real_balanced_and_seeded(batch):
    x, y = batch
    assert x.shape == (64, 3, 32, 32) and y.shape == (64,)
    assert torch.bincount(y, minlength=10).min() >= 6
    x2, y2 = proxy_batch(size=64, resolution=32)
    assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
@pytest.mark.parametrize("model_fn", [conv_net, TokenMixer], ids=["bn-cnn", "ln-mixer"])
def test_each_proxy_is_finite_and_leaves_the_model_unchanged(proxy, model_fn, batch):
    torch.manual_seed(0)
    model = model_fn()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = score_proxy(model, proxy, batch)
    assert isinstance(result, ProxyResult) and result.proxy == proxy
    assert math.isfinite(result.score)
    assert result.batch_size == 64 and result.resolution == 32
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # weights and BN statistics
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_different_architectures_get_different_scores(proxy, batch):
    torch.manual_seed(0)
    small, large = conv_net(8, 2), conv_net(32, 4)
    assert score(small, proxy, batch) != score(large, proxy, batch)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_scores_are_deterministic(proxy, batch):
    torch.manual_seed(0)
    model = conv_net()
    assert score(model, proxy, batch) == score(model, proxy, batch)


def test_synflow_is_data_independent_and_positive(batch):
    torch.manual_seed(0)
    model = TokenMixer()
    x, y = batch
    assert score(model, "synflow", batch) == score(model, "synflow", (x.flip(0), y.flip(0)))
    assert score(model, "synflow", batch) > 0


def test_params_and_flops_baselines(batch):
    model = conv_net(16, 2)
    assert score(model, "params", batch) == sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (3, 32, 32))
    # conv1: 16x16x16 outputs x 27; conv2: 16x16x16 x 144; linear: 10 x 16
    assert macs == 16 * 16 * 16 * 27 + 16 * 16 * 16 * 144 + 10 * 16
    assert score(model, "flops", batch) >= macs


def test_naswot_needs_activations(batch):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    model(batch[0][:1])
    with pytest.raises(ValueError, match="activation"):
        score(model, "naswot", batch)


def test_unknown_proxy_and_bad_batch(batch):
    with pytest.raises(ValueError, match="proxy='zen'"):
        score(conv_net(), "zen", batch)
    with pytest.raises(ValueError, match="batch"):
        score(conv_net(), "snip", (batch[0][0], batch[1]))


def test_default_batch():
    result = score_proxy(conv_net(), "naswot")
    assert result.batch_size == 64 and result.resolution == 32


def test_evaluate_entry_point_runs_proxies():
    from archspace.evaluate import EVALUATORS, evaluate

    assert EVALUATORS[0] == "train" and set(PROXIES) <= set(EVALUATORS)
    result = evaluate(conv_net, "naswot")
    assert isinstance(result, ProxyResult) and result.proxy == "naswot" and math.isfinite(result.score)
    with pytest.raises(ValueError, match="evaluator='zen'"):
        evaluate(conv_net, "zen")


def test_params_and_flops_score_the_full_network_and_every_result_says_what_ran():
    import archspace
    from archspace.evaluate import TrainBudget, evaluate
    from archspace.measure.complexity import complexity
    from archspace.measure.flops import count_flops

    spec = archspace.load_spec("efficientmod_xxs")
    full = archspace.build(spec)
    result = evaluate(spec, "params")  # the CPU default trains a half-width, stride-2 network; params is the spec's own
    assert result.score == complexity(spec)["params"] == sum(p.numel() for p in full.parameters())
    assert result.score > 4e6 and result.network is not None
    assert (result.network.width_mult, result.network.stem_stride, result.network.num_classes) == (None, 4, 1000)
    assert result.network.params == result.network.full_params == result.score
    flops = evaluate(spec, "flops", budget=TrainBudget.cpu_default(resolution=64))
    assert flops.resolution == 64 and flops.score == count_flops(full, (1, 3, 64, 64), ("smt-paper",))["smt-paper"]
    snip = evaluate(spec, "snip")  # a zero-cost proxy scores the network the budget trains, with the dataset's head
    assert (snip.network.width_mult, snip.network.stem_stride, snip.network.num_classes) == (0.5, 2, 10)
    assert snip.network.params < snip.network.full_params == result.score
    assert snip.describe().startswith("snip on 64 images at 32 px on cpu; scored 0.5x width, stem stride 2, 32 px, 10 classes: ")
