"""FLOPs, as multiply-accumulates (MACs), under named counting conventions.

Counters disagree (fvcore skips elementwise products and, on torch>=2,
``scaled_dot_product_attention``; ptflops misses ``@``), and the two papers archspace
reproduces used two different rules. So every count here names its convention:

- ``smt-paper``: MACs of every ``nn.Conv{1,2,3}d`` and ``nn.Linear`` module call, bias
  included (ptflops' per-module rule: conv = out_numel * cin/groups * prod(kernel), linear =
  out_numel * in_features, each + out_numel when the module has a bias); nothing else.
  This is the rule behind the SMT paper's GFLOPs (Lin et al., "Scale-Aware Modulation Meet
  Transformer", 2023).
- ``fvcore``: fvcore's ``FlopCountAnalysis`` with its default handles plus a handle for
  ``aten::scaled_dot_product_attention`` (B*heads*Lq*Lk*(E + Ev)), so attention matmuls are
  counted however they are written. This is the rule behind the EfficientMod paper's GFLOPs
  (Ma et al., "Efficient Modulation for Vision Networks", 2024).
- ``full``: see :func:`count_full_macs`: convolutions and linears with bias, every matmul,
  attention, and every elementwise product of two tensors.
- ``ptflops``: ptflops' own count (its default ``pytorch`` backend: module hooks, activations and
  norms included, attention matmuls missed), for users who compare with ptflops numbers. Counted
  only; the analytic complexity has no formula for it.

All counts are exact integers and deterministic: they depend only on the module and the
input shape.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from archspace.vocab import CONVENTIONS, COUNTED_CONVENTIONS, CountedConvention

_COUNTERS: dict[str, str] = {
    "smt-paper": "archspace module hooks on Conv1d/2d/3d and Linear (ptflops rule, bias included)",
    "fvcore": "fvcore FlopCountAnalysis, default handles + aten::scaled_dot_product_attention",
    "full": "archspace TorchDispatchMode: conv, linear, matmul, attention, tensor*tensor products",
    "ptflops": "ptflops get_model_complexity_info, pytorch backend (module hooks)",
}

_aten = torch.ops.aten


class FlopsRecord(BaseModel):
    """MACs of one model at one input shape, per named convention, with the counters used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: Literal["MACs"] = "MACs"
    input_shape: tuple[int, int, int, int]
    resolution: tuple[int, int]
    batch: int
    macs: dict[str, int]
    counters: dict[str, str]
    versions: dict[str, str]
    fvcore_skipped_ops: dict[str, int] = {}


