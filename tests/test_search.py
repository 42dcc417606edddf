"""Searches on a real Optuna SQLite storage: results files, resume, SIGKILL mid-trial, cache, report/best."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from archspace.cli import main
from archspace.report.pareto import front_data
from archspace.search.engine import finished, run_worker
from archspace.search.space import load_space
from archspace.search.front import hypervolume, pareto_front
from archspace.search.results import read_table

REPO = Path(__file__).resolve().parents[1]

CHEAP = {
    "name": "cheap", "base": "smt_m_6p5m",
    "params": [
        {"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
        {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2},
        {"name": "agg", "path": "stages[*].sam.aggregation", "choices": ["saa", "none"]},
    ],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 6}, "seed": 1,
}


def write_space(tmp_path, data) -> Path:
    p = tmp_path / f"{data['name']}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def load(run_dir: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")


def test_search_writes_results_and_resumes(tmp_path, capsys):
    space_file = write_space(tmp_path, CHEAP)
    run = tmp_path / "run"
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet"]) == 0
    for name in ("trials.csv", "pareto.csv", "summary.json", "space.yaml", "pareto_latency.png", "pareto_flops.png",
                 "pareto_flops.svg", "hypervolume.png", "hypervolume.svg"):
        if name == "pareto_latency.png":
            assert not (run / name).exists()  # no latency measured, no latency plot
            continue
        assert (run / name).exists(), name
    rows = read_table(run / "trials.csv")
    assert len(rows) == 6 and [r["number"] for r in rows] == list(range(6))
    assert rows[0]["reference"] == "base"
    assert rows[0]["mparams"] == pytest.approx(6_127_050 / 1e6)  # smt_m_6p5m with a 10-class head
    front = read_table(run / "pareto.csv")
    specs = sorted((run / "pareto").glob("*.yaml"))
    assert len(specs) == len(front) >= 1
    import archspace
    for f in specs:  # every Pareto spec is a buildable file
        assert archspace.build(archspace.load_spec(str(f))).num_classes == 10
    # resume with a larger budget: the six finished trials are kept, two more run
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet", "--trials", "8"]) == 0
    rows2 = read_table(run / "trials.csv")
    assert len(rows2) == 8 and rows2[:6] == rows
    # same command again: nothing to do, nothing repeated
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet", "--trials", "8"]) == 0
    assert len(read_table(run / "trials.csv")) == 8
    capsys.readouterr()
    assert main(["best", str(run), "--format", "json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert {r["number"] for r in best} == {r["number"] for r in read_table(run / "pareto.csv")}


def test_repeated_architectures_reuse_results(tmp_path):
    data = {**CHEAP, "name": "dup", "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [2, 4]}],
            "budget": {"trials": 6}}
    space = load_space(write_space(tmp_path, data))
    summary = run_worker(space, tmp_path / "run")
    rows = read_table(tmp_path / "run" / "trials.csv")
    assert summary["trials"] == 6
    hashes = {r["spec_hash"] for r in rows}
    assert len(hashes) == 2  # only two architectures exist
    cached = [r for r in rows if r["cached_from"] is not None]
    assert len(cached) == 4
    for r in cached:
        src = rows[int(r["cached_from"])]
        assert r["spec_hash"] == src["spec_hash"] and r["accuracy"] == src["accuracy"] and r["gmacs"] == src["gmacs"]


def test_a_grid_containing_the_base_evaluates_every_grid_point_once(tmp_path):
    """A 3x5 grid holding the base (heads 4, 2 MSA blocks): 15 trials, one per grid point, the base's point marked as
    the reference base; no duplicate of the base takes a slot."""
    data = {**CHEAP, "name": "gridbase", "sampler": {"kind": "grid"}, "budget": {"trials": 50},
            "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
                       {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 4}]}
    summary = run_worker(load_space(write_space(tmp_path, data)), tmp_path / "run")
    rows = read_table(tmp_path / "run" / "trials.csv")
    points = sorted((r["param_heads"], r["param_s3_msa"]) for r in rows)
    assert summary["trials"] == 15 and points == [(h, m) for h in (1, 2, 4) for m in range(5)]
    assert all(r["verdict"] == "complete" and r["cached_from"] is None for r in rows)
    assert [(r["param_heads"], r["param_s3_msa"]) for r in rows if r["reference"] == "base"] == [(4, 2)]
    assert len(load(tmp_path / "run", "gridbase").get_trials(deepcopy=False)) == 15


def test_invalid_and_infeasible_samples_are_recorded(tmp_path):
    data = {**CHEAP, "name": "bad",
            "params": [{"name": "s1_sam", "path": "stages[0].stack.counts.sam", "low": 0, "high": 1},
                       {"name": "width3", "path": "stages[2].width", "choices": [256, 384]}],
            "constraints": {"max_params": 6_000_000}, "budget": {"trials": 8}, "enqueue_base": False}
    space = load_space(write_space(tmp_path, data))
    run_worker(space, tmp_path / "run")
    rows = read_table(tmp_path / "run" / "trials.csv")
    verdicts = {r["verdict"] for r in rows}
    assert len(rows) == 8 and verdicts <= {"complete", "invalid", "infeasible"}
    for r in rows:
        p = {k[len("param_"):]: v for k, v in r.items() if k.startswith("param_")}
        if p["s1_sam"] == 0:
            assert r["verdict"] == "invalid" and "block counts must be >= 0 and not all zero" in r["reason"]
        elif p["width3"] == 384:
            assert r["verdict"] == "infeasible" and "> max_params 6,000,000" in r["reason"]
            assert r["state"] == "PRUNED" and r["mparams"] > 6.0 and r["accuracy"] is None  # not trained
        else:
            assert r["verdict"] == "complete" and r["state"] == "COMPLETE"
    study = load(tmp_path / "run", "bad")
    assert study.user_attrs["constraints"] == ["max_params: value / 6e+06 - 1"]
    for t in study.get_trials(deepcopy=False):  # Optuna constraints: what samplers and optuna-dashboard read
        if t.user_attrs["verdict"] == "invalid":
            assert t.constraints == {}
        else:
            assert t.constraints["0"] == pytest.approx(t.user_attrs["values"]["mparams"] / 6.0 - 1.0)
            assert (t.constraints["0"] > 0) == (t.user_attrs["verdict"] == "infeasible")
    assert all(t.constraints["0"] <= 0 for t in study.best_trials)


def test_infeasible_samples_trained_anyway_are_complete_and_never_on_the_front(tmp_path):
    """``infeasible: train``: NSGA-II's constrained domination gets every objective of an over-limit sample."""
    data = {**CHEAP, "name": "overlimit", "sampler": {"kind": "nsga2", "population_size": 4},
            "params": [{"name": "width3", "path": "stages[2].width", "choices": [128, 256, 384]},
                       {"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]}],
            "constraints": {"max_params": 8_000_000, "infeasible": "train"}, "budget": {"trials": 10}}
    run = tmp_path / "run"
    run_worker(load_space(write_space(tmp_path, data)), run)
    rows = read_table(run / "trials.csv")
    over = [r for r in rows if r["mparams"] > 8.0]  # width 384
    under = [r for r in rows if r["mparams"] <= 8.0]
    assert over and under and len(rows) == 10
    assert all(r["verdict"] == "infeasible" and r["state"] == "COMPLETE" and r["accuracy"] is not None for r in over)
    assert all(r["verdict"] == "complete" for r in under)
    front = read_table(run / "pareto.csv")
    assert front and all(r["mparams"] <= 8.0 for r in front)
    # the best accuracy of all is an over-limit one (accuracy is the params score here), and it is not on the front
    assert max(r["accuracy"] for r in over) > max(r["accuracy"] for r in front)
    study = load(run, "overlimit")
    assert {t.state.name for t in study.get_trials(deepcopy=False)} == {"COMPLETE"}
    assert all(t.constraints["0"] <= 0 for t in study.best_trials)
    assert sum(t.constraints["0"] > 0 for t in study.get_trials(deepcopy=False)) == len(over)


def test_sigkill_mid_trial_then_resume(tmp_path):
    data = {**CHEAP, "name": "killme",
            "evaluator": {"kind": "train", "budget": {"epochs": 1, "train_subset": 300, "test_subset": 100,
                                                      "resolution": 32, "batch_size": 50, "threads": 1}},
            "budget": {"trials": 3}, "workers": {"heartbeat_s": 1, "grace_s": 3}}
    space_file = write_space(tmp_path, data)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "archspace.cli", "search", str(space_file), "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    killed_number, before = None, {}
    try:
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if proc.poll() is not None:
                pytest.fail(f"search ended before it could be killed: {proc.stderr.read().decode()[-500:]}")
            if not (run / "study.db").exists():
                continue
            try:
                trials = load(run, "killme").get_trials(deepcopy=False)
            except Exception:
                continue
            done = [t for t in trials if finished(t)]
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
            if done and running:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed_number = running[0].number
                # its params as the storage holds them once it is dead: the snapshot may predate its last suggest
                killed_params = load(run, "killme").get_trials(deepcopy=False)[killed_number].params
                before = {t.number: t.values for t in done}
                break
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed_number is not None, "never saw a running trial after a finished one"
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-800:]
    trials = load(run, "killme").get_trials(deepcopy=False)
    done = [t for t in trials if finished(t)]
    assert len(done) == 3  # the budget, reached exactly
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    for number, values in before.items():  # every trial finished before the kill is kept, unchanged, once
        assert trials[number].values == values and finished(trials[number])
    killed = trials[killed_number]
    assert killed.state == optuna.trial.TrialState.FAIL and not finished(killed)  # failed by the heartbeat, not counted
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed_number]
    assert len(retries) == 1 and retries[0].params == killed_params and finished(retries[0])
    rows = read_table(run / "trials.csv")
    killed_rows = [r for r in rows if r["verdict"] == "killed"]
    assert len(killed_rows) == 1 and killed_rows[0]["reason"] == f"worker died mid-trial; retried as trial {retries[0].number}"
    assert len(rows) == len(trials)


