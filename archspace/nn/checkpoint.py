"""Checkpoint files: the one loader of state dicts (torch files and .npz) and the official-weights conversion."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch

from ..spec.errors import SpecError

STATE_KEYS = ("model", "state_dict", "model_ema")  # where training checkpoints keep the state dict, in this order
SUFFIXES = (".pth", ".pt", ".npz")


def load_state_dict(path: Union[str, Path], field: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict in a torch file (weights only) or an ``.npz``; a training checkpoint's ``model``,
    ``state_dict`` or ``model_ema`` entry when it holds one. SpecError naming ``field`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{field}: {path} is not a file (give a state dict saved with torch.save, or an .npz)")
    if path.suffix == ".npz":
        import numpy as np

        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SpecError(f"{field}: {path} is not a readable .npz ({' '.join(str(exc).split())[:120]})") from None
        keys = [k for k in z.files if k.startswith("state/")]
        arrays = {k[len("state/"):]: z[k] for k in keys} if keys else {k: z[k] for k in z.files}
        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for files that are not weights-only pickles
        raise SpecError(f"{field}: {path}: cannot load as a weights-only checkpoint "
                        f"({' '.join(str(exc).split())[:120]})") from None
    for key in STATE_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpecError(f"{field}: {path} holds no state dict (found {type(obj).__name__})")
    return obj


def load_into(model: torch.nn.Module, path: Union[str, Path], field: str = "--weights") -> torch.nn.Module:
    """``model`` with the state dict of ``path`` loaded strictly; a mismatch is one line naming the keys."""
    state = load_state_dict(path, field)
    own = model.state_dict()
    missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
    if missing or unexpected:
        raise SpecError(f"{field}: {path} does not fit the network ({len(missing)} missing keys, e.g. "
                        f"{sorted(missing)[:2]}; {len(unexpected)} unexpected, e.g. {sorted(unexpected)[:2]})")
    wrong = next((k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)), None)
    if wrong is not None:
        raise SpecError(f"{field}: {path}: {wrong} has shape {tuple(state[wrong].shape)}, the network's is "
                        f"{tuple(own[wrong].shape)} (weights of another architecture?)")
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()})
    return model


def convert_file(checkpoint: Union[str, Path], spec: Any, out: Union[str, Path]) -> dict[str, Any]:
    """An official SMT/EfficientMod checkpoint mapped onto archspace's names, checked by loading it into the
    spec's network, written atomically to ``out`` (.pth/.pt: torch.save; .npz: numpy); returns what was written."""
    from ..files import atomic_write
    from .build import HybridNet
    from .convert import convert_official

    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise SpecError(f"--out: {out} must end in .pth, .pt or .npz")
    state = convert_official(load_state_dict(checkpoint, "checkpoint"), spec)
    model = HybridNet(spec)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()})

    def write(tmp: str) -> None:
        if out.suffix == ".npz":
            import numpy as np

            np.savez(tmp, **{k: v.numpy() for k, v in state.items()})
        else:
            torch.save(state, tmp)

    atomic_write(out, write)
    return {"file": str(out), "tensors": len(state),
            "values": sum(v.numel() for v in state.values() if v.is_floating_point())}
