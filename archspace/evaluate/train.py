"""Proxy training: a short, seeded, budgeted training run that returns a test-accuracy record.

The loop keeps the data on the device (:class:`archspace.evaluate.data.DeviceDataset`), never
synchronises with the host inside a step on GPU (the loss is accumulated on the device and read
once per epoch), and evaluates at increasing epoch budgets (multi-fidelity, e.g. 1, 3, 9) so a
search can stop poor trials early (successive halving / Hyperband style: one run, one schedule).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Literal, TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from archspace.evaluate.data import DeviceDataset

if TYPE_CHECKING:
    from archspace.spec.net import NetSpec

__all__ = ["FidelityPoint", "ProgressCallback", "TrainBudget", "TrainEvent", "TrainResult", "train_proxy"]


class TrainBudget(BaseModel):
    """How much training a proxy run gets: data, resolution, optimizer, schedule, precision, seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(3, ge=1)
    train_subset: int | None = Field(5000, ge=10, description="class-balanced train subset; None = all")
    test_subset: int | None = Field(2000, ge=10, description="class-balanced test subset; None = all")
    resolution: int = Field(32, ge=8)
    width_mult: float | None = Field(None, gt=0, le=4, description="train the spec with its stage widths scaled "
                                     "(kept divisible by the heads); None = as the spec")
    stem_stride: int | None = Field(None, ge=1, le=8, description="train the spec with its stem at this stride "
                                    "(2 keeps 224 px feature-map sizes / 7 on 32 px inputs); None = as the spec")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.3, ge=0, description="linear warm-up length for the cosine schedule")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    augment: bool = True
    grad_clip: float | None = Field(5.0, gt=0)
    bf16: bool = Field(True, description="bf16 autocast; applied on CUDA only")
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads inside the run; None = unchanged")

    @model_validator(mode="after")
    def _check(self) -> TrainBudget:
        if self.schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be below epochs={self.epochs}")
        return self

    @classmethod
    def cpu_default(cls, **update) -> TrainBudget:
        """The embedded CPU budget, chosen by the proxy design study (experiments/fidelity.py).

        One epoch on 2,400 class-balanced Fashion-MNIST images at 32 px, with the stem at stride 2
        (the stages see 16/8/4/2 maps, the sizes ImageNet's 224 px gives at stride 4 / 7) and every
        stage at half width; batch 48, AdamW, warm-up + cosine, no augmentation. The study's table
        and the reasons for this choice are in the README.
        """
        base = dict(epochs=1, train_subset=2400, test_subset=1000, resolution=32, stem_stride=2, width_mult=0.5,
                    batch_size=48, lr=2e-3, weight_decay=0.05, warmup_epochs=0.3, schedule="cosine", augment=False)
        return cls(**{**base, **update})

    @classmethod
    def for_device(cls, device: str | torch.device, **update) -> TrainBudget:
        """The default budget for a device (the one place that chooses): CPU, else the GPU budget; ``update`` overrides."""
        return (cls.cpu_default if torch.device(device).type == "cpu" else cls.gpu_default)(**update)

    @classmethod
    def gpu_default(cls, **update) -> TrainBudget:
        """The GPU budget: full Fashion-MNIST, batch 1024 with LR scaled linearly, bf16, channels-last, compiled."""
        base = dict(epochs=3, train_subset=None, test_subset=None, resolution=32, batch_size=1024,
                    eval_batch_size=2048, lr=2e-3 * 1024 / 256, weight_decay=0.05, warmup_epochs=0.5,
                    schedule="cosine", bf16=True, channels_last=True, compile=True)
        return cls(**{**base, **update})


class FidelityPoint(BaseModel):
    """Test accuracy after a number of epochs of one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch: int
    top1: float
    top5: float
    wall_time_s: float


class TrainEvent(BaseModel):
    """A progress report: kind 'step' (every step), 'epoch' (mean loss) or 'fidelity' (test accuracy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["step", "epoch", "fidelity"]
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    top1: float | None = None


class TrainResult(BaseModel):
    """The record of one proxy-training run: accuracy, curves, speed, device and the budget used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["ok", "failed", "pruned"]
    reason: str | None = None
    top1: float | None = None
    top5: float | None = None
    epochs_done: int
    steps_per_epoch: int
    loss_curve: list[float]
    fidelities: list[FidelityPoint]
    wall_time_s: float
    train_time_s: float
    images_per_s: float
    params: int
    dataset: str
    train_size: int
    test_size: int
    device: str
    threads: int
    budget: TrainBudget


ProgressCallback = Callable[[TrainEvent], "bool | None"]


def _device_name(device: torch.device, threads: int) -> str:
    """Human-readable device name, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({threads} threads)"


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weights of rank >= 2, none on norms, biases and scalars."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _lr_factor(budget: TrainBudget, step: int, total: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at a step: warm-up + cosine, one-cycle, or constant."""
    if budget.schedule == "constant":
        return 1.0
    if budget.schedule == "onecycle":
        # torch OneCycleLR shape: 30 % cosine ramp from lr/25, then cosine to lr/1e4
        up = max(1, int(0.3 * total))
        if step < up:
            t = step / up
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * t)) / 2
        t = (step - up) / max(1, total - up)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * t)) / 2
    warm = int(budget.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / (warm + 1)
    t = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * t))


