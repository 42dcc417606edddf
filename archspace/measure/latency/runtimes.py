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


# instruction-set flags that change what a CPU kernel can use (Linux /proc/cpuinfo names), widest last
ISA_FLAGS: tuple[str, ...] = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                              "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if out:
                    break
                continue
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), value.strip())
    return out


def cpu_flags() -> list[str]:
    """The ISA flags of :data:`ISA_FLAGS` this CPU has, in that order."""
    have = set(_cpuinfo().get("flags", _cpuinfo().get("Features", "")).split())
    return [f for f in ISA_FLAGS if f in have]


def _isa_level(flags: list[str]) -> str:
    """The widest vector level of ``flags``: 'amx', 'avx512', 'avx2', 'avx', 'neon'/'sve' or ''."""
    for level, marker in (("amx", "amx_tile"), ("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"), ("sve", "sve"),
                          ("neon", "asimd")):
        if marker in flags:
            return level
    return ""


def device_name(device: str | torch.device = "cpu") -> str:
    """Human name of a device: the CPU model from /proc/cpuinfo with its widest vector ISA ('AMD EPYC (avx512)'),
    or the CUDA device name. A VM that hides the model still tells an AVX2 host from an AVX-512 one."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = _cpuinfo().get("model name") or platform.processor() or platform.machine() or "cpu"
    level = _isa_level(cpu_flags())
    return f"{model} ({level})" if level else model


def device_identity(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What a latency depends on besides the network: CPU model, ISA flags, cores, GPU, torch and ONNX Runtime versions."""
    import os

    dev = torch.device(device)
    info = _cpuinfo()
    ort_version = None
    with contextlib.suppress(ImportError):
        import onnxruntime

        ort_version = onnxruntime.__version__
    return {
        "name": device_name(dev),
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "cuda_version": torch.version.cuda if dev.type == "cuda" else None,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort_version,
        "machine": platform.machine(),
    }


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