def test_pareto_and_hypervolume_math():
    rows = [{"number": 0, "a": 80.0, "c": 2.0}, {"number": 1, "a": 82.0, "c": 3.0}, {"number": 2, "a": 79.0, "c": 2.5},
            {"number": 3, "a": 82.0, "c": 3.5}]
    front = pareto_front(rows, ["a", "c"], ["maximize", "minimize"])
    assert [r["number"] for r in front] == [0, 1]
    assert hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0]) == pytest.approx(3.0)
    assert hypervolume([[0.5, 0.5, 0.5]], [1.0, 1.0, 1.0]) == pytest.approx(0.125)
    data = front_data([{**r, "verdict": "complete", "accuracy": r["a"], "gmacs": r["c"]} for r in rows], "gmacs",
                      references={1: "base"})
    assert [n for *_, n in data.front] == [0, 1] and len(data.points) == 4 and data.references == [] and data.base == [(3.0, 82.0, 1)]


def test_report_rebuilds_plots(tmp_path, capsys):
    space_file = write_space(tmp_path, {**CHEAP, "name": "rep", "budget": {"trials": 3}})
    run = tmp_path / "run"
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet"]) == 0
    for f in run.glob("*.png"):
        f.unlink()
    (run / "trials.csv").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "pareto_flops.png").stat().st_size > 5000 and (run / "trials.csv").exists()
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_changed_space_refuses_old_run_dir(tmp_path, capsys):
    space_file = write_space(tmp_path, {**CHEAP, "name": "chg", "budget": {"trials": 2}})
    run = tmp_path / "run"
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet"]) == 0
    space_file.write_text(yaml.safe_dump({**CHEAP, "name": "chg", "seed": 7, "budget": {"trials": 2}}))
    capsys.readouterr()
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet"]) == 2
    assert "holds a run of a different space (differs in seed)" in capsys.readouterr().err


