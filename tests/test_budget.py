"""One typed training budget (torch-free, one default per device) and one source of latency defaults."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archspace.evaluate.budget import ProxyNetwork, TrainBudget
from archspace.measure.latency.settings import LatencySettings
from archspace.search.rundir import comparable, prepare_run
from archspace.search.space import Evaluator, Measure, load_space
from archspace.spec.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "experiments" / "results" / "search_smt" / "space.yaml"  # written before the budget was typed


def test_the_budget_imports_without_torch() -> None:
    code = "import archspace.evaluate.budget, sys; assert 'torch' not in sys.modules; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_one_default_per_device_and_one_line_protocol() -> None:
    assert TrainBudget.for_device("cpu") == TrainBudget.for_device("cpu:0") == TrainBudget.cpu_default()
    assert TrainBudget.for_device("cuda:1", epochs=2) == TrainBudget.gpu_default(epochs=2)
    assert TrainBudget.cpu_default().describe() == ("1 epoch x 2,400 fashion-mnist images (test 1,000) at 32 px, "
                                                    "stem stride 2, 0.5x width, batch 48")
    assert TrainBudget.gpu_default().describe("cifar10") == "3 epochs x all cifar10 images (test all) at 32 px, batch 1024"
    net = ProxyNetwork(width_mult=0.5, stem_stride=2, resolution=32, num_classes=10, params=1_310_000, full_params=4_720_000)
    assert net.describe() == "0.5x width, stem stride 2, 32 px, 10 classes: 1.31M params (full network 4.72M)"


def test_an_evaluator_budget_is_resolved_once_for_its_device() -> None:
    ev = Evaluator.model_validate({"budget": {"threads": 2, "epochs": 2}})
    assert isinstance(ev.budget, TrainBudget) and ev.budget == TrainBudget.cpu_default(threads=2, epochs=2)
    assert Evaluator().budget == TrainBudget.cpu_default()
    gpu = Evaluator.model_validate({"device": "cuda", "budget": {"threads": 2}})
    assert gpu.budget == TrainBudget.gpu_default(threads=2)
    assert Evaluator.model_validate(ev.model_dump(mode="json")) == ev  # a stored, whole budget reads back as itself
    assert Evaluator.model_validate_json(ev.model_dump_json()) == ev
    assert ev.on_device("cuda").budget == TrainBudget.gpu_default(threads=2, epochs=2)
    assert ev.on_device("cuda").on_device("cpu") == ev


def test_a_bad_budget_names_its_field(tmp_path: Path) -> None:
    space = yaml.safe_load(STORED.read_text())
    for budget, message in (({"epochs": 0}, "evaluator.budget.epochs: 0 is not valid"),
                            ({"epoch": 2}, "evaluator.budget.epoch: unknown field"),
                            ({"warmup_epochs": 2}, "evaluator.budget: warmup_epochs=2.0 must be below epochs=1")):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**space, "evaluator": {**space["evaluator"], "budget": budget}}))
        with pytest.raises(SpecError, match=message.replace(".", r"\.")):
            load_space(path)


def test_a_run_folder_written_before_the_typed_budget_is_the_same_space(tmp_path: Path) -> None:
    old = load_space(STORED)
    assert old.evaluator.budget == TrainBudget.cpu_default(threads=2)  # the file's overrides of the CPU default
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(STORED, run / "space.yaml")
    assert prepare_run(load_space(ROOT / "spaces" / "smt.yaml"), run) == run  # recognised: no 'different space'
    rewritten = load_space(run / "space.yaml")  # now in the new form: the whole budget
    assert yaml.safe_load((run / "space.yaml").read_text())["evaluator"]["budget"]["lr"] == 0.002
    assert comparable(rewritten) == comparable(old)
    changed = yaml.safe_load(STORED.read_text())
    changed["evaluator"]["budget"]["epochs"] = 2
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(changed))
    with pytest.raises(SpecError, match="differs in evaluator"):
        prepare_run(load_space(tmp_path / "other.yaml"), run)


def test_latency_defaults_have_one_source() -> None:
    shared = set(LatencySettings.model_fields)
    assert set(Measure.model_fields) - shared == {"latency", "calibrate", "profile", "report_profiles"}
    assert Measure().latency_settings() == LatencySettings()
    assert (LatencySettings().warmup, LatencySettings().repeats) == (3, 15)
    assert LatencySettings.model_fields["repeats"].description  # why the default is what it is
    with pytest.raises(ValueError, match="repeats: expected an int >= 1 and at most 65,536"):
        LatencySettings(repeats=10**9)
    with pytest.raises(ValueError, match="warmup"):
        Measure.model_validate({"warmup": -1})
    with pytest.raises(ValueError, match="threads"):
        Measure.model_validate({"threads": True})
