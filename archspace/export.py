"""Take an architecture out of archspace: ONNX and TorchScript files, with the weights you trained or converted.

``load_network`` builds a spec, preset or Pareto YAML (``runs/<space>/pareto/*.yaml``) and loads a
state dict into it; ``to_onnx`` (dynamic batch axis) and ``to_torchscript`` write the files and check them against
the eager model, returning the largest absolute logit difference.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .measure.latency.runtimes import quiet_export
from .spec.errors import SpecError


def load_network(source: Any, weights: Optional[Union[str, Path]] = None, num_classes: Optional[int] = None) -> nn.Module:
    """The eval-mode model of a spec, preset or Pareto YAML, with ``weights`` (a state dict or a training
    checkpoint holding one, .pth/.pt/.npz) loaded strictly."""
    from .nn.build import build
    from .nn.checkpoint import load_into

    model = build(source, num_classes)
    if weights is not None:
        load_into(model, weights, "--weights")
    return model.eval()


def example_input(model: nn.Module, resolution: int = 224, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded input of the model's channels at ``resolution``."""
    from .evaluate.train import input_channels

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, input_channels(model), resolution, resolution, generator=g)


def to_onnx(model: nn.Module, path: Union[str, Path], x: torch.Tensor) -> float:
    """Write ``model`` (eval) to ONNX with a dynamic batch axis; return max |logits(ONNX Runtime) - logits(eager)| over ``x``
    and a batch of two (``x``'s first image and its mirror)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    pair = torch.cat([x[:1], x[:1].flip(-1)])  # traced at batch 2: an example batch of 1 would fix the axis at 1
    with quiet_export(), torch.no_grad():
        torch.onnx.export(model, (pair,), str(path), input_names=["input"], output_names=["output"], dynamo=True,
                          external_data=False, dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    try:
        import onnxruntime as ort
    except ImportError:
        raise SpecError("--onnx: checking the file needs ONNX Runtime: pip install 'archspace[onnx]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (x, pair):
        out = session.run(None, {"input": batch.numpy()})[0]
        with torch.no_grad():
            ref = model(batch)
        worst = max(worst, float((torch.from_numpy(out) - ref).abs().max()))
    return worst


def to_torchscript(model: nn.Module, path: Union[str, Path], x: torch.Tensor) -> float:
    """Write ``model`` traced at ``x`` as TorchScript; return max |logits(loaded file) - logits(eager)| on ``x``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,))
        torch.jit.save(traced, str(path))
        out = torch.jit.load(str(path))(x)
        return float((out - model(x)).abs().max())


# --------------------------------------------------------------------------- standalone code

_HEADER = '''"""{name}: a standalone PyTorch model exported by archspace {version} (imports only torch).

    import torch, {module}
    model = {module}.build()                       # the same module tree and state_dict keys as archspace.build
    model.load_state_dict(torch.load("weights.pt"))  # weights saved from the archspace model

Spec: {label}
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _Spec:
    """The spec's values as attributes (archspace's spec classes without validation)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

'''


def _source_objects() -> list[Any]:
    """The classes and functions a built model runs: shared layers, every block kind's module code, stems, the net."""
    import inspect

    from pydantic import BaseModel

    from .blocks import REGISTRY
    from .nn import build as build_mod
    from .nn import layers, stems

    objs: list[Any] = []

    def module_members(mod, skip=()) -> None:
        for name, obj in vars(mod).items():
            if name.startswith("__") or name in skip or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseModel):
                continue  # specs are replaced by the _Spec classes below
            if inspect.isfunction(obj) or (inspect.isclass(obj) and issubclass(obj, nn.Module)):
                objs.append(obj)

    module_members(layers)
    costs = {k.cost.__name__ for k in REGISTRY.values()}
    for kind in REGISTRY.values():
        module_members(inspect.getmodule(kind.module), skip=costs)
    module_members(stems)
    module_members(build_mod, skip={"build", "FeatureNet"})
    return objs


def _spec_classes(spec: Any) -> dict[str, type]:
    """Every spec class in the spec tree, by name."""
    from pydantic import BaseModel

    found: dict[str, type] = {}

    def walk(v: Any) -> None:
        if isinstance(v, BaseModel):
            found[type(v).__name__] = type(v)
            for name in type(v).model_fields:
                walk(getattr(v, name))
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(spec)
    return found


def _spec_class_source(cls: type) -> str:
    """A plain class with ``cls``'s own methods and properties (validators and pydantic machinery left out)."""
    import inspect
    import textwrap

    parts = [f"class {cls.__name__}(_Spec):\n    pass\n"]
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            if getattr(klass, "__module__", "").startswith("pydantic"):
                continue
            fn = member.fget if isinstance(member, property) else member
            try:
                src = textwrap.dedent(inspect.getsource(fn))
            except (OSError, TypeError):
                continue
            parts.append(textwrap.indent(src, "    "))
    return "\n".join(parts)


def _spec_literal(v: Any) -> str:
    from pydantic import BaseModel

    if isinstance(v, BaseModel):
        args = ", ".join(f"{name}={_spec_literal(getattr(v, name))}" for name in type(v).model_fields)
        return f"{type(v).__name__}({args})"
    if isinstance(v, (list, tuple)):
        return "(" + "".join(_spec_literal(x) + ", " for x in v) + ")"
    return repr(v)


def to_code(spec: Any, path: Union[str, Path], num_classes: Optional[int] = None) -> Path:
    """Write a standalone Python module (imports only torch) whose ``build()`` gives the same module tree, the same
    ``state_dict`` keys and the same logits as ``archspace.build(spec, num_classes)``."""
    import inspect

    from ._version import __version__
    from .blocks import REGISTRY
    from .spec.io import load_spec

    spec = load_spec(spec)
    path = Path(path)
    parts = [_HEADER.format(name=spec.name or "model", version=__version__, module=path.stem, label=spec.label())]
    for cls in _spec_classes(spec).values():
        parts.append(_spec_class_source(cls))
    for obj in _source_objects():
        parts.append(inspect.getsource(obj))
    from .nn.stems import STEMS

    parts.append("STEMS = {" + ", ".join(f"{k!r}: {v.__name__}" for k, v in STEMS.items()) + "}\n")
    parts.append("BLOCKS = {" + ", ".join(f"{k!r}: {v.module.__name__}" for k, v in REGISTRY.items()) + "}\n")
    parts.append(f"SPEC = {_spec_literal(spec)}\n")
    parts.append(f'''

def build(num_classes: Optional[int] = {num_classes!r}) -> HybridNet:
    """The network (eval mode is the caller's choice, as with any nn.Module)."""
    return HybridNet(SPEC, num_classes)
''')
    text = "\n\n".join(p.rstrip() + "\n" for p in parts)
    compile(text, str(path), "exec")  # a syntax error here is archspace's bug: fail before writing
    path.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_write_text

    atomic_write_text(path, text)
    return path


def check_code(source: Any, path: Union[str, Path], model: nn.Module, x: torch.Tensor,
               num_classes: Optional[int] = None) -> float:
    """Write the standalone module of ``source`` to ``path`` and check it: built from the file, loaded with
    ``model``'s weights, its largest |logit difference| from ``model`` on ``x``."""
    import importlib.util

    from .spec.io import load_spec

    path = to_code(load_spec(source), path, num_classes)
    loaded = importlib.util.spec_from_file_location(f"_archspace_export_{path.stem}", path)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    standalone = module.build().eval()
    standalone.load_state_dict(model.state_dict())
    with torch.no_grad():
        return float((standalone(x) - model(x)).abs().max())
