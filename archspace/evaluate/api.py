"""The one entry point of the evaluators: proxy training or a zero-cost proxy, on a spec, a module or a factory."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from archspace.evaluate.budget import TrainBudget
from archspace.evaluate.proxies import ProxyResult, proxy_data, score_proxy
from archspace.evaluate.train import (ProgressCallback, TrainResult, check_network_knobs, default_budget, input_channels,
                                      instantiate, network_record, proxy_spec, train_proxy)
from archspace.spec.net import NetSpec
from archspace.vocab import EVALUATORS

__all__ = ["EVALUATORS", "evaluate"]

_COSTS = ("params", "flops")  # proxies that score the network as specified, not the proxy-trained one


def evaluate(
    model: NetSpec | nn.Module | Callable[[], nn.Module],
    evaluator: str = "train",
    *,
    budget: TrainBudget | None = None,
    dataset: str = "fashion-mnist",
    dataset_root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    batch_size: int = 64,
) -> TrainResult | ProxyResult:
    """Run one evaluator ('train' or a zero-cost proxy) on a spec, model or factory; the one entry point for CLI and search.

    ``budget`` None: the device's default. A spec's head takes the dataset's class count. The
    ``params`` and ``flops`` proxies score the spec's own network (its widths, stem and classes; flops
    at the budget's resolution); the others score the network the budget trains. The result's
    ``network`` records which.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator={evaluator!r} is not known; use one of {', '.join(EVALUATORS)}")
    budget = budget if budget is not None else default_budget(model, device)
    if evaluator == "train":
        return train_proxy(model, budget, dataset, dataset_root=dataset_root, device=device, progress=progress)
    check_network_knobs(model, budget)
    spec = model if isinstance(model, NetSpec) else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(budget.seed)
        module = instantiate(model) if spec is None else None
    channels = spec.in_chans if spec is not None else input_channels(module)
    data = proxy_data(dataset, size=batch_size, resolution=budget.resolution, channels=channels, seed=budget.seed,
                      root=dataset_root, device=device)
    classes = data.meta.num_classes
    if spec is not None:
        from archspace.nn.build import build

        run = spec if evaluator in _COSTS else proxy_spec(spec, budget, classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(budget.seed)
            module = build(run)
        classes = run.num_classes
    module = module.to(device)
    result = score_proxy(module, evaluator, (data.prepare(data.images), data.labels), seed=budget.seed)
    width = None if evaluator in _COSTS else budget.width_mult
    return result.model_copy(update={"network": network_record(module, spec, width, budget.resolution, classes)})
