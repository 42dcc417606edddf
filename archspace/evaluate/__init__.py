"""Accuracy evaluators on real data: datasets, proxy training and zero-cost proxies."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from archspace.evaluate.data import DatasetMeta, DatasetNotFound, DeviceDataset, load_dataset
from archspace.vocab import EVALUATORS
from archspace.evaluate.proxies import PROXIES, ProxyResult, proxy_batch, score, score_proxy
from archspace.evaluate.train import (
    FidelityPoint,
    ProgressCallback,
    TrainBudget,
    TrainEvent,
    TrainResult,
    train_proxy,
)

__all__ = [
    "EVALUATORS",
    "PROXIES",
    "DatasetMeta",
    "DatasetNotFound",
    "DeviceDataset",
    "FidelityPoint",
    "ProxyResult",
    "TrainBudget",
    "TrainEvent",
    "TrainResult",
    "evaluate",
    "load_dataset",
    "proxy_batch",
    "score",
    "score_proxy",
    "train_proxy",
]


def evaluate(
    model: nn.Module | Callable[[], nn.Module],
    evaluator: str = "train",
    *,
    budget: TrainBudget | None = None,
    dataset: str = "fashion-mnist",
    dataset_root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    batch_size: int = 64,
) -> TrainResult | ProxyResult:
    """Run one evaluator ('train' or a zero-cost proxy) on a model or factory; the one entry point for CLI and search."""
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator={evaluator!r} is not known; use one of {', '.join(EVALUATORS)}")
    if budget is None:
        budget = TrainBudget.for_device(device)
        from archspace.spec.net import NetSpec

        if not isinstance(model, NetSpec):  # a built model cannot take the proxy's stem stride or width
            budget = budget.model_copy(update={"stem_stride": None, "width_mult": None})
    if evaluator == "train":
        return train_proxy(model, budget, dataset, dataset_root=dataset_root, device=device, progress=progress)
    from archspace.evaluate.train import _as_factory, input_channels

    model = _as_factory(model, budget)
    if not isinstance(model, nn.Module):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(budget.seed)
            model = model()
    model = model.to(device)
    batch = proxy_batch(dataset, size=batch_size, resolution=budget.resolution, channels=input_channels(model),
                        seed=budget.seed, root=dataset_root, device=device)
    return score_proxy(model, evaluator, batch, seed=budget.seed)
