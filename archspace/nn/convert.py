"""Official SMT / EfficientMod checkpoints -> archspace parameter names."""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import torch

from ..spec.errors import SpecError
from ..spec.net import NetSpec

_SMT_BLOCK = [
    (r"attn\.local_conv_(\d+)\.", lambda m: f"mixer.local_convs.{int(m.group(1)) - 1}."),
    (r"attn\.proj0\.", "mixer.agg.0."),
    (r"attn\.bn\.", "mixer.agg.1."),
    (r"attn\.proj1\.", "mixer.agg.3."),
    (r"attn\.(v|s)\.", r"mixer.\1."),
    (r"mlp\.dwconv\.dwconv\.", "mlp.dwconv."),
]
_EFFMOD_BLOCK = [
    (r"gamma_1$", "gamma"),
    (r"mlp\.context_layer\.context_list\.0\.", "mod.ctx_conv."),
    (r"mlp\.context_layer\.(f|g)\.", r"mod.\1."),
    (r"mlp\.(fc1|fc2)\.", r"mod.\1."),
]


def _sub(rules: list, text: str) -> str:
    for pattern, repl in rules:
        new = re.sub(r"^" + pattern, repl, text)
        if new != text:
            return new
    return text


def official_family(keys) -> str:
    """'smt' or 'efficientmod' from the names of an official state dict."""
    keys = list(keys)
    if any(k.startswith("patch_embed1.") for k in keys):
        return "smt"
    if any(k.startswith("layers.0.") for k in keys):
        return "efficientmod"
    raise SpecError("state_dict: neither an official SMT (patch_embed1.*) nor EfficientMod (layers.0.*) checkpoint")


def _smt_name(key: str, spec: NetSpec) -> str:
    fixed = {"patch_embed1.conv.0.": "stem.conv1.", "patch_embed1.conv.1.": "stem.bn.",
             "patch_embed1.conv.3.": "stem.conv2.", "patch_embed1.norm.": "stem.norm.", "head.": "head."}
    for old, new in fixed.items():
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"patch_embed(\d)\.(proj|norm)\.(.*)", key)
    if m:
        part = "conv" if m.group(2) == "proj" else "norm"
        return f"stages.{int(m.group(1)) - 1}.downsample.{part}.{m.group(3)}"
    m = re.match(r"norm(\d)\.(.*)", key)
    if m:
        return f"stages.{int(m.group(1)) - 1}.norm.{m.group(2)}"
    m = re.match(r"block(\d)\.(\d+)\.(.*)", key)
    if m:
        i, j, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
        if spec.stages[i].blocks[j].kind == "sam" and rest.startswith("attn.proj."):
            rest = "mixer.proj." + rest[len("attn.proj."):]
        return f"stages.{i}.blocks.{j}.{_sub(_SMT_BLOCK, rest)}"
    return key


def _effmod_name(key: str, spec: NetSpec) -> str:
    if key.startswith("patch_embed.proj."):
        return "stem.conv." + key[len("patch_embed.proj."):]
    if key.startswith("patch_embed.norm."):
        return "stem.norm." + key[len("patch_embed.norm."):]
    if key.startswith("norm."):
        return f"stages.{len(spec.stages) - 1}.norm." + key[len("norm."):]
    m = re.match(r"layers\.(\d+)\.downsample\.(proj|norm)\.(.*)", key)
    if m:
        part = "conv" if m.group(2) == "proj" else "norm"
        return f"stages.{int(m.group(1)) + 1}.downsample.{part}.{m.group(3)}"
    m = re.match(r"layers\.(\d+)\.blocks\.(\d+)\.(.*)", key)
    if m:
        i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if spec.stages[i].blocks[j].kind == "effmod":
            rest = _sub(_EFFMOD_BLOCK, rest)
        return f"stages.{i}.blocks.{j}.{rest}"
    return key


def convert_official(state_dict: Mapping[str, Any], spec: NetSpec) -> dict[str, torch.Tensor]:
    """Map an official SMT or EfficientMod state dict onto the names of ``build(spec)``; checks names and shapes."""
    from .build import HybridNet

    family = official_family(state_dict.keys())
    rename = _smt_name if family == "smt" else _effmod_name
    out: dict[str, torch.Tensor] = {}
    try:
        for key, value in state_dict.items():
            tensor = torch.from_numpy(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
            out[rename(key, spec)] = tensor
    except IndexError:
        raise SpecError(f"state_dict: block {key!r} does not exist in the spec (is it the spec of this checkpoint?)") from None
    with torch.device("meta"):
        expected = HybridNet(spec, spec.num_classes).state_dict()
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise SpecError(
            f"state_dict: does not fit the spec ({what}; {len(missing)} missing, {len(unexpected)} unexpected): "
            f"check the spec matches the checkpoint's constructor arguments"
        )
    for key, ref in expected.items():
        if tuple(out[key].shape) != tuple(ref.shape):
            raise SpecError(f"state_dict: {key} has shape {tuple(out[key].shape)}, the spec needs {tuple(ref.shape)}")
    return out
