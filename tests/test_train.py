"""Proxy training on real Fashion-MNIST with tiny CNNs: signal, reproducibility, failure and pruning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from archspace.evaluate.data import FASHION_MNIST_ROOT
from archspace.evaluate.train import TrainBudget, TrainEvent, TrainResult, train_proxy

pytestmark = pytest.mark.skipif(
    not (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


def tiny_cnn(width: int = 16) -> nn.Module:
    """Conv-BN-ReLU x2, pool, linear: a few thousand parameters."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10),
    )


SMALL = TrainBudget(epochs=2, train_subset=1000, test_subset=500, batch_size=50, threads=1)


def test_tiny_cnn_beats_chance_by_a_margin():
    budget = TrainBudget(epochs=4, train_subset=3000, test_subset=1000, batch_size=32, lr=3e-3,
                         augment=False, threads=1)
    result = train_proxy(tiny_cnn, budget, fidelities=(1, 2))
    assert result.status == "ok", result.reason
    assert result.top1 is not None and result.top1 > 0.5
    assert result.top5 is not None and result.top5 >= result.top1
    assert [p.epoch for p in result.fidelities] == [1, 2, 4]
    assert len(result.loss_curve) == 4 and result.loss_curve[-1] < result.loss_curve[0]
    assert result.train_size == 3000 and result.test_size == 1000
    assert result.images_per_s > 0 and result.device.startswith("cpu")
    assert result.steps_per_epoch == 93


def test_bit_reproducible_on_cpu():
    a = train_proxy(tiny_cnn, SMALL)
    b = train_proxy(tiny_cnn, SMALL)
    assert a.loss_curve == b.loss_curve and a.top1 == b.top1 and a.top5 == b.top5
    c = train_proxy(tiny_cnn, SMALL.model_copy(update={"seed": 1}))
    assert c.loss_curve != a.loss_curve


def test_divergence_is_reported_not_raised():
    result = train_proxy(tiny_cnn, SMALL.model_copy(update={"lr": 1e6, "grad_clip": None}))
    assert result.status == "failed"
    assert result.reason is not None and "non-finite" in result.reason and "lr" in result.reason
    assert result.top1 is None


def test_global_state_is_restored():
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    train_proxy(tiny_cnn, SMALL.model_copy(update={"threads": 1, "epochs": 1}))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


def test_progress_events_and_pruning():
    events: list[TrainEvent] = []

    def stop_after_first_fidelity(event: TrainEvent) -> bool:
        events.append(event)
        return event.kind == "fidelity"

    budget = SMALL.model_copy(update={"epochs": 3})
    result = train_proxy(tiny_cnn, budget, progress=stop_after_first_fidelity, fidelities=(1,))
    assert result.status == "pruned" and result.epochs_done == 1
    assert [p.epoch for p in result.fidelities] == [1]
    assert result.top1 == result.fidelities[0].top1
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 20 and kinds[-2:] == ["epoch", "fidelity"]
    assert events[0].steps == 60


def test_trains_a_module_in_place_and_returns_a_record():
    model = tiny_cnn()
    before = model[0].weight.detach().clone()
    result = train_proxy(model, SMALL.model_copy(update={"epochs": 1}))
    assert isinstance(result, TrainResult)
    assert not torch.equal(before, model[0].weight)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert TrainResult.model_validate_json(result.model_dump_json()) == result


def test_onecycle_and_sgd_run():
    budget = SMALL.model_copy(update={"epochs": 1, "schedule": "onecycle", "optimizer": "sgd", "lr": 0.05})
    assert train_proxy(tiny_cnn, budget).status == "ok"


def test_budget_validation_names_the_field():
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainBudget(epochs=1, warmup_epochs=2)
    with pytest.raises(ValueError, match="batch_size"):
        TrainBudget(batch_size=0)
    assert TrainBudget.cpu_default().resolution == 32
    assert TrainBudget.gpu_default().batch_size >= 1024


def test_bad_factory_and_device():
    with pytest.raises(TypeError, match="factory"):
        train_proxy(lambda: "nope", SMALL)  # type: ignore[arg-type,return-value]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'"):
            train_proxy(tiny_cnn, SMALL, device="cuda")


def test_no_budget_means_the_devices_default():
    result = train_proxy(tiny_cnn, fidelities=())
    assert result.budget == TrainBudget.for_device("cpu").without_network_changes()  # not TrainBudget(): 3 epochs, 5,000
    assert result.epochs_done == 1 and result.train_size == 2400 and result.test_size == 1000


def test_a_spec_trains_a_head_of_the_datasets_class_count():
    import archspace
    from archspace.measure.complexity import complexity

    spec = archspace.load_spec("smt_t")
    assert spec.num_classes == 1000
    budget = TrainBudget.cpu_default(train_subset=60, test_subset=50, batch_size=30, threads=1)
    result = train_proxy(spec, budget)
    assert result.status == "ok" and result.network is not None
    proxy = spec.with_stem_stride(2).with_width_mult(0.5)
    assert result.network.num_classes == 10 and result.network.width_mult == 0.5 and result.network.stem_stride == 2
    assert result.params == result.network.params == sum(p.numel() for p in archspace.build(proxy, 10).parameters())
    assert result.network.full_params == complexity(spec)["params"] == sum(p.numel() for p in archspace.build(spec).parameters())
    assert result.describe() == ("proxy training: 1 epoch x 60 fashion-mnist images (test 50) at 32 px, stem stride 2, "
                                 f"0.5x width, batch 30 on {result.device}; trained 0.5x width, stem stride 2, 32 px, "
                                 f"10 classes: {result.params / 1e6:.2f}M params (full network "
                                 f"{result.network.full_params / 1e6:.2f}M)")


def test_a_module_with_another_head_is_refused():
    def thousand_way() -> nn.Module:
        net = tiny_cnn()
        net[-1] = nn.Linear(32, 1000)
        return net

    with pytest.raises(ValueError, match="1000 outputs but fashion-mnist has 10 classes; build it with num_classes=10"):
        train_proxy(thousand_way, SMALL)