@torch.no_grad()
def _evaluate(model: nn.Module, data: DeviceDataset, budget: TrainBudget, autocast: Callable, memory_format) -> tuple[float, float]:
    """Top-1 and top-5 accuracy over a dataset; counts stay on the device until the end."""
    model.eval()
    correct1 = torch.zeros((), dtype=torch.int64, device=data.device)
    correct5 = torch.zeros((), dtype=torch.int64, device=data.device)
    for x, y in data.batches(budget.eval_batch_size, shuffle=False):
        x = x.contiguous(memory_format=memory_format)
        with autocast():
            logits = model(x)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top == y.view(-1, 1)
        correct1 += hit[:, 0].sum()
        correct5 += hit.any(dim=1).sum()
    n = len(data)
    return correct1.item() / n, correct5.item() / n


def _as_factory(model, budget: TrainBudget):
    """A spec becomes a factory of its model at the budget's proxy stem stride; a module or factory passes through."""
    from archspace.spec.net import NetSpec

    if isinstance(model, NetSpec):
        from archspace.nn.build import build

        spec = model.with_stem_stride(budget.stem_stride).with_width_mult(budget.width_mult)
        return lambda: build(spec)
    if budget.stem_stride is not None or budget.width_mult is not None:
        raise ValueError("stem_stride/width_mult: the budget changes the network, so pass the NetSpec, not a built model")
    return model


def train_proxy(
    model: "nn.Module | Callable[[], nn.Module] | NetSpec",
    budget: TrainBudget | None = None,
    dataset: str = "fashion-mnist",
    *,
    dataset_root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    fidelities: Sequence[int] = (1, 3, 9),
) -> TrainResult:
    """Train a model (or a zero-arg factory) under a budget and return a TrainResult; trains in place.

    Test accuracy is measured after each epoch in ``fidelities`` that is within the budget and
    after the last epoch. ``progress(event)`` is called on every step, epoch and fidelity; return
    True from it to stop the run (status 'pruned', e.g. after a poor fidelity). A run whose loss
    turns NaN/inf is reported with status 'failed' and the reason; it does not raise. A factory is
    called under the budget's seed, so a factory run is bit-reproducible on CPU. Torch thread count
    and the global RNG are restored on return.

    See ``TrainBudget.cpu_default`` for the CPU budget (its measured cost is in the README), and
    ``experiments/fidelity.py`` for how well each budget ranks architectures.
    """
    budget = budget or TrainBudget()
    model = _as_factory(model, budget)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available; use device='cpu'")
    t_start = time.perf_counter()
    old_threads = torch.get_num_threads()
    with ExitStack() as stack:
        if budget.threads is not None and dev.type == "cpu":
            torch.set_num_threads(budget.threads)
            stack.callback(torch.set_num_threads, old_threads)
        rng_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        stack.enter_context(torch.random.fork_rng(devices=rng_devices))
        torch.manual_seed(budget.seed)
        threads = torch.get_num_threads()
        return _train(model, budget, dataset, dataset_root, dev, progress, fidelities, threads, t_start)


