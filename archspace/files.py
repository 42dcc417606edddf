"""Files: atomic writes (a reader never sees half a file, a failure leaves nothing behind) and safe file names."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str, field: str = "name") -> str:
    """A name used as a file or folder name: letters, digits, '_', '-', '.'; no path separators, no '..'."""
    if not SAFE_NAME.match(name or "") or ".." in name:
        raise ValueError(f"{name!r} must be a plain file name (letters, digits, _ - .; no '/', no '..', at most 100 characters)")
    return name


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary sibling, then rename it into place with the usual permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
