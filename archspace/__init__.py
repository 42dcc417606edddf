"""archspace: design-space exploration for hybrid SMT / EfficientMod / MSA vision networks.

Public API: ``load_spec``, ``build``, ``spec_from_official``, ``convert_official``, ``NetSpec``,
``SpecError``, ``dump_spec``, ``preset_names``, ``spec_hash``, ``BLOCKS``, ``HybridNet``, ``results``,
``run_search`` (a whole search run, :mod:`archspace.jobs`), ``SearchRun``, ``analyze`` (populations of runs compared,
:mod:`archspace.analysis`). Each loads
on first use, so importing archspace (or its CLI) neither imports torch nor changes the process:
the commands that train or measure set their thread policy themselves (see ``archspace.cli``).
"""
from __future__ import annotations

from archspace._lazy import lazy_attributes
from archspace._version import __version__  # noqa: F401  (archspace.__version__)


_LAZY = {
    "BLOCKS": "nn.build", "HybridNet": "nn.build", "build": "nn.build",
    "convert_official": "nn.convert",
    "SpecError": "spec.errors",
    "dump_spec": "spec.io", "load_spec": "spec.io", "preset_names": "spec.io", "spec_hash": "spec.io",
    "NetSpec": "spec.net",
    "analyze": "analysis",
    "results": "jobs", "run_search": "jobs", "SearchRun": "jobs",
    "spec_from_official": "spec.official",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
