"""What a latency measurement runs under: one settings object, validated once (no torch import here)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archspace.spec._base import MAX_INT

Runtime = Literal["eager", "compile", "onnxrt-cpu", "onnxrt-cuda"]
DType = Literal["fp32", "fp16", "bf16"]
Clock = Literal["wall", "thread"]
RUNTIMES: tuple[str, ...] = ("eager", "compile", "onnxrt-cpu", "onnxrt-cuda")
CLOCKS: tuple[str, ...] = ("wall", "thread")
DTYPE_NAMES: tuple[str, ...] = ("fp32", "fp16", "bf16")


class LatencySettings(BaseModel):
    """Device, runtime, dtype, batch, resolution, memory format, threads, warm-up, repeats and clock.

    ``clock`` is ``wall`` (perf_counter, or CUDA events on a GPU) or ``thread``: the calling thread's CPU
    time, which leaves out the time the OS gives to other processes (CPU, one thread, eager or compile).
    Errors name the field: 'runtime: unknown runtime ...'.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = "cpu"
    batch: int = 1
    resolution: int = 224
    dtype: str = "fp32"
    runtime: str = "eager"
    threads: int = 1
    warmup: int = Field(3, description="untimed forward passes before timing (the first one also compiles a "
                        "compiled runtime)")
    repeats: int = Field(15, description="timed forward passes, median reported; kept cheap because a search times "
                         "every trial's network and calibration, not more repeats, removes the machine's drift; "
                         "raise it for a one-off comparison")
    channels_last: bool = False
    clock: str = "wall"

    @model_validator(mode="after")
    def _check(self) -> "LatencySettings":
        if self.clock not in CLOCKS:
            raise ValueError(f"clock: unknown clock {self.clock!r}; choose from {', '.join(CLOCKS)}")
        if self.clock == "thread" and (not str(self.device).startswith("cpu") or self.threads != 1
                                       or self.runtime not in ("eager", "compile")):
            raise ValueError("clock: 'thread' times the calling thread's CPU time; use it only with device='cpu', "
                             "threads=1 and runtime eager or compile")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime: unknown runtime {self.runtime!r}; choose from {', '.join(RUNTIMES)}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype: unknown dtype {self.dtype!r}; choose from {', '.join(DTYPE_NAMES)}")
        if self.runtime.startswith("onnxrt") and self.dtype != "fp32":
            raise ValueError(f"dtype: runtime {self.runtime!r} is measured in fp32 only; use dtype='fp32'")
        for label, low in (("batch", 1), ("resolution", 1), ("threads", 1), ("warmup", 0), ("repeats", 1)):
            value = getattr(self, label)
            if isinstance(value, bool) or not low <= value <= MAX_INT:
                raise ValueError(f"{label}: expected an int >= {low} and at most {MAX_INT:,}, got {value!r}")
        return self

    def latency_settings(self) -> "LatencySettings":
        """Just the latency settings (a subclass such as a space's ``measure`` drops its own fields)."""
        return LatencySettings(**{k: getattr(self, k) for k in LatencySettings.model_fields})

    def updated(self, **changes) -> "LatencySettings":
        """A validated copy with ``changes``."""
        return type(self).model_validate({**self.model_dump(), **changes})
