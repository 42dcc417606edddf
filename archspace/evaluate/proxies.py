"""Zero-cost accuracy proxies scored at initialisation on one real minibatch.

- synflow: Tanaka et al., "Pruning neural networks without any data by iteratively conserving
  synaptic flow", NeurIPS 2020; as a NAS proxy: Abdelfattah et al., "Zero-Cost Proxies for
  Lightweight NAS", ICLR 2021 (sum over conv/linear weights of |w * dR/dw|, R = sum of the output
  of the |w|-linearised network on an all-ones input, in double precision, eval mode).
- snip: Lee et al., ICLR 2019 (sum |w * dL/dw|); grad_norm: Abdelfattah et al. 2021
  (sum over layers of ||dL/dw||).
- naswot: Mellor et al., "Neural Architecture Search without Training", ICML 2021 (log-determinant
  of the Hamming-similarity kernel of binary activation codes; sign of every ReLU/GELU input).
- params and flops: the trivial baselines every proxy must beat.

Scoring never changes the model: parameters, buffers, gradients, train/eval mode and the global
RNG are as before afterwards.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from archspace.evaluate.budget import ProxyNetwork
from archspace.vocab import Proxy

if TYPE_CHECKING:
    from archspace.evaluate.data import DeviceDataset

__all__ = ["PROXIES", "Proxy", "ProxyResult", "count_macs", "proxy_batch", "proxy_data", "score", "score_proxy"]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.Mish)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


class ProxyResult(BaseModel):
    """One proxy score with the protocol it was measured under."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy: str
    score: float
    time_s: float
    batch_size: int
    resolution: int
    device: str
    seed: int
    network: ProxyNetwork | None = Field(None, description="what was scored (set by archspace.evaluate.evaluate)")

    def describe(self) -> str:
        """One line: the proxy, its batch and the network scored ('params of 0.5x width, ...: 1.31M params')."""
        line = f"{self.proxy} on {self.batch_size} images at {self.resolution} px on {self.device}"
        return line + (f"; scored {self.network.describe()}" if self.network is not None else "")


def proxy_data(
    dataset: str = "fashion-mnist",
    *,
    size: int = 64,
    resolution: int = 32,
    channels: int = 3,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> "DeviceDataset":
    """The seeded, class-balanced test-split sample a proxy scores on, with its dataset's meta (class count)."""
    from archspace.evaluate.data import DeviceDataset

    return DeviceDataset.load(dataset, "test", root=root, subset=size, seed=seed,
                              resolution=resolution, channels=channels, device=device)


def proxy_batch(
    dataset: str = "fashion-mnist",
    *,
    size: int = 64,
    resolution: int = 32,
    channels: int = 3,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, class-balanced, normalized real minibatch (images B,C,R,R float32, labels B) from the test split."""
    data = proxy_data(dataset, size=size, resolution=resolution, channels=channels, seed=seed, root=root, device=device)
    return data.prepare(data.images), data.labels


@contextmanager
def _preserved(model: nn.Module, seed: int) -> Iterator[None]:
    """Restore buffers (BN running stats), train/eval mode, .grad and the global RNG after the block."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.grad for p in model.parameters()}
    devices = [d for d in {p.device for p in model.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=[d.index or 0 for d in devices]):
        torch.manual_seed(seed)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, b in model.named_buffers():
                    if name in buffers:
                        b.copy_(buffers[name])
            for m, training in modes.items():
                m.training = training
            for p, g in grads.items():
                p.grad = g


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    """Conv and linear layers (the layers the gradient proxies sum over)."""
    layers = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
    if not layers:
        raise ValueError("the model has no Conv/Linear layers; gradient proxies need weighted layers")
    return layers


def _loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[nn.Module], tuple[torch.Tensor, ...]]:
    """Gradients of the cross-entropy loss w.r.t. conv/linear weights, without touching .grad."""
    layers = _weighted_layers(model)
    weights = [m.weight for m in layers]
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return layers, tuple(torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads, strict=True))


def _snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP: sum over conv/linear weights of |w * dL/dw|."""
    layers, grads = _loss_grads(model, x, y)
    return float(sum((m.weight.detach() * g).abs().sum().double() for m, g in zip(layers, grads, strict=True)))


def _grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """grad_norm: sum over conv/linear layers of the L2 norm of dL/dw."""
    _, grads = _loss_grads(model, x, y)
    return float(sum(g.double().norm() for g in grads))


def _synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SynFlow on a double-precision |w| copy in eval mode with an all-ones input; the model is not touched."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for name, b in net.named_buffers():
            if b.is_floating_point() and "running_var" not in name:
                b.abs_()
    layers = _weighted_layers(net)
    weights = [m.weight for m in layers]
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    out = net(ones).sum()
    grads = torch.autograd.grad(out, weights, allow_unused=True)
    total = 0.0
    for w, g in zip(weights, grads, strict=True):
        if g is not None:
            total += float((w.detach() * g).abs().sum())
    return total


def _naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """NASWOT: log|det K| with K[i,j] = number of activation units where samples i and j agree in sign."""
    acts = [m for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    if not acts:
        raise ValueError("naswot needs activation modules (nn.ReLU/nn.GELU/...); the model has none")
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        code = (inputs[0].detach().reshape(n, -1) > 0).float()
        # agreements = c c^T + (1 - c)(1 - c)^T, exact in float32 per layer (counts < 2**24)
        agree = code @ code.t() + (1 - code) @ (1 - code).t()
        kernel.add_(agree.double())

    handles = [m.register_forward_pre_hook(hook) for m in acts]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def _params(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Number of trainable parameters."""
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs (multiply-accumulates) per image at the batch's resolution, in archspace.measure's 'smt-paper' convention."""
    from archspace.measure.flops import count_flops

    return float(count_flops(model, (1, *x.shape[1:]), ("smt-paper",))["smt-paper"])


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per image of conv and linear layers, counted with forward hooks (batch 1)."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        out = output.numel() // output.shape[0] if output.dim() > 1 else output.numel()
        if isinstance(module, nn.Linear):
            total += out * module.in_features
        else:
            k = math.prod(module.kernel_size)
            total += out * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _WEIGHTED)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
    return total


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": _synflow,
    "snip": _snip,
    "grad_norm": _grad_norm,
    "naswot": _naswot,
    "params": _params,
    "flops": _flops,
}


def score(
    model: nn.Module,
    proxy: str,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    seed: int = 0,
) -> float:
    """Score a model with one zero-cost proxy on a (images, labels) batch; higher is better; model unchanged."""
    return score_proxy(model, proxy, batch, seed=seed).score


def score_proxy(
    model: nn.Module,
    proxy: str,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    seed: int = 0,
) -> ProxyResult:
    """Score a model with one proxy and return a ProxyResult (default batch: 64 Fashion-MNIST images at 32 px)."""
    fn = PROXIES.get(proxy)
    if fn is None:
        raise ValueError(f"proxy={proxy!r} is not known; use one of {', '.join(PROXIES)}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if batch is None:
        batch = proxy_batch(seed=seed, device=device)
    x, y = batch
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"batch must be (images B,C,H,W, labels B); got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.to(device), y.to(device)
    t0 = time.perf_counter()
    with _preserved(model, seed):
        value = fn(model, x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    return ProxyResult(proxy=proxy, score=value, time_s=elapsed, batch_size=x.shape[0],
                       resolution=x.shape[-1], device=str(device), seed=seed)
