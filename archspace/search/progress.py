"""A rich progress display for searches: trials done, failures, front size, ETA, and the current trial's training."""
from __future__ import annotations

import time
from typing import Any, Optional


class SearchProgress:
    """Progress of a search (every engine calls it), drawn with rich (plain lines without a TTY); counts never pass
    their totals."""

    def __init__(self, label: str, enabled: bool = True, force: bool = False):
        self.label = label
        self.enabled = enabled
        self.force = force  # draw the bar even without a terminal
        self.failures = 0
        self.front = 0
        self._progress = None
        self._task = None
        self._sub = None
        self._t0 = time.monotonic()

    def start(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self._done0 = done
        if done:
            console.print(f"resuming: {done} finished trial(s) kept")
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                  TimeRemainingColumn(), console=console, transient=False,
                                  disable=not console.is_terminal and not self.force)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total, completed=min(done, total), info=self._info())
        self._plain = not console.is_terminal
        self._console = console

    def _info(self) -> str:
        return f"failed {self.failures} | front {self.front}"

    def trial_started(self, number: int, outcome: Any) -> None:
        if self._progress is None:
            return
        if self._sub is not None:
            self._progress.remove_task(self._sub)
        self._sub = self._progress.add_task(f"  trial {number} ({outcome.values.get('mparams', 0):.2f}M)", total=None, info="")

    def train_event(self, event: Any) -> Optional[bool]:
        if self._progress is None or self._sub is None:
            return None
        self._progress.update(self._sub, total=event.steps, completed=event.step, info=event.info())
        return None

    def trial_done(self, number: int, outcome: Any, summary: dict) -> None:
        if outcome.verdict != "complete":
            self.failures += 1
        self.front = summary.get("front", self.front)
        if self._progress is None:
            return
        if self._sub is not None:
            self._progress.remove_task(self._sub)
            self._sub = None
        task = self._progress.tasks[0]
        self._progress.update(self._task, completed=min(task.completed + 1, task.total), info=self._info())
        vals = ", ".join(f"{k} {v:.4g}" for k, v in outcome.values.items())
        line = f"trial {number}: {outcome.verdict}" + (f" ({outcome.reason})" if outcome.reason else "") + (f": {vals}" if vals else "")
        if self._plain:
            elapsed = time.monotonic() - self._t0
            here = task.completed - self._done0  # trials this session ran: a resume's old trials took no time here
            eta = elapsed / here * (task.total - task.completed) if task.total and here > 0 else 0
            line += f"  [{int(task.completed)}/{int(task.total)} done, {self._info()}, eta {eta:.0f}s]"
        self._console.print(line, highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()

