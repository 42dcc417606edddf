"""Run a command in a pseudo-terminal, as a person at a terminal would (rich draws its live display there)."""
from __future__ import annotations

import os
import pty
import re
import select
import time
from typing import Optional, Sequence

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_in_terminal(cmd: Sequence[str], timeout_s: float = 300.0, cwd: Optional[str] = None,
                    env: Optional[dict] = None) -> tuple[int, str]:
    """(exit code, everything the terminal showed, escape sequences removed); the command is killed after ``timeout_s``."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal's side
        if cwd:
            os.chdir(cwd)
        os.execvpe(cmd[0], list(cmd), {**os.environ, **(env or {}), "COLUMNS": "160", "TERM": "xterm"})
    chunks, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), ANSI.sub("\n", b"".join(chunks).decode(errors="replace"))
