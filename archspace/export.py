"""Take an architecture out of archspace: ONNX and TorchScript files, with the weights you trained or converted.

``load_network`` builds a spec, preset or Pareto YAML (``runs/<space>/pareto/*.yaml``) and loads a
state dict into it; ``to_onnx`` and ``to_torchscript`` write the files and check them against the eager
model on one input, returning the largest absolute logit difference.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from .spec.errors import SpecError


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


def load_network(source: Any, weights: Optional[Union[str, Path]] = None, num_classes: Optional[int] = None) -> nn.Module:
    """The eval-mode model of a spec, preset or Pareto YAML, with ``weights`` (a state dict file) loaded strictly."""
    from .nn.build import build

    model = build(source, num_classes)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SpecError(f"--weights: {path} is not a file (give a state dict saved with torch.save)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict"):  # a training checkpoint holding the state dict
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise SpecError(f"--weights: {path} holds no state dict")
        missing, unexpected = model.state_dict().keys() - state.keys(), state.keys() - model.state_dict().keys()
        if missing or unexpected:
            raise SpecError(f"--weights: {path} does not fit the network ({len(missing)} missing keys, e.g. "
                            f"{sorted(missing)[:2]}; {len(unexpected)} unexpected, e.g. {sorted(unexpected)[:2]})")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise SpecError(f"--weights: {path}: {str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    return model.eval()


def example_input(model: nn.Module, resolution: int = 224, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded input of the model's channels at ``resolution``."""
    from .evaluate.train import input_channels

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, input_channels(model), resolution, resolution, generator=g)


def to_onnx(model: nn.Module, path: Union[str, Path], x: torch.Tensor) -> float:
    """Write ``model`` (eval, traced at ``x``) to ONNX; return max |logits(ONNX Runtime) - logits(eager)| on ``x``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with quiet_export(), torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["output"], dynamo=True,
                          external_data=False)
    try:
        import onnxruntime as ort
    except ImportError:
        raise SpecError("--onnx: checking the file needs ONNX Runtime: pip install 'archspace[onnx]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    return float((torch.from_numpy(out) - ref).abs().max())


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
