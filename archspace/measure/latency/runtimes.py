"""Where and how a forward pass runs: device checks, model preparation, eager / compiled / ONNX Runtime calls.

:func:`quiet_export` (torch.onnx.export without its chatter) lives here, below ``archspace.export``, which uses it too.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import platform
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_device(device: str) -> torch.device:
    """A torch device for 'cpu', 'cuda' or 'cuda:N', with CUDA checked to exist."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: unsupported device {device!r}; use 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


def device_name(device: str | torch.device = "cpu") -> str:
    """Human name of a device: the CPU model from /proc/cpuinfo, or the CUDA device name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread count, restoring the previous one afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prepared(model: nn.Module, dev: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    """The model on ``dev`` in ``dtype`` (and channels-last); a copy when anything must change."""
    tensors = [*model.parameters(), *model.buffers()]
    needs_change = channels_last or any(
        t.device != dev or (t.is_floating_point() and t.dtype != dtype) for t in tensors
    )
    if not needs_change:
        return model
    moved = copy.deepcopy(model).to(device=dev, dtype=dtype)
    return moved.to(memory_format=torch.channels_last) if channels_last else moved


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the ONNX exporter's progress lines and warnings (printed to stdout/stderr and logs)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_session(model: nn.Module, x: torch.Tensor, runtime: str = "onnxrt-cpu", threads: int = 1) -> Any:
    """Export ``model`` (traced at input ``x``, fp32) to ONNX and open it in ONNX Runtime.

    The session's input is named ``input`` and its output ``output``; ``runtime`` picks the
    provider (``onnxrt-cpu``: CPUExecutionProvider, ``onnxrt-cuda``: CUDAExecutionProvider),
    ``threads`` its intra-op threads. Needs ``pip install 'archspace[onnx]'``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        package = "onnxruntime-gpu" if runtime == "onnxrt-cuda" else "onnxruntime"
        raise ImportError(
            f"runtime {runtime!r} needs ONNX Runtime: pip install {package} onnx onnxscript"
        ) from None
    providers = ["CUDAExecutionProvider"] if runtime == "onnxrt-cuda" else ["CPUExecutionProvider"]
    if providers[0] not in ort.get_available_providers():
        raise ValueError(f"runtime: {runtime!r} needs the {providers[0]}, which this onnxruntime lacks")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.onnx")
        with quiet_export():
            torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["output"], dynamo=True,
                              verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(path, sess_options=options, providers=providers)


def _onnx_runner(model: nn.Module, x: torch.Tensor, runtime: str, threads: int) -> Callable[[], Any]:
    """Export ``model`` to ONNX and return a call that runs it once in ONNX Runtime."""
    session = onnx_session(model, x, runtime, threads)
    feed = {"input": x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def runner(model: nn.Module, x: torch.Tensor, runtime: str, threads: int) -> Callable[[], Any]:
    """A zero-argument call that runs one forward pass under ``runtime``."""
    if runtime == "eager":
        return lambda: model(x)
    if runtime == "compile":
        compiled = torch.compile(model)
        return lambda: compiled(x)
    return _onnx_runner(model, x, runtime, threads)
