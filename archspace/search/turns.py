"""Workers on one machine take turns with its cores: a network is timed alone, never beside another's training.

Workers of one run directory (``--workers N``, several ``archspace search`` processes on one storage, Ray
trials on one node) share this machine's cores. A latency timed while another worker trains is inflated by
that contention, so timing takes the cores exclusively and training holds them shared, giving way between
optimizer steps. Two lock files in the run directory carry this between processes (``flock``, released by
the kernel when a process dies, so a killed worker never leaves the cores taken):

- ``timing.gate``: a worker about to time takes it exclusively, so no trainer starts a new step;
- ``timing.lock``: trainers hold it shared during their steps; the timer takes it exclusively once the
  trainers have finished the step they were in, times, and lets them go on.

Trainers pass the gate (shared, released at once) before each step, so a waiting timer is never starved.
The cost to a trainer is four system calls a step, and the pause while another worker times a network
(about a second, once per trial). Latency on different machines needs no turn: they share no cores.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

GATE, LOCK = "timing.gate", "timing.lock"


class Turns:
    """The turn-taking of one run directory's workers in this process (see the module's doc)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._gate: Optional[int] = None
        self._lock: Optional[int] = None
        self.waited_s = 0.0  # time this process spent waiting for its turns

    def _fds(self) -> Optional[tuple[int, int]]:
        """The two lock files, opened once; None where the run directory is not on this machine (a Ray node
        elsewhere shares no cores with the others, so it needs no turn)."""
        if self._gate is None:
            try:
                gate = os.open(self.run_dir / GATE, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return None
            self._gate, self._lock = gate, os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        return self._gate, self._lock  # type: ignore[return-value]

    def _take(self, fd: int, how: int) -> None:
        t0 = time.perf_counter()
        fcntl.flock(fd, how)
        self.waited_s += time.perf_counter() - t0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Hold the cores alone: wait for every other worker's current step, keep new steps from starting."""
        fds = self._fds()
        if fds is None:
            yield
            return
        gate, lock = fds
        self._take(gate, fcntl.LOCK_EX)
        try:
            self._take(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    def _pass_gate(self, gate: int, lock: int) -> None:
        self._take(gate, fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        self._take(lock, fcntl.LOCK_SH)

    @contextlib.contextmanager
    def working(self) -> Iterator[Callable[[], None]]:
        """Hold the cores shared while training; the ``step()`` it yields gives way to a waiting timer."""
        fds = self._fds()
        if fds is None:
            yield lambda: None
            return
        gate, lock = fds
        self._pass_gate(gate, lock)

        def step() -> None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            self._pass_gate(gate, lock)

        try:
            yield step
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._gate, self._lock):
            if fd is not None:
                os.close(fd)
        self._gate = self._lock = None

    def __getstate__(self) -> dict[str, Any]:  # sent to other processes by path, never by descriptor
        return {"run_dir": str(self.run_dir)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Path(state["run_dir"]))  # type: ignore[misc]


@contextlib.contextmanager
def no_turn() -> Iterator[None]:
    yield


@contextlib.contextmanager
def no_work() -> Iterator[Callable[[], None]]:
    yield lambda: None
