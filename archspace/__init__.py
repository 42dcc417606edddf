"""archspace: design-space exploration for hybrid SMT / EfficientMod / MSA vision networks.

Public API: ``load_spec``, ``build``, ``spec_from_official``, ``convert_official``, ``NetSpec``,
``SpecError``, ``dump_spec``, ``preset_names``. Heavy dependencies (fvcore, optuna, ray, matplotlib)
load only when the feature that needs them is used.
"""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:  # idle OpenMP threads sleep instead of spinning: on a shared 2-core machine
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning made 2-thread training 10x slower

from .nn.build import BLOCKS, HybridNet, build
from .nn.convert import convert_official
from .spec.errors import SpecError
from .spec.io import dump_spec, load_spec, preset_names, spec_hash
from .spec.net import NetSpec
from .spec.official import spec_from_official

__all__ = [
    "BLOCKS", "HybridNet", "NetSpec", "SpecError", "build", "convert_official", "dump_spec",
    "load_spec", "preset_names", "spec_from_official", "spec_hash",
]
__version__ = "0.1.0"
