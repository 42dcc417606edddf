"""A search that holds with failures and many workers: poison trials, SIGKILLs, PostgreSQL, journal, SQLite, bad storages."""
from __future__ import annotations

import importlib.util
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from archspace.cli import main
from archspace.search.engine import finished, open_study, rows_and_specs, run_worker
from archspace.search.space import load_space
from archspace.search.results import read_table

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("chaos", REPO / "experiments" / "chaos.py")
chaos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chaos)

CHEAP = {
    "name": "cheap", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
               {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 4}, "seed": 1,
}


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / f"{data['name']}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def cli(*args: str, cwd: Path, limit_as: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    def preexec() -> None:
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    return subprocess.run([sys.executable, "-m", "archspace.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec)


def one_line(stderr: str) -> bool:
    return stderr.count("\n") == 1 and stderr.startswith("archspace: error:") and "Traceback" not in stderr


def study_of(run: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run / 'study.db'}")


def test_poison_trial_is_recorded_and_the_search_goes_on(tmp_path):
    """A width of 60,000 cannot be built in 10 GB: that sample fails with its reason, the rest completes; a re-run adds nothing."""
    data = {**CHEAP, "name": "poison", "evaluator": {"kind": "synflow"}, "sampler": {"kind": "grid"},
            "measure": {"latency": False, "resolution": 32}, "budget": {"trials": 20},
            "params": [{"name": "width3", "path": "stages[2].width", "choices": [64, 60000]},
                       {"name": "heads", "path": "stages[0:3].sam.heads", "choices": [2, 4]}]}
    space = write(tmp_path, data)
    run = tmp_path / "run"
    first = cli("search", str(space), "--run-dir", str(run), "--quiet", cwd=tmp_path, limit_as=10 * 2**30)
    assert first.returncode == 0, first.stderr[-1500:]
    trials = study_of(run, "poison").get_trials(deepcopy=False)
    assert len(trials) == 4 and all(finished(t) for t in trials)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    bad = [t for t in trials if t.params["width3"] == 60000]
    assert len(bad) == 2 and all(t.state == optuna.trial.TrialState.FAIL for t in bad)
    assert all(t.user_attrs["verdict"] in ("failed", "infeasible") and "GiB" in t.user_attrs["reason"] for t in bad)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
    again = cli("search", str(space), "--run-dir", str(run), "--quiet", cwd=tmp_path, limit_as=10 * 2**30)
    assert again.returncode == 0 and len(study_of(run, "poison").get_trials(deepcopy=False)) == 4


def test_an_exception_inside_a_trial_is_that_trials_failure(tmp_path, monkeypatch, capsys):
    import torch

    from archspace.search import trial as trial_mod

    real = trial_mod._measure_and_evaluate
    errors = {1: RuntimeError("forward exploded"), 2: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")}

    def flaky(space, out, progress, calibration, turns=None):
        heads = out.spec.stages[0].blocks[0].heads
        if heads in errors:
            raise errors[heads]
        real(space, out, progress, calibration, turns)
        out.values["accuracy"] = float("nan") if out.spec.stages[2].counts().get("msa", 0) == 2 else out.values["accuracy"]

    monkeypatch.setattr(trial_mod, "_measure_and_evaluate", flaky)
    data = {**CHEAP, "name": "flaky", "sampler": {"kind": "grid"}, "enqueue_base": False, "budget": {"trials": 20}}
    run = tmp_path / "run"
    assert main(["search", str(write(tmp_path, data)), "--run-dir", str(run), "--quiet"]) == 0
    rows = read_table(run / "trials.csv")
    assert len(rows) == 9
    for r in rows:
        p = {k[len("param_"):]: v for k, v in r.items() if k.startswith("param_")}
        if p["heads"] == 1:
            assert r["verdict"] == "failed" and r["reason"] == "RuntimeError: forward exploded"
        elif p["heads"] == 2:
            assert r["verdict"] == "failed" and r["reason"].startswith("OutOfMemoryError: CUDA out of memory")
        elif p["s3_msa"] == 2:
            assert r["verdict"] == "failed" and r["reason"] == "non-finite accuracy (nan)"
        else:
            assert r["verdict"] == "complete" and math.isfinite(r["accuracy"])
    front = read_table(run / "pareto.csv")
    assert front and all(r["verdict"] == "complete" for r in front)


def test_no_completed_trial_is_exit_3_with_one_line(tmp_path):
    data = {**CHEAP, "name": "hopeless", "constraints": {"max_latency_ms": 0.001}, "budget": {"trials": 2},
            "measure": {"latency": True, "resolution": 32, "repeats": 2, "warmup": 0, "calibrate": False}}
    done = cli("search", str(write(tmp_path, data)), "--run-dir", str(tmp_path / "run"), "--quiet", cwd=tmp_path)
    assert done.returncode == 3 and "no trial completed (2 ended; most common reason: latency" in done.stderr
    assert done.stderr.count("\n") == 1


def test_workers_flag_shares_the_budget_exactly(tmp_path):
    data = {**chaos.SPACE, "name": "three", "budget": {"trials": 9}}
    run = tmp_path / "run"
    done = cli("search", str(write(tmp_path, data)), "--run-dir", str(run), "--workers", "3", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]
    trials = study_of(run, "three").get_trials(deepcopy=False)
    assert sum(finished(t) for t in trials) == 9 and not [t for t in trials if t.state.name == "RUNNING"]
    assert len({t.user_attrs["worker"] for t in trials if finished(t)}) >= 2  # the work was shared
    assert len(read_table(run / "trials.csv")) == 9


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_chaos_three_workers_with_kills(kind, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if kind == "postgres" else f"journal://{tmp_path / 'study.log'}"
    result = chaos.run_chaos(url, tmp_path, workers=3, kills=4, budget=12, seed=1, interval=(2.0, 4.0), timeout_s=420,
                             window_kills=2)
    assert result["ok"], result
    assert result["ended"] == 12 and result["running"] == result["waiting"] == 0 and result["lost"] == result["changed"] == 0, result
    assert result["fail_with_complete_verdict"] == result["failed_without_reason"] == 0 and result["killed_trials"] >= 2, result
    # the random kills land while the search runs; how many fit depends on the machine's speed
    assert result["duplicates"] == 0 and result["window_kills"] == 2 and 2 <= result["kills"] <= 4, result
    assert result["exit_codes"] == [0, 0, 0], result["errors"]


def test_chaos_at_the_default_heartbeat_and_grace(tmp_path):
    """archspace's own crash-recovery settings (heartbeat 10 s, grace 60 s, as a user gets them), with both kills inside
    the record-then-tell window: the books balance as with the fast settings."""
    from archspace.search.space import Workers

    assert chaos.DEFAULT == Workers().model_dump()
    result = chaos.run_chaos(f"journal://{tmp_path / 'study.log'}", tmp_path, workers=3, kills=2, budget=6, seed=2,
                             interval=(5.0, 10.0), timeout_s=480, settings=chaos.DEFAULT, window_kills=2)
    assert result["ok"], result
    assert result["ended"] == 6 and result["running"] == result["waiting"] == 0 and result["lost"] == result["changed"] == 0, result
    assert result["fail_with_complete_verdict"] == result["failed_without_reason"] == 0 and result["killed_trials"] == 2, result
    assert result["exit_codes"] == [0, 0, 0], result["errors"]


def _storage_url(kind: str, tmp_path: Path, request) -> str:
    return request.getfixturevalue("postgres_url") if kind == "postgres" else f"journal://{tmp_path / 'study.log'}"


def _books(study, max_retries: int = 2) -> dict:
    """The study's books: ended trials, and the states and verdicts that must never remain or disagree."""
    trials = study.get_trials(deepcopy=False)
    rows, _ = rows_and_specs(study, max_retries)
    return {"ended": sum(finished(t, max_retries) for t in trials),
            "open": [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")],
            "fail_complete": [t.number for t in trials if t.state.name == "FAIL" and t.user_attrs.get("verdict") == "complete"]
            + [r["number"] for r in rows if r["state"] == "FAIL" and r["verdict"] == "complete"]}


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_a_kill_between_recording_a_result_and_telling_optuna_is_retried_not_counted(kind, tmp_path, request):
    """A worker dies after recording `verdict: complete` and its values but before tell: the heartbeat fails the trial,
    which then carries `killed` and its reason in the storage (its partial record discarded) and never counts; its
    retry runs, so exactly the budget ends with nothing left RUNNING or WAITING, and no ExperimentalWarning leaks."""
    url = _storage_url(kind, tmp_path, request)
    data = {**CHEAP, "name": f"window_{kind}", "budget": {"trials": 3},
            "workers": {"heartbeat_s": 1, "grace_s": 3, "max_retries": 2}}
    space_file = write(tmp_path, data)
    token = tmp_path / "die-in-window"
    token.touch()
    doomed = subprocess.run(chaos.worker_command(space_file, url, tmp_path / "doomed", token), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert doomed.returncode == -signal.SIGKILL and not token.exists(), doomed.stderr[-1500:]
    space = load_space(space_file)
    study = open_study(space, tmp_path, url, create=False)
    [victim] = study.get_trials(deepcopy=False)
    assert victim.state.name == "RUNNING" and victim.user_attrs["verdict"] == "complete" and victim.user_attrs["values"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_worker(space, tmp_path / "survivor", storage=url)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    trials = study.get_trials(deepcopy=False)
    killed = trials[victim.number]
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert killed.state.name == "FAIL" and killed.user_attrs["verdict"] == "killed" and killed.user_attrs["values"] == {}
    assert killed.user_attrs["reason"] == f"worker died mid-trial; retried as trial {retry.number}"
    assert retry.params == victim.params and retry.state.name == "COMPLETE" and retry.user_attrs["reference"] == "base"
    assert _books(study) == {"ended": 3, "open": [], "fail_complete": []}
    rows = read_table(tmp_path / "survivor" / "trials.csv")
    assert [(r["number"], r["verdict"]) for r in rows if r["state"] == "FAIL"] == [(victim.number, "killed")]


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_the_last_worker_waits_out_a_stopped_heartbeat_before_it_exits(kind, tmp_path, request):
    """The budget is met while a trial whose worker died is still RUNNING (it had popped an enqueued trial, then died
    before its first heartbeat): the last worker waits out its grace, fails it with its reason, and retires its retry
    as surplus."""
    url = _storage_url(kind, tmp_path, request)
    space = load_space(write(tmp_path, {**CHEAP, "name": f"stale_{kind}", "budget": {"trials": 2},
                                        "workers": {"heartbeat_s": 1, "grace_s": 3, "max_retries": 2}}))
    run_worker(space, tmp_path / "first", storage=url)
    study = open_study(space, tmp_path, url)
    study.enqueue_trial({"heads": 1, "s3_msa": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: a heartbeat storage outside Study.optimize
        orphan = study.ask()  # popped by a worker that died before its first heartbeat (stale once its grace has passed)
    run_worker(space, tmp_path / "last", storage=url)
    trials = study.get_trials(deepcopy=False)
    dead = trials[orphan.number]
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert dead.state.name == "FAIL" and dead.user_attrs["verdict"] == "killed"
    assert dead.user_attrs["reason"] == f"worker died mid-trial; retried as trial {retry.number}"
    assert retry.state.name == "FAIL" and retry.user_attrs["verdict"] == "surplus" and "budget was met" in retry.user_attrs["reason"]
    assert _books(study) == {"ended": 2, "open": [], "fail_complete": []}
    [row] = [r for r in rows_and_specs(study)[0] if r["number"] == orphan.number]
    assert row["verdict"] == "killed" and row["reason"] == "worker died mid-trial; not retried (the budget was met)"


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root for a second hostname")
def test_worker_on_another_host_is_retried_once_by_a_second_worker(tmp_path):
    """No PID checks: a worker under another hostname dies mid-trial; the heartbeat lapses and a local worker retries it once."""
    data = {**chaos.SPACE, "name": "hostdeath", "budget": {"trials": 3},
            "evaluator": {"kind": "train", "budget": {"epochs": 4, "train_subset": 200, "test_subset": 50, "resolution": 16,
                                                      "batch_size": 20, "threads": 1}}}
    space = write(tmp_path, data)
    journal = f"journal://{tmp_path / 'study.log'}"
    args = [sys.executable, "-m", "archspace.cli", "search", str(space), "--storage", journal, "--quiet"]
    remote = subprocess.Popen(["unshare", "-u", "sh", "-c", 'hostname other-host && exec "$@"', "sh", *args,
                               "--run-dir", str(tmp_path / "remote")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline, victim = time.monotonic() + 120, None
    try:
        while time.monotonic() < deadline and victim is None:
            time.sleep(0.5)
            try:
                study = _journal_study(tmp_path / "study.log", "hostdeath")
            except Exception:  # noqa: BLE001 - not created yet
                continue
            running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and t.user_attrs.get("worker")]
            if running:
                victim = running[0]
                os.kill(remote.pid, signal.SIGKILL)
    finally:
        remote.kill()
        remote.wait()
    assert victim is not None and victim.user_attrs["worker"].startswith("other-host:")
    local = subprocess.run([*args, "--run-dir", str(tmp_path / "local")], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr[-1500:]
    trials = _journal_study(tmp_path / "study.log", "hostdeath").get_trials(deepcopy=False)
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params and finished(retries[0])
    assert retries[0].user_attrs["worker"].split(":")[0] != "other-host"
    assert sum(finished(t) for t in trials) == 3 and not finished(trials[victim.number])


def _journal_study(path: Path, name: str):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def test_report_with_a_wrong_storage_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", str(write(tmp_path, {**CHEAP, "name": "rep"})), "--run-dir", str(run), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["report", str(run), "--storage", f"sqlite:///{tmp_path / 'typo.db'}"]) == 2
    assert one_line(capsys.readouterr().err) and not (tmp_path / "typo.db").exists()
    assert main(["report", str(run), "--storage", f"journal://{tmp_path / 'typo.log'}"]) == 2
    assert not (tmp_path / "typo.log").exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("extra,expect", [
    (["--storage", "nosuch://x"], "is not a storage URL"),
    (["--storage", "postgresql+psycopg://nobody@127.0.0.1:1/none"], "cannot open"),
    (["--storage", "sqlite://relative.db"], "needs a path"),
])
def test_bad_storage_is_refused_before_anything_is_written(extra, expect, tmp_path):
    run = tmp_path / "run"
    done = cli("search", str(write(tmp_path, CHEAP)), "--run-dir", str(run), "--quiet", *extra, cwd=tmp_path)
    assert done.returncode == 2 and one_line(done.stderr) and expect in done.stderr, done.stderr
    assert not run.exists()


def test_missing_ray_is_refused_before_anything_is_written(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from archspace.cli import main; "
            f"sys.exit(main(['search', {str(write(tmp_path, CHEAP))!r}, '--run-dir', {str(tmp_path / 'run')!r}, "
            "'--backend', 'ray', '--quiet']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and one_line(done.stderr) and "pip install 'archspace[ray]'" in done.stderr
    assert not (tmp_path / "run").exists()


def test_missing_dataset_is_refused_before_anything_is_written(tmp_path):
    data = {**CHEAP, "evaluator": {"kind": "train", "dataset": "cifar10", "dataset_root": str(tmp_path / "nowhere")}}
    done = cli("search", str(write(tmp_path, data)), "--run-dir", str(tmp_path / "run"), "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and one_line(done.stderr) and "evaluator.dataset" in done.stderr
    assert not (tmp_path / "run").exists()
