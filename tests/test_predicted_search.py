"""Searches on a device profile's predicted latency, reported latencies on other devices, measured latency in a
profile's unit, and the turns workers of one run take with the cores."""
from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import archspace
from archspace.measure.latency import LatencySettings
from archspace.measure.latency.model import load_profile, measure_profile, predict_latency
from archspace.search.results import read_table
from archspace.search.space import load_space, sample_specs, spec_for
from archspace.search.turns import Turns
from test_latency_model import SPACE as PROFILED_SPACE

SPACE = {**PROFILED_SPACE, "name": "predtiny", "budget": {"trials": 6}}  # the profile tests' tiny space
CLI = [sys.executable, "-m", "archspace.cli"]


def write_space(folder: Path, name: str = "space.yaml", **measure) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({**SPACE, "measure": {**SPACE["measure"], **measure}}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    """A folder with dev.json (measured here, 32 px) and other.json (the same, renamed, twice as slow)."""
    folder = tmp_path_factory.mktemp("devices")
    space = load_space(write_space(folder, "m.yaml"))
    specs = [(f"s{i}", s) for i, (_, s) in enumerate(sample_specs(space, 6, seed=0))]
    measure_profile(specs, LatencySettings(resolution=32, warmup=1, repeats=3), out=folder / "dev.json", minutes=2,
                    networks=3, name="dev")
    data = json.loads((folder / "dev.json").read_text())
    data["name"] = "other"
    data["correction"]["scale"] *= 2
    data["correction"]["offset_ms"] *= 2
    data["correction"]["per_part_ms"] *= 2
    (folder / "other.json").write_text(json.dumps(data))
    return folder


def test_a_predicted_search_on_two_workers_gives_one_latency_per_architecture(profiles, tmp_path):
    """--workers 2 on predicted latency: every row's latency is the profile's prediction of its architecture (the
    same on both workers), its source and unit say so, and the plots name the profile."""
    (tmp_path / "devices").symlink_to(profiles)
    space_file = write_space(tmp_path, latency="predicted", profile="devices/dev.json")  # relative to the space file
    proc = subprocess.run(CLI + ["search", str(space_file), "--run-dir", str(tmp_path / "run"), "--workers", "2"],
                          capture_output=True, text=True, timeout=600, cwd="/")  # another working directory
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_table(tmp_path / "run" / "trials.csv")
    assert len(rows) == 6 and len({r["worker"] for r in rows}) == 2
    space, prof = load_space(space_file), load_profile(profiles / "dev.json")
    for r in rows:
        spec = spec_for(space, {"heads": int(r["param_heads"]), "s3_msa": int(r["param_s3_msa"]),
                                "width3": int(r["param_width3"])})
        assert float(r["latency_ms"]) == pytest.approx(predict_latency(spec, prof), rel=1e-6)
        assert r["latency_source"] == "predicted" and r["latency_unit"] == f"predicted ms on {prof.label()}"
    html = (tmp_path / "run" / "pareto.html").read_text()
    assert "predicted latency (ms) on dev: " in html and "32 px" in html
    assert not (tmp_path / "run" / "timing.lock").exists()  # nothing timed, so no turns taken


def test_a_profile_path_is_found_beside_the_space_file_first_then_in_the_working_folder(profiles, tmp_path,
                                                                                       monkeypatch):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "devices").symlink_to(profiles)
    space_file = write_space(tmp_path / "spaces", latency="predicted", profile="devices/dev.json")
    monkeypatch.chdir(tmp_path)  # as from a repository's root: archspace search spaces/space.yaml
    assert load_space(space_file).measure.profile == str((profiles / "dev.json").resolve())
    (tmp_path / "spaces" / "devices").mkdir()
    (tmp_path / "spaces" / "devices" / "dev.json").write_bytes((profiles / "dev.json").read_bytes())
    assert load_space(space_file).measure.profile == str((tmp_path / "spaces" / "devices" / "dev.json").resolve())


def test_report_profiles_add_a_column_and_a_front_per_device(profiles, tmp_path):
    space_file = write_space(tmp_path, latency="predicted", profile=str(profiles / "dev.json"),
                             report_profiles=[str(profiles / "other.json")])
    run = archspace.run_search(space_file, run_dir=tmp_path / "run", trials=3)
    assert run.completed == 3
    rows = read_table(tmp_path / "run" / "trials.csv")
    other = load_profile(profiles / "other.json")
    for r in rows:
        spec = spec_for(run.space, {"heads": int(r["param_heads"]), "s3_msa": int(r["param_s3_msa"]),
                                    "width3": int(r["param_width3"])})
        assert float(r["latency_ms:other"]) == pytest.approx(predict_latency(spec, other), rel=1e-6)
        assert float(r["latency_ms:other"]) == pytest.approx(2 * float(r["latency_ms"]), rel=1e-6)
    assert (tmp_path / "run" / "pareto_latency_other.png").is_file()


