"""Timing one call in milliseconds: CUDA events on a GPU, else perf_counter or thread CPU time."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


class Timer:
    """Collects the times of calls on ``dev``: CUDA events read once at the end, else one clock reading per call."""

    def __init__(self, dev: torch.device, use_events: bool, clock: str = "wall") -> None:
        self.dev = dev
        self.use_events = use_events and dev.type == "cuda"
        self.now = time.thread_time if clock == "thread" else time.perf_counter
        self.pending: list[tuple[Any, Any]] = []
        self.samples: list[float] = []

    def time(self, call: Callable[[], Any]) -> None:
        if self.use_events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            self.pending.append((start, end))
        else:
            t0 = self.now()
            call()
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            self.samples.append((self.now() - t0) * 1e3)

    def results(self) -> list[float]:
        if self.pending:
            torch.cuda.synchronize(self.dev)
            self.samples.extend(start.elapsed_time(end) for start, end in self.pending)
            self.pending.clear()
        return self.samples