def _train(model, budget, dataset, dataset_root, dev, progress, fidelities, threads, t_start) -> TrainResult:
    """The training loop proper (called inside train_proxy's thread and RNG guards)."""
    if not isinstance(model, nn.Module):
        model = model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model factory returned {type(model).__name__}; it must return an nn.Module")
    in_ch = input_channels(model)
    common = dict(resolution=budget.resolution, channels=in_ch, device=dev)
    train_data = DeviceDataset.load(dataset, "train", root=dataset_root, subset=budget.train_subset,
                                    seed=budget.seed, augment=budget.augment, **common)
    test_data = DeviceDataset.load(dataset, "test", root=dataset_root, subset=budget.test_subset,
                                   seed=budget.seed, augment=False, **common)
    memory_format = torch.channels_last if budget.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=memory_format)
    params = sum(p.numel() for p in model.parameters())
    use_bf16 = budget.bf16 and dev.type == "cuda"

    def autocast():
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16)

    step_model = torch.compile(model) if budget.compile else model
    groups = _param_groups(model, budget.weight_decay)
    if budget.optimizer == "adamw":
        fused = dev.type == "cuda"
        opt = torch.optim.AdamW(groups, lr=budget.lr, betas=(0.9, 0.999), fused=fused)
    else:
        opt = torch.optim.SGD(groups, lr=budget.lr, momentum=0.9, nesterov=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=budget.label_smoothing)
    gen = torch.Generator(device=dev).manual_seed(budget.seed)
    steps_per_epoch = train_data.num_batches(budget.batch_size, drop_last=True)
    total = steps_per_epoch * budget.epochs
    eval_at = {e for e in fidelities if 1 <= e <= budget.epochs} | {budget.epochs}

    loss_curve: list[float] = []
    points: list[FidelityPoint] = []
    status, reason = "ok", None
    train_time, images = 0.0, 0
    step = 0
    epoch = 0
    check_each_step = dev.type == "cpu"  # a host read is free on CPU; on GPU read once per epoch
    try:
        for epoch in range(1, budget.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
            for x, y in train_data.batches(budget.batch_size, gen, drop_last=True):
                factor = _lr_factor(budget, step, total, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = budget.lr * factor
                x = x.contiguous(memory_format=memory_format)
                with autocast():
                    loss = criterion(step_model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if budget.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), budget.grad_clip)
                opt.step()
                loss_sum += loss.detach().float()
                step += 1
                images += x.shape[0]
                if check_each_step and not math.isfinite(loss.item()):
                    raise _Diverged(epoch, step, loss.item())
                if progress is not None and progress(TrainEvent(
                        kind="step", epoch=epoch, epochs=budget.epochs, step=step, steps=total)):
                    status, reason = "pruned", f"stopped by the progress callback at step {step}"
                    break
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_time += time.perf_counter() - t0
            if status == "pruned":
                break
            mean_loss = loss_sum.item() / max(1, steps_per_epoch)
            if not math.isfinite(mean_loss):
                raise _Diverged(epoch, step, mean_loss)
            loss_curve.append(mean_loss)
            if progress is not None and progress(TrainEvent(
                    kind="epoch", epoch=epoch, epochs=budget.epochs, step=step, steps=total, loss=mean_loss)):
                status, reason = "pruned", f"stopped by the progress callback after epoch {epoch}"
                break
            if epoch in eval_at:
                top1, top5 = _evaluate(step_model, test_data, budget, autocast, memory_format)
                points.append(FidelityPoint(epoch=epoch, top1=top1, top5=top5,
                                            wall_time_s=time.perf_counter() - t_start))
                if progress is not None and progress(TrainEvent(
                        kind="fidelity", epoch=epoch, epochs=budget.epochs, step=step, steps=total,
                        loss=mean_loss, top1=top1)) and epoch < budget.epochs:
                    status, reason = "pruned", f"stopped by the progress callback after epoch {epoch}"
            if status == "pruned":
                break
    except _Diverged as exc:
        status, reason = "failed", str(exc)
    except torch.OutOfMemoryError as exc:
        status, reason = "failed", f"out of memory at batch_size={budget.batch_size}: {str(exc).splitlines()[0]}; lower batch_size"
    last = points[-1] if points and status != "failed" else None
    return TrainResult(
        status=status, reason=reason,
        top1=last.top1 if last else None, top5=last.top5 if last else None,
        epochs_done=len(loss_curve), steps_per_epoch=steps_per_epoch, loss_curve=loss_curve, fidelities=points,
        wall_time_s=time.perf_counter() - t_start, train_time_s=train_time,
        images_per_s=images / train_time if train_time > 0 else 0.0,
        params=params, dataset=dataset, train_size=len(train_data), test_size=len(test_data),
        device=_device_name(dev, threads), threads=threads, budget=budget,
    )


class _Diverged(Exception):
    """Internal: the training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"non-finite training loss ({value}) at epoch {epoch}, step {step}; lower lr or enable grad_clip")


def input_channels(model: nn.Module) -> int:
    """Input channels of a model: its spec's ``in_chans`` for archspace's networks, else the first conv's (3 if none)."""
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "in_chans"):
        return spec.in_chans
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3