def test_a_measured_search_on_a_profile_is_in_the_profiles_unit(profiles, tmp_path):
    """measure.profile with measured latency: trials are timed here and expressed in the profile's calibration."""
    space_file = write_space(tmp_path, latency="measured", profile=str(profiles / "dev.json"))
    run = archspace.run_search(space_file, run_dir=tmp_path / "run", trials=2)
    assert run.completed == 2
    prof = load_profile(profiles / "dev.json")
    rows = read_table(tmp_path / "run" / "trials.csv")
    assert {r["latency_source"] for r in rows} == {"measured"} and {r["latency_unit"] for r in rows} == {prof.unit}
    assert prof.unit.endswith("(profile dev)") and all(float(r["latency_ms"]) > 0 for r in rows)
    assert (tmp_path / "run" / "timing.lock").is_file()


@pytest.mark.parametrize("measure, expect", [
    ({"latency": "predicted"}, "latency: predicted needs a device profile"),
    ({"latency": "predicted", "profile": "nowhere.json"}, "nowhere.json does not exist (measure one with archspace device measure"),
    ({"latency": "predicted", "profile": "PROFILES/dev.json", "resolution": 64}, "was measured at batch 1, 32 px"),
    ({"latency": "predicted", "profile": "PROFILES/m.yaml"}, "measure.profile: "),
    ({"latency": "measured", "profile": "PROFILES/dev.json", "threads": 2}, "calibration was timed on 1 thread(s)"),
    ({"latency": "predicted", "profile": "PROFILES/dev.json", "report_profiles": ["PROFILES/dev.json"] * 2},
     "two report profiles are named 'dev'"),
])
def test_a_bad_profile_is_one_line_and_nothing_written(profiles, tmp_path, measure, expect):
    measure = json.loads(json.dumps(measure).replace("PROFILES", str(profiles)))
    space_file = write_space(tmp_path, **measure)
    proc = subprocess.run(CLI + ["search", str(space_file), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expect in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def _train(run_dir: str, seconds: float, out) -> None:
    turns, spans = Turns(Path(run_dir)), []
    end = time.monotonic() + seconds
    with turns.working() as step:
        while time.monotonic() < end:
            step()
            t0 = time.monotonic()
            time.sleep(0.005)  # a training step, holding the cores shared
            spans.append((t0, time.monotonic()))
    out.put(spans)


def _time(run_dir: str, delay: float, hold: float, out) -> None:
    turns = pickle.loads(pickle.dumps(Turns(Path(run_dir))))  # travels by path, as to a Ray trial
    time.sleep(delay)
    with turns.timing():
        t0 = time.monotonic()
        time.sleep(hold)
        out.put((t0, time.monotonic()))


def test_timing_waits_for_training_steps_and_steps_wait_for_timing(tmp_path):
    ctx = mp.get_context("spawn")
    q_train, q_time = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_train, args=(str(tmp_path), 3.0, q_train)) for _ in range(2)]
    procs.append(ctx.Process(target=_time, args=(str(tmp_path), 1.0, 0.5, q_time)))
    for p in procs:
        p.start()
    spans = q_train.get(timeout=60) + q_train.get(timeout=60)
    t0, t1 = q_time.get(timeout=60)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert t1 - t0 >= 0.5
    overlapping = [(a, b) for a, b in spans if a < t1 and b > t0]
    assert not overlapping, f"steps ran while a network was timed: {overlapping[:3]} vs {(t0, t1)}"
    assert any(b <= t0 for _, b in spans) and any(a >= t1 for a, _ in spans)  # both trainers went on around it


def test_turns_are_no_op_where_the_run_directory_is_not_on_this_machine(tmp_path):
    turns = Turns(tmp_path / "elsewhere")
    with turns.timing():
        with turns.working() as step:  # would deadlock if the locks were real
            step()
    assert not (tmp_path / "elsewhere").exists()


def test_profiles_travel_with_ray_trials_to_nodes_without_the_files(profiles, tmp_path):
    """What the Ray driver ships is what a node predicts with, even where the file is missing or differs."""
    from archspace.search import latency

    (tmp_path / "dev.json").write_bytes((profiles / "dev.json").read_bytes())
    space = load_space(write_space(tmp_path, latency="predicted", profile="dev.json"))
    shipped, want = latency.ship(space), latency.load(space.measure.profile)
    (tmp_path / "dev.json").unlink()
    try:
        latency.receive(shipped)
        got = latency.load(space.measure.profile)
        assert got[1] == want[1] and got[0].entries == want[0].entries  # same profile, same digest: same cache key
        assert latency.predicted(space, spec_for(space, {"heads": 2, "s3_msa": 1, "width3": 192}))["median_ms"] > 0
    finally:
        latency._SHIPPED.clear()


def test_a_ray_search_on_predicted_latency(profiles, tmp_path):
    pytest.importorskip("ray.tune")
    space_file = write_space(tmp_path, latency="predicted", profile=str(profiles / "dev.json"))
    proc = subprocess.run(CLI + ["search", str(space_file), "--run-dir", str(tmp_path / "run"), "--backend", "ray",
                                 "--trials", "3", "--quiet"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_table(tmp_path / "run" / "trials.csv")
    space, prof = load_space(space_file), load_profile(profiles / "dev.json")
    assert len(rows) == 3
    for r in rows:
        spec = spec_for(space, {"heads": int(r["param_heads"]), "s3_msa": int(r["param_s3_msa"]),
                                "width3": int(r["param_width3"])})
        assert float(r["latency_ms"]) == pytest.approx(predict_latency(spec, prof), rel=1e-6)
        assert r["latency_source"] == "predicted"
