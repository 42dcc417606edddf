"""The Ray Tune backend on a real local Ray instance: same space through OptunaSearch, same run-directory format."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archspace.search.results import read_table

pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra: pip install 'archspace[ray]'")

SPACE = {
    "name": "raytiny", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
               {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 4}, "seed": 0,
}


def test_import_archspace_does_not_import_ray():
    code = "import sys, archspace, archspace.search.engine, archspace.cli; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_import_archspace_changes_nothing_in_the_process():
    """Importing archspace or its CLI loads no torch and sets no environment; the CLI's main applies its settings."""
    code = ("import os, sys; before = dict(os.environ); import archspace, archspace.cli, archspace.vocab; "
            "print('torch' in sys.modules, dict(os.environ) == before); "
            "os.environ.pop('OMP_WAIT_POLICY', None); print(archspace.cli.process_settings())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split("\n")
    assert out[0] == "False True" and out[1] == "{'omp_wait_policy': 'PASSIVE'}"


def test_import_archspace_is_light():
    code = ("import sys, archspace; print(sorted(m for m in ('optuna', 'fvcore', 'ptflops', 'matplotlib', 'ray', "
            "'torchvision', 'timm', 'scipy', 'rich') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_ray_run_keeps_one_latency_calibration_in_the_run_dir(tmp_path):
    from archspace.search.ray_engine import _run_calibration
    from archspace.search.space import Space

    space = Space.model_validate({**SPACE, "measure": {"latency": True, "resolution": 32, "threads": 1}})
    first = _run_calibration(space, tmp_path)
    saved = (tmp_path / "latency_calibration.json").read_text()
    assert first is not None and '"reference":"convnet112-v1"' in first
    assert _run_calibration(space, tmp_path) == first  # a resumed run reuses the stored unit
    assert (tmp_path / "latency_calibration.json").read_text() == saved
    two = Space.model_validate({**SPACE, "measure": {"latency": True, "resolution": 32, "threads": 2}})
    assert '"threads":2' in _run_calibration(two, tmp_path)  # a different protocol is recalibrated
    off = Space.model_validate({**SPACE, "measure": {"latency": True, "calibrate": False}})
    assert _run_calibration(off, tmp_path) is None


CONSTRAINED = {**SPACE, "name": "raycons", "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 4]}],
               "sampler": {"kind": "grid"}, "budget": {"trials": 2}, "enqueue_base": False,
               "constraints": {"max_params": 6_110_000}}


def test_ray_backend_runs_every_sampler_kind_and_records_constraints(tmp_path):
    """NSGA-II (the default, which holds a lock Ray cannot pickle), TPE, random, GP and grid, on one local Ray instance,
    each a whole run (trials.csv, the front); then a sample over max_params: not trained, PRUNED with its constraint value in the sampler's study (as the
    Optuna engine records it)."""
    import optuna

    code = f"""
import json, sys
from pathlib import Path
import ray
from archspace.search.space import Space
from archspace.search.ray_engine import run_ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
out = {{}}
for kind in ("nsga2", "tpe", "random", "gp", "grid"):
    space = Space.model_validate({{**{SPACE!r}, "name": "k_" + kind, "sampler": {{"kind": kind}}, "budget": {{"trials": 2}}}})
    out[kind] = run_ray(space, Path({str(tmp_path)!r}) / kind)["complete"]
run_ray(Space.model_validate({CONSTRAINED!r}), Path({str(tmp_path)!r}) / "cons")
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {k: 2 for k in ("nsga2", "tpe", "random", "gp", "grid")}
    default = tmp_path / "nsga2"  # a whole run's outputs: the base network enqueued once, the front, the plots
    rows = read_table(default / "trials.csv")
    assert len(rows) == 2 and all(r["verdict"] == "complete" for r in rows)
    base = [r for r in rows if r["reference"] == "base"]
    assert len(base) == 1 and base[0]["mparams"] == pytest.approx(6.12705)
    assert (default / "pareto.csv").exists() and list((default / "pareto").glob("*.yaml"))
    run = tmp_path / "cons"
    rows = {r["param_heads"]: r for r in read_table(run / "trials.csv")}
    assert rows[1]["verdict"] == "complete" and rows[1]["state"] == "COMPLETE" and rows[1]["mparams"] < 6.11
    bad = rows[4]
    assert bad["verdict"] == "infeasible" and bad["state"] == "PRUNED" and bad["accuracy"] is None
    assert bad["mparams"] > 6.11 and "> max_params 6,110,000" in bad["reason"]
    study = optuna.load_study(study_name="raycons_ray", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "ray" / "sampler.log"))))
    told = {t.params["heads"]: t for t in study.get_trials(deepcopy=False)}
    assert told[4].state.name == "PRUNED" and told[4].constraints["0"] == pytest.approx(bad["mparams"] / 6.11 - 1, abs=1e-5)
    assert told[1].state.name == "COMPLETE" and told[1].constraints["0"] < 0
    assert told[1].values[0] == pytest.approx(rows[1]["accuracy"]) and told[1].values[1] == pytest.approx(rows[1]["gmacs"], abs=1e-6)


def _ended_ray_trials(run: Path) -> int:
    from archspace.search.ray_engine import read_trials

    return sum(t.ended for t in read_trials(run / "ray", "raynodes")) if (run / "ray").exists() else 0


def test_ray_multi_node_cluster_driver_killed_and_resumed_with_a_new_budget(tmp_path):
    """A head and a worker node on loopback: trials land on both, a SIGKILLed driver resumes, honours --trials and
    samples anew."""
    from ray.cluster_utils import Cluster

    space = {**SPACE, "name": "raynodes",
             "params": [*SPACE["params"], {"name": "ratio", "path": "stages[*].sam.mlp_ratio", "low": 2.0, "high": 4.0}],
             "evaluator": {"kind": "train", "budget": {"epochs": 1, "train_subset": 60, "test_subset": 50,
                                                       "resolution": 16, "batch_size": 30, "threads": 1}}}
    space_file = tmp_path / "raynodes.yaml"
    space_file.write_text(yaml.safe_dump(space))
    run = tmp_path / "run"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        cmd = [sys.executable, "-m", "archspace.cli", "search", str(space_file), "--run-dir", str(run), "--backend",
               "ray", "--address", cluster.address, "--quiet"]
        driver = subprocess.Popen([*cmd, "--trials", "6"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while _ended_ray_trials(run) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert driver.poll() is None, f"the driver ended before it could be killed: {driver.stderr.read().decode()[-800:]}"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        killed_at = _ended_ray_trials(run)
        assert 2 <= killed_at < 6
        proc = subprocess.run([*cmd, "--trials", "8", "--format", "json"], capture_output=True, text=True, timeout=400,
                              cwd=tmp_path)
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, proc.stderr[-1500:]
    summary = json.loads(proc.stdout)
    assert summary["trials"] == 8 and summary["complete"] == 8
    assert {Path(f).name for f in summary["files"]} >= {"pareto_flops.png", "hypervolume.svg"}
    assert (run / "pareto_flops.png").exists() and (run / "hypervolume.svg").exists()
    rows = read_table(run / "trials.csv")
    ended = [r for r in rows if r["verdict"] != "killed"]
    assert len(ended) == 8 and all(r["verdict"] == "complete" for r in ended)
    assert len({r["worker"] for r in ended}) == 2  # both nodes ran trials
    assert sum(r["reference"] == "base" for r in ended) == 1
    for r in rows:  # every trial cut off by the kill was run again
        if r["verdict"] == "killed":
            assert any(o.get("retry_of") == r["number"] for o in rows)
    assert all(r["arch"].count("|") == 3 for r in ended)  # every trial names its architecture
    # the resumed sampler is seeded past the trials already ended (as the Optuna engine's first worker), so it does
    # not replay the first invocation's samples: with a continuous parameter every sample (retries aside) differs
    fresh = [r["param_ratio"] for r in ended if r["retry_of"] is None]
    assert len(set(fresh)) == len(fresh)


def test_ray_asha_stops_are_pruned_trials_not_killed_ones(tmp_path):
    """One objective: ASHA stops poor trials after epoch 1 of 2; they end as pruned (not 'killed' and run again), and
    ``--log tensorboard`` gets every trial from the driver, under its trials.csv number."""
    pytest.importorskip("tensorboard", reason="TensorBoard is the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = {**SPACE, "name": "rayasha", "objectives": [{"metric": "accuracy", "direction": "maximize"}],
            "params": [{"name": "ratio", "path": "stages[*].sam.mlp_ratio", "low": 1.0, "high": 4.0}],
            "evaluator": {"kind": "train", "budget": {"epochs": 2, "train_subset": 60, "test_subset": 50,
                                                      "resolution": 16, "batch_size": 30, "threads": 1, "lr": 0.01}},
            "budget": {"trials": 7}}
    space_file = tmp_path / "rayasha.yaml"
    space_file.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "archspace.cli", "search", str(space_file), "--run-dir", str(run),
                           "--backend", "ray", "--quiet", "--log", "tensorboard"], capture_output=True, text=True,
                          timeout=500, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    rows = read_table(run / "trials.csv")
    assert len(rows) == 7 and {r["verdict"] for r in rows} <= {"complete", "pruned"}
    pruned = [r for r in rows if r["verdict"] == "pruned"]
    assert pruned, "ASHA stopped no trial"
    for r in pruned:
        assert r["state"] == "PRUNED" and r["reason"].startswith("stopped by ASHA after epoch")
        assert 0 <= r["accuracy"] <= 100  # the last fidelity it reached
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == [f"trial_{n:04d}" for n in range(7)]
    for r in rows:
        events = EventAccumulator(str(run / "tensorboard" / f"trial_{r['number']:04d}")).Reload()
        assert events.Scalars("objectives/accuracy")[0].value == pytest.approx(r["accuracy"], abs=1e-4)
        if r["verdict"] == "complete":  # the whole curve: 2 epochs of loss, test top-1 at epochs 1 and 2
            assert len(events.Scalars("train/loss")) == 2 and [e.step for e in events.Scalars("test/top1")] == [1, 2]


def test_ray_backend_samples_a_planned_population(tmp_path):
    """--by on the Ray backend: the trials are the population plan's members (balanced), as on the Optuna engine."""
    repo = Path(__file__).resolve().parents[1]
    profile = repo / "experiments" / "results" / "latency_model" / "profile_eager.json"
    code = f"""
import json
from pathlib import Path
import ray
from archspace.jobs import configure
from archspace.search.ray_engine import run_ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
space = configure({str(repo / "spaces" / "smt.yaml")!r}, sampler="random", by=["heads"], trials=8,
                  overrides={{"evaluator.kind": "params", "measure.latency": "predicted", "measure.profile": {str(profile)!r}}})
print(json.dumps(run_ray(space, Path({str(tmp_path)!r}) / "pop")["complete"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == 8
    from archspace.jobs import configure
    from archspace.search.population import plan

    space = configure(repo / "spaces" / "smt.yaml", sampler="random", by=["heads"], trials=8)
    rows = read_table(tmp_path / "pop" / "trials.csv")
    got = sorted(json.dumps({p.name: r["param_" + p.name] for p in space.params}, sort_keys=True) for r in rows)
    assert got == sorted(json.dumps(m, sort_keys=True) for m in plan(space))
    assert sorted(r["param_heads"] for r in rows) == [1, 1, 2, 2, 4, 4, 8, 8]