def _check_conventions(conventions: Sequence[str]) -> tuple[CountedConvention, ...]:
    """Validate convention names, keeping their order and dropping repeats."""
    if isinstance(conventions, str):
        conventions = (conventions,)
    out: list[CountedConvention] = []
    for name in conventions:
        if name not in COUNTED_CONVENTIONS:
            raise ValueError(
                f"conventions: unknown convention {name!r}; choose from {', '.join(COUNTED_CONVENTIONS)}"
            )
        if name not in out:
            out.append(name)  # type: ignore[arg-type]
    if not out:
        raise ValueError(f"conventions: give at least one of {', '.join(CONVENTIONS)}")
    return tuple(out)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate an NCHW input shape."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or any(s <= 0 for s in shape):
        raise ValueError(
            f"input_shape: expected 4 positive ints (batch, channels, height, width), got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, restoring each one's previous flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def _example_input(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Zeros of ``input_shape`` on the model's device with its floating dtype."""
    ref = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None else torch.float32
    return torch.zeros(input_shape, device=device, dtype=dtype)


# --------------------------------------------------------------------------- smt-paper


def _module_macs(module: nn.Module, output: torch.Tensor) -> int:
    """ptflops' MACs of one Conv or Linear call, bias included."""
    out_numel = output.numel()
    bias = out_numel if getattr(module, "bias", None) is not None else 0
    if isinstance(module, nn.Linear):
        return out_numel * module.in_features + bias
    assert isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    return out_numel * per_output + bias


@contextlib.contextmanager
def _conv_linear_hooks(model: nn.Module, total: list[int]) -> Iterator[None]:
    """Add each Conv/Linear call's MACs to ``total[0]`` while the context is open."""

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        total[0] += _module_macs(module, output)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- full


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _conv_macs(args: Sequence[Any], out: torch.Tensor) -> int:
    x, w, bias = args[0], args[1], args[2]
    transposed = bool(args[6]) if len(args) > 6 else False
    kernel = _numel(w.shape[2:])
    if transposed:  # weight is (Cin, Cout/groups, *k): every input element feeds Cout/groups*k outputs
        macs = x.numel() * w.shape[1] * kernel
    else:  # weight is (Cout, Cin/groups, *k)
        macs = out.numel() * w.shape[1] * kernel
    return macs + (out.numel() if bias is not None else 0)


def _mm_macs(args: Sequence[Any], _out: torch.Tensor) -> int:
    a, b = args[0], args[1]
    return _numel(a.shape) * b.shape[-1]


def _addmm_macs(args: Sequence[Any], out: torch.Tensor) -> int:
    a, b = args[1], args[2]
    return _numel(a.shape) * b.shape[-1] + out.numel()


def _bmm_macs(args: Sequence[Any], _out: torch.Tensor) -> int:
    a, b = args[0], args[1]
    return _numel(a.shape) * b.shape[-1]


def _baddbmm_macs(args: Sequence[Any], out: torch.Tensor) -> int:
    a, b = args[1], args[2]
    return _numel(a.shape) * b.shape[-1] + out.numel()


def _mv_macs(args: Sequence[Any], _out: torch.Tensor) -> int:
    return args[0].numel()


def _sdpa_macs(args: Sequence[Any], _out: Any) -> int:
    q, k, v = args[0], args[1], args[2]
    rows = _numel(q.shape[:-1])  # batch * heads * Lq
    return rows * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _is_tensor_operand(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() > 0


def _mul_macs(args: Sequence[Any], out: Any) -> int:
    if len(args) >= 2 and _is_tensor_operand(args[0]) and _is_tensor_operand(args[1]):
        return out.numel()
    return 0


def _addcmul_macs(args: Sequence[Any], out: Any) -> int:
    return out.numel() if _is_tensor_operand(args[1]) and _is_tensor_operand(args[2]) else 0


def _full_rules() -> dict[Any, Callable[[Sequence[Any], Any], int]]:
    """Aten overload packet -> MACs of one call (args, output)."""
    rules: dict[Any, Callable[[Sequence[Any], Any], int]] = {
        _aten.convolution: _conv_macs,
        _aten._convolution: _conv_macs,
        _aten.mm: _mm_macs,
        _aten.addmm: _addmm_macs,
        _aten.bmm: _bmm_macs,
        _aten.baddbmm: _baddbmm_macs,
        _aten.mv: _mv_macs,
        _aten.mul: _mul_macs,
        _aten.mul_: _mul_macs,
        _aten.addcmul: _addcmul_macs,
        _aten.addcmul_: _addcmul_macs,
    }
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    ):
        if hasattr(_aten, name):
            rules[getattr(_aten, name)] = _sdpa_macs
    return rules


class _FullMacsMode(TorchDispatchMode):
    """Dispatch mode that adds up the MACs of every aten op it has a rule for."""

    def __init__(self) -> None:
        super().__init__()
        self.rules = _full_rules()
        self.total = 0
        self.paused = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        rule = None if self.paused else self.rules.get(func.overloadpacket)
        if rule is not None:
            first = out[0] if isinstance(out, (tuple, list)) else out
            self.total += int(rule(args, first))
        return out


class _LinearMode(TorchFunctionMode):
    """Counts ``F.linear`` whole (matmul + bias), since aten may split it into bmm and an add."""

    def __init__(self, counter: _FullMacsMode) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is not torch._C._nn.linear or self.counter.paused:
            return func(*args, **kwargs)
        self.counter.paused = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.counter.paused = False
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        self.counter.total += out.numel() * weight.shape[-1] + (out.numel() if bias is not None else 0)
        return out


@contextlib.contextmanager
def _full_macs(total: list[int]) -> Iterator[None]:
    """Add the ``full`` MACs of every op run while the context is open to ``total[0]``."""
    counter = _FullMacsMode()
    with _LinearMode(counter), counter:
        yield
    total[0] += counter.total


def _meta_forward(model: nn.Module, x: torch.Tensor) -> None:
    """Run ``model`` on meta tensors (shapes only) without copying or touching its weights."""
    state = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    torch.func.functional_call(model, state, (x.to("meta"),), strict=False)


def _run_counted(
    model: nn.Module, input_shape: tuple[int, int, int, int], want_full: bool
) -> tuple[int, int]:
    """One forward pass giving (smt-paper MACs, full MACs); meta device first, real tensors if that fails."""
    x = _example_input(model, input_shape)
    for on_meta in (True, False):
        paper, full = [0], [0]
        try:
            with _conv_linear_hooks(model, paper), torch.no_grad():
                with _full_macs(full) if want_full else contextlib.nullcontext():
                    if on_meta:
                        _meta_forward(model, x)
                    else:
                        model(x)
        except Exception:  # anything meta cannot run is retried on real tensors, where errors surface
            if not on_meta:
                raise
            continue
        return paper[0], full[0]
    raise AssertionError("unreachable")


def count_full_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """MACs of every multiply-add a forward pass performs (the ``full`` convention).

    Counted per aten call, so the count does not depend on how a layer is written:
    convolutions (out_numel * cin/groups * prod(kernel), + out_numel with a bias; transposed:
    in_numel * cout/groups * prod(kernel)); ``F.linear`` (out_numel * in_features, + out_numel
    with a bias, counted whole at the function level since aten may split it into ``bmm`` and
    ``add``); ``mm``/``bmm``/``mv`` (m*k*n) and ``addmm``/``baddbmm`` (m*k*n + m*n); fused
    attention kernels (B*heads*Lq*Lk*(E+Ev), the same as the two matmuls of an explicit
    ``softmax(q @ k^T) @ v``); elementwise
    ``mul``/``addcmul`` of two tensors that are not 0-d (out_numel: modulation ``ctx * v``,
    layer scale ``gamma * x``). Not counted: normalisations, activations, softmax, pooling and
    means, additions, and multiplications by a Python or 0-d scalar (attention scaling).
    """
    shape = _check_input_shape(input_shape)
    with eval_mode(model):
        return _run_counted(model, shape, want_full=True)[1]


# --------------------------------------------------------------------------- fvcore


def _fvcore_sdpa_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: B*heads*Lq*Lk*E + B*heads*Lq*Lk*Ev."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    rows = _numel(q[:-1])
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def _fvcore_macs(model: nn.Module, input_shape: tuple[int, int, int, int]) -> tuple[int, dict[str, int]]:
    """fvcore total with attention counted, and the ops fvcore skipped (name -> calls)."""
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ValueError(
            "model: the 'fvcore' convention traces a real forward pass; materialise the model "
            "(model.to_empty(device='cpu')) or leave 'fvcore' out of conventions"
        )
    x = _example_input(model, input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and jit tracing warn on torch>=2
        from fvcore.nn import FlopCountAnalysis

        analysis = (
            FlopCountAnalysis(model, (x,))
            .set_op_handle("aten::scaled_dot_product_attention", _fvcore_sdpa_handle)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none")
        )
        total = int(analysis.total())
        skipped = dict(sorted(Counter(analysis.unsupported_ops()).items()))
    return total, skipped


def _ptflops_macs(model: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """ptflops' default (pytorch-backend) MACs for one input of ``input_shape``, batch included."""
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ValueError("model: the 'ptflops' convention runs a real forward pass; materialise the model first")
    from ptflops import get_model_complexity_info

    x = _example_input(model, input_shape)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # ptflops prints a batch-size notice; the input holds the whole batch
        macs, _ = get_model_complexity_info(model, tuple(input_shape[1:]), as_strings=False, print_per_layer_stat=False,
                                            verbose=False, backend="pytorch", input_constructor=lambda _: {"x": x})
    return int(macs)


# --------------------------------------------------------------------------- public


def _count(
    model: nn.Module, input_shape: Sequence[int], conventions: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """MACs per convention and the ops fvcore skipped."""
    shape = _check_input_shape(input_shape)
    names = _check_conventions(conventions)
    macs: dict[str, int] = {}
    skipped: dict[str, int] = {}
    with eval_mode(model):
        if "smt-paper" in names or "full" in names:
            paper, full = _run_counted(model, shape, want_full="full" in names)
            macs["smt-paper"], macs["full"] = paper, full
        if "fvcore" in names:
            macs["fvcore"], skipped = _fvcore_macs(model, shape)
        if "ptflops" in names:
            macs["ptflops"] = _ptflops_macs(model, shape)
    return {name: macs[name] for name in names}, skipped


def count_flops(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    conventions: Sequence[str] = CONVENTIONS,
) -> dict[str, int]:
    """MACs of one forward pass of ``model`` on ``input_shape`` (NCHW), per named convention."""
    return _count(model, input_shape, conventions)[0]


def profile_flops(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    conventions: Sequence[str] = CONVENTIONS,
) -> FlopsRecord:
    """A :class:`FlopsRecord`: MACs per convention with the counters and versions that made them."""
    macs, skipped = _count(model, input_shape, conventions)
    shape = _check_input_shape(input_shape)
    versions = {"torch": torch.__version__}
    from importlib.metadata import version

    for counter in ("fvcore", "ptflops"):
        if counter in macs:
            versions[counter] = version(counter)
    return FlopsRecord(
        input_shape=shape,
        resolution=(shape[2], shape[3]),
        batch=shape[0],
        macs=macs,
        counters={name: _COUNTERS[name] for name in macs},
        versions=versions,
        fvcore_skipped_ops=skipped,
    )
