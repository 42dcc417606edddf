"""A search run as one library call (archspace.run_search) and the thin CLI over it, tried as a person would."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import archspace
from archspace.cli import main
from archspace.search.results import read_table

from terminal import run_in_terminal

REPO = Path(__file__).resolve().parents[1]
SPACE = {
    "name": "jobtiny", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
               {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 4}, "seed": 0,
}


def write_space(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}, sort_keys=False))
    return path


def counts_within_totals(text: str) -> list[tuple[int, int]]:
    """Every 'k/n' a progress display drew (trials, steps, epochs), each with k <= n."""
    pairs = [(int(a), int(b)) for a, b in re.findall(r"(?<![\d.])(\d+)/(\d+)(?![\d.])", text)]
    over = [(a, b) for a, b in pairs if b and a > b]
    assert not over, f"progress counts over their totals: {over[:5]}"
    return pairs


def test_run_search_is_the_public_entry_with_the_runs_overrides(tmp_path):
    """The library call owns the run: overrides reach the sampler (3 trials, not the file's 4), the report is
    written, the front comes back with its architectures."""
    run = archspace.run_search(write_space(tmp_path), run_dir=tmp_path / "run", trials=3)
    assert run.summary["trials"] == 3 and run.completed == 3
    assert run.space.budget.trials == 3  # the space the sampler was sized for
    assert {f.name for f in run.files} >= {"pareto_flops.png", "hypervolume.png"}
    assert run.front and all(r["arch"] and r["mparams"] > 5 for r in run.front)
    assert len(read_table(tmp_path / "run" / "trials.csv")) == 3
    again = archspace.run_search(write_space(tmp_path), run_dir=tmp_path / "run", trials=4)  # resumes, one more
    assert again.summary["trials"] == 4 and len(read_table(tmp_path / "run" / "trials.csv")) == 4


def test_run_search_refuses_bad_run_arguments_before_writing(tmp_path):
    for kwargs, field in (({"workers": 0}, "--workers"), ({"trials": 0}, "--trials"),
                          ({"backend": "dask"}, "--backend"), ({"references": ["no_such_net"]}, "references"),
                          ({"workers": 2, "log_dir": tmp_path / "tb"}, "--log")):
        with pytest.raises(archspace.SpecError, match=field):
            archspace.run_search(write_space(tmp_path), run_dir=tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_search_prints_the_front_and_best_has_arch_and_params(tmp_path, capsys):
    assert main(["search", str(write_space(tmp_path)), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and re.search(r"trial\s+accuracy\s+gmacs\s+mparams\s+arch\s+spec_hash", out)
    assert main(["best", str(tmp_path / "run")]) == 0
    best = capsys.readouterr().out.splitlines()
    assert best[1].split()[:5] == ["trial", "accuracy", "gmacs", "mparams", "arch"]
    assert re.search(r"S\|S\|SMS\|M w64-128-256-384", best[3])  # an architecture label in the arch column


def test_workers_show_every_trial_and_take_turns_timing(tmp_path):
    """--workers 2: every worker's trials are shown, the last count is the budget, no ExperimentalWarning leaks,
    and latency is timed in turn (the run directory's timing lock), so no contention warning is needed."""
    space = write_space(tmp_path, measure={"latency": True, "resolution": 32, "warmup": 1, "repeats": 3})
    proc = subprocess.run([sys.executable, "-m", "archspace.cli", "search", str(space), "--run-dir", str(tmp_path / "run"),
                           "--workers", "2", "--progress"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = sorted(int(n) for n in re.findall(r"^trial (\d+): ", proc.stderr, re.M))
    rows = read_table(tmp_path / "run" / "trials.csv")
    # every counted trial is shown; a base enqueued by both racing workers ends as an unshown surplus trial
    assert shown == sorted(int(r["number"]) for r in rows) and len(shown) == 4
    dones = re.findall(r"\[(\d+)/(\d+) done", proc.stderr)
    assert dones[-1] == ("4", "4") and all(int(a) <= int(b) for a, b in dones)
    assert "ExperimentalWarning" not in proc.stderr
    assert "other trial(s) ran" not in proc.stderr and (tmp_path / "run" / "timing.lock").is_file()
    assert len(rows) == 4 and len({r["worker"] for r in rows}) == 2  # both workers ran trials
    unit = rows[0]["latency_unit"]  # one unit for every worker: the run's agreed calibration
    assert {r["latency_unit"] for r in rows} == {unit} and unit.startswith("ms calibrated to convnet112-v1=")
    assert unit.endswith("(this run's reference)")


def test_ray_search_in_a_terminal_completes_with_counts_within_totals(tmp_path):
    pytest.importorskip("ray.tune")
    code, screen = run_in_terminal([sys.executable, "-m", "archspace.cli", "search", str(write_space(tmp_path, budget={"trials": 3})),
                                    "--backend", "ray", "--run-dir", str(tmp_path / "run")], timeout_s=400, cwd=str(tmp_path))
    assert code == 0, screen[-3000:]
    assert "Traceback" not in screen and "3 complete of 3 trials" in screen
    assert (3, 3) in counts_within_totals(screen)


def test_evaluate_in_a_terminal_counts_within_totals(tmp_path):
    code, screen = run_in_terminal([sys.executable, "-m", "archspace.cli", "evaluate", "efficientmod_xxs", "--epochs", "2",
                                    "--train-subset", "200"], timeout_s=400, cwd=str(tmp_path))
    assert code == 0, screen[-3000:]
    pairs = counts_within_totals(screen)
    assert any(b == 2 for _, b in pairs)  # 'epoch k/2' was drawn


def test_every_cli_module_is_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "archspace" / "cli").glob("*.py")}
    assert sizes and max(sizes.values()) <= 300, sizes


def test_every_option_shows_its_default_in_help():
    for command in ("search", "profile", "evaluate", "ablate"):
        proc = subprocess.run([sys.executable, "-m", "archspace.cli", command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "(default:" in proc.stdout, command


def test_a_resume_with_a_smaller_budget_never_counts_past_it(tmp_path):
    space = write_space(tmp_path)
    assert main(["search", str(space), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    proc = subprocess.run([sys.executable, "-m", "archspace.cli", "search", str(space), "--run-dir", str(tmp_path / "run"),
                           "--trials", "3", "--progress"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming: 4 finished trial(s) kept" in proc.stderr
    counts_within_totals(proc.stderr)


def test_evaluate_says_what_network_it_trained(capsys):
    assert main(["evaluate", "efficientmod_xxs", "--epochs", "1", "--train-subset", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "complete" in out or "ok" in out
    assert "0.5x width" in out and "stem stride 2" in out and "32 px" in out
    assert main(["evaluate", "efficientmod_xxs", "--evaluator", "params", "--format", "json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(4_736_264, rel=0.06)  # the full network's


def test_a_file_of_another_kind_is_named_as_such(capsys):
    assert main(["search", str(REPO / "experiments" / "ablations" / "heads.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an ablation file, not a search space; run 'archspace ablate" in err
    assert main(["search", str(REPO / "archspace" / "presets" / "smt_t.yaml")]) == 2
    assert "a spec file, not a search space" in capsys.readouterr().err
    assert main(["ablate", str(REPO / "spaces" / "smt.yaml")]) == 2
    assert "a space file, not an ablation; run 'archspace search" in capsys.readouterr().err


def test_search_in_a_terminal_draws_its_bar_within_totals(tmp_path):
    code, screen = run_in_terminal([sys.executable, "-m", "archspace.cli", "search", str(write_space(tmp_path)),
                                    "--run-dir", str(tmp_path / "run")], timeout_s=300, cwd=str(tmp_path))
    assert code == 0, screen[-3000:]
    assert "Traceback" not in screen and "4 complete of 4 trials" in screen and "Pareto front:" in screen
    assert (4, 4) in counts_within_totals(screen)
