"""Experiment tracking: each trial's training curve and objectives written for TensorBoard.

``archspace search SPACE --log tensorboard [DIR]`` (default ``RUN_DIR/tensorboard``); view with
``tensorboard --logdir DIR``. Needs ``pip install 'archspace[tensorboard]'``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..spec.errors import SpecError


class TensorBoardLog:
    """One TensorBoard run per trial (``trial_0007``): the loss curve, test top-1 per fidelity, the objectives."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SpecError("--log tensorboard: needs TensorBoard: pip install 'archspace[tensorboard]'") from None
        self._writer = SummaryWriter
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def trial(self, number: int, outcome: Any, label: Optional[str] = None) -> Path:
        """Write one finished trial (an :class:`~archspace.search.trial.Outcome`; ``label``: its architecture
        when the outcome holds no spec); returns its run folder."""
        path = self.log_dir / f"trial_{number:04d}"
        writer = self._writer(log_dir=str(path))
        try:
            acc = outcome.accuracy or {}
            for step, loss in enumerate(acc.get("loss_curve") or []):
                writer.add_scalar("train/loss", float(loss), step)
            for point in acc.get("fidelities") or []:
                writer.add_scalar("test/top1", 100.0 * float(point["top1"]), int(point["epoch"]))
            for key, value in outcome.values.items():
                writer.add_scalar(f"objectives/{key}", float(value), 0)
            if label is None:
                label = outcome.spec.label() if outcome.spec is not None else ""
            writer.add_text("trial", f"verdict {outcome.verdict}" + (f" ({outcome.reason})" if outcome.reason else "")
                            + (f"; {label}" if label else ""), 0)
        finally:
            writer.close()
        return path