def test_journal_storage_shared_by_two_runs(tmp_path):
    """A journal file is an Optuna storage that several workers can share; a second run continues the first."""
    space_file = write_space(tmp_path, {**CHEAP, "name": "journal", "budget": {"trials": 3}})
    journal = tmp_path / "shared" / "study.log"
    for trials in ("3", "5"):
        assert main(["search", str(space_file), "--run-dir", str(tmp_path / "run"), "--storage", f"journal://{journal}",
                     "--quiet", "--trials", trials]) == 0
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = optuna.load_study(study_name="journal", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert sum(finished(t) for t in study.trials) == 5
    assert len(read_table(tmp_path / "run" / "trials.csv")) == 5


def test_single_objective_training_search_reports_fidelities_and_prunes(tmp_path):
    data = {**CHEAP, "name": "prune", "objectives": [{"metric": "accuracy", "direction": "maximize"}],
            "evaluator": {"kind": "train", "budget": {"epochs": 3, "train_subset": 100, "test_subset": 100,
                                                      "resolution": 32, "batch_size": 50, "threads": 1}},
            "sampler": {"kind": "random", "pruner": "median"}, "budget": {"trials": 5},
            "params": [{"name": "width3", "path": "stages[2].width", "choices": [64, 128, 256]},
                       {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2}]}
    space = load_space(write_space(tmp_path, data))
    run_worker(space, tmp_path / "run")
    trials = load(tmp_path / "run", "prune").get_trials(deepcopy=False)
    assert sum(finished(t) for t in trials) == 5
    fresh = [t for t in trials if "cached_from" not in t.user_attrs]
    assert fresh and all(t.intermediate_values and min(t.intermediate_values) == 1 for t in fresh)
    for t in trials:
        if t.state == optuna.trial.TrialState.PRUNED:  # stopped after a fidelity, fewer epochs trained
            assert t.user_attrs["verdict"] == "pruned" and t.user_attrs["pruned_at_epoch"] < 3
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE and max(t.intermediate_values) == 3


def test_cpu_latency_is_calibrated_once_per_study_and_reused_on_resume(tmp_path):
    data = {**CHEAP, "name": "calibrated", "budget": {"trials": 2},
            "measure": {"latency": True, "resolution": 32, "repeats": 2, "warmup": 0}}
    space_file = write_space(tmp_path, data)
    run = tmp_path / "run"
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet"]) == 0
    def calibrations(study):
        return [v["calibration"] for k, v in study.user_attrs.items() if k.startswith("latency_calibration:")]

    (stored,) = calibrations(load(run, "calibrated"))
    assert stored["reference"] == "convnet112-v1" and stored["threads"] == 1 and stored["reference_ms"] > 0
    assert main(["search", str(space_file), "--run-dir", str(run), "--trials", "3", "--quiet"]) == 0
    study = load(run, "calibrated")
    assert calibrations(study) == [stored]  # the resumed run kept the study's unit and measured none
    measured = [t.user_attrs["latency"] for t in study.trials if "latency" in t.user_attrs]
    assert len(measured) == 3
    for rec in measured:
        assert rec["protocol"]["calibration"] == stored
        assert rec["raw_median_ms"] > 0 and rec["machine_speed"] > 0
    rows = read_table(run / "trials.csv")
    assert [r["latency_ms"] for r in rows] == pytest.approx([rec["median_ms"] for rec in measured])


def test_log_tensorboard_writes_each_trials_curve_and_objectives(tmp_path):
    """(The Ray backend's logging is tested with its ASHA test in test_ray.py.)"""
    pytest.importorskip("tensorboard", reason="TensorBoard is the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from archspace.cli import main

    data = {"name": "tb", "base": "smt_m_6p5m",
            "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2]}],
            "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}],
            "evaluator": {"kind": "train", "budget": {"epochs": 1, "train_subset": 60, "test_subset": 50, "resolution": 16,
                                                     "batch_size": 30, "threads": 1}},
            "measure": {"latency": False, "resolution": 64}, "sampler": {"kind": "random"}, "budget": {"trials": 2}}
    space_file = tmp_path / "tb.yaml"
    space_file.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["search", str(space_file), "--run-dir", str(run), "--quiet", "--log", "tensorboard"]) == 0
    runs = sorted(p.name for p in (run / "tensorboard").iterdir())
    assert runs == ["trial_0000", "trial_0001"]
    for r in read_table(run / "trials.csv"):
        events = EventAccumulator(str(run / "tensorboard" / f"trial_{r['number']:04d}")).Reload()
        tags = set(events.Tags()["scalars"])
        assert {"train/loss", "test/top1", "objectives/accuracy", "objectives/mparams"} <= tags
        assert len(events.Scalars("train/loss")) == 1 and events.Scalars("train/loss")[0].value > 0  # one epoch's mean loss
        assert 0 <= events.Scalars("test/top1")[0].value <= 100
        assert events.Scalars("objectives/accuracy")[0].value == pytest.approx(r["accuracy"], abs=1e-4)
        assert events.Scalars("objectives/mparams")[0].value == pytest.approx(r["mparams"], abs=1e-5)
    assert main(["search", str(space_file), "--run-dir", str(tmp_path / "r2"), "--log", "wandb"]) == 2
