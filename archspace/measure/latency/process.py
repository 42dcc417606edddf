"""Process-wide settings that CPU timing depends on, applied explicitly by the commands that measure.

Nothing here runs at import. :func:`apply_process_settings` is called by ``archspace profile``,
``calibrate``, ``ablate`` and the search's latency step; every latency record says the state it
was taken under (``LatencyProtocol.retain_freed_memory`` and ``omp_wait_policy``).
"""
from __future__ import annotations

import os
import sys

_RETAINING = False


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory mapped for the rest of this process; True if it now does.

    By default glibc returns large freed blocks to the OS, so every CPU forward pass page-faults
    its activations back in, a different number of times from pass to pass (figures: README,
    "Measuring cost"). Raising the mmap threshold to 32 MiB and turning off trimming removes those
    faults, the way jemalloc/tcmalloc deployments run. It cannot be undone (the process keeps its
    peak heap), so only :func:`apply_process_settings`, called by the commands that measure, does
    it; False where the C library is not glibc.
    """
    global _RETAINING
    if _RETAINING:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = all(
            libc.mallopt(option, value) == 1
            for option, value in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
        )
    except (OSError, AttributeError):
        return False
    _RETAINING = ok
    return ok


def retaining() -> bool:
    """Whether this process keeps freed memory mapped (see :func:`retain_freed_memory`)."""
    return _RETAINING


def apply_process_settings(retain_memory: bool = True) -> dict:
    """Apply the measuring process settings (glibc keeps freed memory when ``retain_memory``) and return them.

    The OpenMP wait policy must be set before torch starts; ``archspace.cli.process_settings`` does that
    for the commands, and this records it.
    """
    retained = retain_freed_memory() if retain_memory else _RETAINING
    return {"retain_freed_memory": retained, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
