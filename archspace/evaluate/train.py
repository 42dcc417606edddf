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
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from archspace.evaluate.budget import ProxyNetwork, TrainBudget
from archspace.evaluate.data import DeviceDataset
from archspace.spec.net import NetSpec

__all__ = ["FidelityPoint", "ProgressCallback", "ProxyNetwork", "TrainBudget", "TrainEvent", "TrainResult", "train_proxy"]


class FidelityPoint(BaseModel):
    """Test accuracy after a number of epochs of one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch: int
    top1: float
    top5: float
    wall_time_s: float


class TrainEvent(BaseModel):
    """A progress report: kind 'step' (every step), 'epoch' (mean loss) or 'fidelity' (test accuracy).

    Counts are of the whole run, so a display needs no arithmetic: ``step`` of ``steps`` optimizer steps
    done (0 <= step <= steps), in epoch ``epoch`` of ``epochs`` (1-based: 1 <= epoch <= epochs).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["step", "epoch", "fidelity"]
    epoch: int = Field(ge=1, description="the epoch this event is in, 1-based")
    epochs: int = Field(ge=1, description="epochs of the run")
    step: int = Field(ge=0, description="optimizer steps done so far in the run")
    steps: int = Field(ge=0, description="optimizer steps of the whole run (all epochs)")
    loss: float | None = None
    top1: float | None = None

    @model_validator(mode="after")
    def _within(self) -> TrainEvent:
        if self.step > self.steps or self.epoch > self.epochs:
            raise ValueError(f"step {self.step}/{self.steps}, epoch {self.epoch}/{self.epochs}: a count exceeds its total")
        return self

    def info(self) -> str:
        """'epoch 2/3', with the loss or top-1 when the event has one: the text beside a bar of ``step``/``steps``."""
        text = f"epoch {self.epoch}/{self.epochs}"
        if self.loss is not None:
            text += f" loss {self.loss:.3f}"
        if self.top1 is not None:
            text += f" top-1 {100 * self.top1:.1f}%"
        return text


class TrainResult(BaseModel):
    """The record of one proxy-training run: accuracy, curves, speed, device, the budget and the network trained."""

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
    params: int = Field(description="parameters of the network as trained (see network)")
    dataset: str
    train_size: int
    test_size: int
    device: str
    threads: int
    budget: TrainBudget
    network: ProxyNetwork | None = Field(None, description="what was trained; None in records written before it was kept")

    def describe(self) -> str:
        """One line of the protocol: data, epochs, resolution and the network trained (width, stem, params vs full)."""
        line = f"proxy training: {self.budget.describe(self.dataset, self.train_size, self.test_size)} on {self.device}"
        return line + (f"; trained {self.network.describe()}" if self.network is not None else f"; {self.params / 1e6:.2f}M params")


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


def default_budget(model: Any, device: str | torch.device = "cpu") -> TrainBudget:
    """The device's default budget (``TrainBudget.for_device``); a built model or factory trains as given (no stem or width change)."""
    budget = TrainBudget.for_device(device)
    return budget if isinstance(model, NetSpec) else budget.without_network_changes()


def check_network_knobs(model: Any, budget: TrainBudget) -> None:
    """Refuse a budget that changes the network (stem stride, width) for a built model or factory: only a spec can change."""
    if not isinstance(model, NetSpec) and (budget.stem_stride is not None or budget.width_mult is not None):
        raise ValueError("stem_stride/width_mult: the budget changes the network, so pass the NetSpec, not a built model")


def proxy_spec(spec: NetSpec, budget: TrainBudget, num_classes: int) -> NetSpec:
    """The spec a budget trains: the stem at the budget's stride, widths scaled, ``num_classes`` outputs."""
    proxy = spec.with_stem_stride(budget.stem_stride).with_width_mult(budget.width_mult)
    return proxy if proxy.num_classes == num_classes else proxy.model_copy(update={"num_classes": num_classes})


def instantiate(model: "nn.Module | Callable[[], nn.Module]") -> nn.Module:
    """A module as given, or a factory's module (checked to be one)."""
    if isinstance(model, nn.Module):
        return model
    built = model()
    if not isinstance(built, nn.Module):
        raise TypeError(f"model factory returned {type(built).__name__}; it must return an nn.Module")
    return built


def network_record(module: nn.Module, spec: NetSpec | None, width_mult: float | None, resolution: int,
                   num_classes: int) -> ProxyNetwork:
    """What ran: the module's params, stem stride and head beside the full network of ``spec`` (as written, before proxy knobs)."""
    run_spec = getattr(module, "spec", None)
    full = None
    if spec is not None:
        from archspace.measure.complexity import complexity

        full = complexity(spec, resolution)["params"]
    return ProxyNetwork(width_mult=width_mult if spec is not None else None,
                        stem_stride=run_spec.stem.stride if isinstance(run_spec, NetSpec) else None,
                        resolution=resolution, num_classes=num_classes,
                        params=sum(p.numel() for p in module.parameters()), full_params=full)


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
    """Train a model (or a zero-arg factory, or a NetSpec) under a budget and return a TrainResult; trains in place.

    ``budget`` None: the device's default (:func:`default_budget`). A NetSpec is built with the
    budget's stem stride and width and with the dataset's class count; a module or factory must
    already have a head of the dataset's class count (ValueError otherwise).

    Test accuracy is measured after each epoch in ``fidelities`` that is within the budget and
    after the last epoch. ``progress(event)`` is called on every step, epoch and fidelity; return
    True from it to stop the run (status 'pruned', e.g. after a poor fidelity). A run whose loss
    turns NaN/inf is reported with status 'failed' and the reason; it does not raise. A factory is
    called under the budget's seed, so a factory run is bit-reproducible on CPU. Torch thread count
    and the global RNG are restored on return.

    See ``TrainBudget.cpu_default`` for the CPU budget (its measured cost is in the README), and
    ``experiments/fidelity.py`` for how well each budget ranks architectures.
    """
    budget = budget if budget is not None else default_budget(model, device)
    check_network_knobs(model, budget)
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
    spec = model if isinstance(model, NetSpec) else None
    if spec is None:
        model = instantiate(model)
    in_ch = spec.in_chans if spec is not None else input_channels(model)
    common = dict(resolution=budget.resolution, channels=in_ch, device=dev)
    train_data = DeviceDataset.load(dataset, "train", root=dataset_root, subset=budget.train_subset,
                                    seed=budget.seed, augment=budget.augment, **common)
    test_data = DeviceDataset.load(dataset, "test", root=dataset_root, subset=budget.test_subset,
                                   seed=budget.seed, augment=False, **common)
    classes = train_data.meta.num_classes
    if spec is not None:
        from archspace.nn.build import build

        torch.manual_seed(budget.seed)  # a spec's weights start from the seed alone, whatever loading the data drew
        model = build(proxy_spec(spec, budget, classes))
    network = network_record(model, spec, budget.width_mult, budget.resolution, classes)
    memory_format = torch.channels_last if budget.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=memory_format)
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
                    logits = step_model(x)
                if step == 0 and logits.shape[-1] != classes:
                    raise ValueError(f"the model has {logits.shape[-1]} outputs but {dataset} has {classes} classes; "
                                     f"build it with num_classes={classes} or pass its NetSpec")
                with autocast():
                    loss = criterion(logits, y)
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
        params=network.params, dataset=dataset, train_size=len(train_data), test_size=len(test_data),
        device=_device_name(dev, threads), threads=threads, budget=budget, network=network,
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
