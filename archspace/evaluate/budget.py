"""What a proxy evaluation runs under: the training budget (one default per device) and the network it trains.

Pydantic only, no torch: a search space resolves its budget when it is read, before anything trains.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ProxyNetwork", "TrainBudget"]


def _device_type(device: Any) -> str:
    """'cpu' for 'cpu', 'cpu:0' or torch.device('cpu'); 'cuda' for 'cuda:1' (no torch needed)."""
    return str(device).split(":", 1)[0]


class TrainBudget(BaseModel):
    """How much training a proxy run gets: data, resolution, optimizer, schedule, precision, seed.

    Build one with :meth:`for_device` (the device's default with overrides); the field defaults are
    only the base those recipes override.
    """

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
    def cpu_default(cls, **update: Any) -> TrainBudget:
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
    def gpu_default(cls, **update: Any) -> TrainBudget:
        """The GPU budget: full Fashion-MNIST, batch 1024 with LR scaled linearly, bf16, channels-last, compiled."""
        base = dict(epochs=3, train_subset=None, test_subset=None, resolution=32, batch_size=1024,
                    eval_batch_size=2048, lr=2e-3 * 1024 / 256, weight_decay=0.05, warmup_epochs=0.5,
                    schedule="cosine", bf16=True, channels_last=True, compile=True)
        return cls(**{**base, **update})

    @classmethod
    def for_device(cls, device: Any = "cpu", **update: Any) -> TrainBudget:
        """The default budget for a device (the one place that chooses): CPU, else the GPU budget; ``update`` overrides."""
        return (cls.cpu_default if _device_type(device) == "cpu" else cls.gpu_default)(**update)

    def without_network_changes(self) -> TrainBudget:
        """This budget training a model as given (no stem stride or width change): the form a built module takes."""
        return self.model_copy(update={"stem_stride": None, "width_mult": None})

    def describe(self, dataset: str = "fashion-mnist", train_size: int | None = None, test_size: int | None = None) -> str:
        """One line: '1 epoch x 2,400 fashion-mnist images (test 1,000) at 32 px, stem stride 2, 0.5x width, batch 48'.

        ``train_size``/``test_size``: the images a run actually used, in place of the subsets asked for.
        """
        train, test = (train_size or self.train_subset), (test_size or self.test_subset)
        parts = [f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} x {'all' if train is None else f'{train:,}'} "
                 f"{dataset} images (test {'all' if test is None else f'{test:,}'}) at {self.resolution} px"]
        if self.stem_stride is not None:
            parts.append(f"stem stride {self.stem_stride}")
        if self.width_mult is not None:
            parts.append(f"{self.width_mult:g}x width")
        parts.append(f"batch {self.batch_size}")
        return ", ".join(parts)


class ProxyNetwork(BaseModel):
    """The network an evaluator ran, beside the full network it stands for: width, stem stride, input, classes, params."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    width_mult: float | None = Field(description="stage widths scaled by this; None = the spec's widths")
    stem_stride: int | None = Field(description="the stem's stride as run; None = not known (a module, not a spec)")
    resolution: int = Field(description="input size in px")
    num_classes: int = Field(description="outputs of the head as run")
    params: int = Field(description="parameters of the network as run")
    full_params: int | None = Field(description="parameters of the spec's own network (its widths, stem and classes); "
                                    "None for a module")

    def describe(self) -> str:
        """'0.5x width, stem stride 2, 32 px, 10 classes: 1.31M params (full network 4.72M)'."""
        if self.width_mult is not None:
            parts = [f"{self.width_mult:g}x width"]
        else:
            parts = ["full width" if self.full_params is not None else "the model as given"]
        if self.stem_stride is not None:
            parts.append(f"stem stride {self.stem_stride}")
        parts += [f"{self.resolution} px", f"{self.num_classes} classes"]
        full = f" (full network {self.full_params / 1e6:.2f}M)" if self.full_params is not None and self.full_params != self.params else ""
        return f"{', '.join(parts)}: {self.params / 1e6:.2f}M params{full}"
