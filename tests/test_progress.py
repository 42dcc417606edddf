"""Progress never overshoots: the trainer's events and the search display count the same steps and epochs."""
from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from archspace.evaluate.data import FASHION_MNIST_ROOT
from archspace.evaluate.train import TrainBudget, TrainEvent, train_proxy
from archspace.search.progress import SearchProgress
from archspace.search.trial import Outcome

pytestmark = pytest.mark.skipif(
    not (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def test_events_and_the_search_display_never_exceed_their_totals():
    events: list[TrainEvent] = []
    budget = TrainBudget(epochs=2, train_subset=200, test_subset=100, batch_size=48, warmup_epochs=0.3, threads=1)
    result = train_proxy(tiny_cnn, budget, progress=events.append, fidelities=(1,))  # the newcomer's 2 epochs x 200
    assert result.status == "ok" and result.steps_per_epoch == 4
    assert [e.kind for e in events].count("step") == 8 and [e.kind for e in events][-2:] == ["epoch", "fidelity"]
    for e in events:
        assert 0 <= e.step <= e.steps == 8 and 1 <= e.epoch <= e.epochs == 2
    assert events[-1].step == 8 and events[-1].info().startswith("epoch 2/2 loss ")

    shown = SearchProgress("search", force=True)
    shown.start(total=2, done=0)
    try:
        shown.trial_started(0, Outcome(verdict="complete", values={"mparams": 0.1}))
        for e in events:
            shown.train_event(e)
            task = shown._progress.tasks[-1]
            assert task.total == 8 and 0 <= task.completed <= task.total
            epoch, epochs = task.fields["info"].split()[1].split("/")
            assert int(epoch) <= int(epochs) == 2
        assert task.completed == 8
    finally:
        shown.stop()


def test_an_event_cannot_count_past_its_total():
    with pytest.raises(ValueError, match="a count exceeds its total"):
        TrainEvent(kind="step", epoch=3, epochs=2, step=24, steps=16)
