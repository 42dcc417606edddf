"""Accuracy evaluators on real data: datasets, proxy training and zero-cost proxies.

Each name loads its submodule on first use, so ``archspace.evaluate.budget`` (the training budget)
imports without torch.
"""

from __future__ import annotations

from archspace._lazy import lazy_attributes

_LAZY = {
    "EVALUATORS": "api", "evaluate": "api",
    "ProxyNetwork": "budget", "TrainBudget": "budget",
    "DatasetMeta": "data", "DatasetNotFound": "data", "DeviceDataset": "data", "load_dataset": "data",
    "PROXIES": "proxies", "ProxyResult": "proxies", "proxy_batch": "proxies", "score": "proxies", "score_proxy": "proxies",
    "FidelityPoint": "train", "ProgressCallback": "train", "TrainEvent": "train", "TrainResult": "train",
    "train_proxy": "train",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
