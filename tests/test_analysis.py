"""Design-space statistics with known answers: KS on shifted and identical populations, complexity normalisation
that removes a difference due only to complexity (exact), importance of the one parameter that drives an objective,
the exact best-of-k, the sample-size check; and archspace analyze on real population searches."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from archspace.analysis import analyze, importance, stats
from archspace.cli import main
from archspace.jobs import configure, run_search
from archspace.search.population import counts, plan

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "experiments" / "results" / "latency_model" / "profile_eager.json"
PREDICTED = {"measure.latency": "predicted", "measure.profile": str(PROFILE), "references": []}


# ----------------------------------------------------------------------------- statistics


def test_ks_tells_shifted_populations_apart_and_not_identical_ones():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    a, b = rng.normal(30, 2, 64), rng.normal(31.5, 2, 64)  # shifted by 0.75 sd
    shifted = stats.ks_test(a, b, permutations=999)
    assert shifted["p_value"] < 0.01 and ks_2samp(a, b).pvalue < 0.01
    assert shifted["statistic"] == pytest.approx(ks_2samp(a, b).statistic)
    # identical distributions: at the 5% level the test rejects about 5% of the time, not more
    rejections = sum(stats.ks_test(rng.normal(30, 2, 48), rng.normal(30, 2, 48), permutations=199, seed=s)["p_value"] < 0.05
                     for s in range(40))
    assert rejections <= 6
    same = stats.ks_test(a, a.copy(), permutations=199)
    assert same["statistic"] == 0.0 and same["p_value"] == 1.0


def test_normalisation_removes_a_difference_due_only_to_complexity():
    """Error is a function of complexity only; A has mostly small models, B mostly large ones. Unweighted, B looks
    better (KS 0.5); complexity-normalised, the two EDFs are the same (KS 0, mean difference 0), exactly."""
    ca = np.array([1.0] * 6 + [10.0] * 3 + [100.0] * 1)
    cb = np.array([1.0] * 1 + [10.0] * 3 + [100.0] * 6)
    err = lambda c: 50.0 - 10.0 * np.log10(c)  # noqa: E731
    a, b = err(ca), err(cb)
    assert stats.ks_statistic(a, b) == pytest.approx(0.5)
    wa, wb = stats.nds_weights([ca, cb], bins=3)
    assert stats.ks_statistic(a, b, wa, wb) == pytest.approx(0.0, abs=1e-12)  # exact up to float rounding
    assert np.dot(wa, a) == pytest.approx(np.dot(wb, b)) == pytest.approx(40.0)
    test = stats.ks_test(a, b, ca, cb, bins=3, permutations=199)
    assert test["statistic"] == pytest.approx(0.0, abs=1e-12) and test["p_value"] == 1.0
    plain = stats.ks_test(a, b, permutations=199)
    assert plain["statistic"] == pytest.approx(0.5)
    edges = stats.bin_edges([ca, cb], 3)
    diff = stats.mean_difference(a, b, wa, wb, ca=ca, cb=cb, edges=edges, shared=stats.shared_bins([ca, cb], edges))
    assert diff["difference"] == pytest.approx(0.0, abs=1e-12)
    assert stats.mean_difference(a, b)["difference"] == pytest.approx(10.0)  # 45 - 35 points unweighted


def test_nds_weights_drop_bins_one_population_lacks():
    wa, wb = stats.nds_weights([np.array([1.0, 1.0, 10.0, 1000.0]), np.array([1.0, 10.0, 10.0])], edges=np.log([3, 30]))
    assert wa.tolist() == pytest.approx([0.25, 0.25, 0.5, 0.0])  # the 1000 bin: no partner in B
    assert wb.tolist() == pytest.approx([0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match="share no complexity bin"):
        stats.nds_weights([np.array([1.0, 2.0]), np.array([500.0, 600.0])], edges=np.log([10, 100]))


def test_best_of_k_is_exact_and_sample_size_shrinks():
    best = {b["k"]: b["expected_best"] for b in stats.best_of_k(np.array([1.0, 2.0, 3.0]), ks=[1, 2, 3])}
    assert best[1] == pytest.approx(2.0) and best[2] == pytest.approx(14 / 9) and best[3] == pytest.approx(36 / 27)
    rng = np.random.default_rng(0)
    draws = rng.choice([1.0, 2.0, 3.0], size=(200_000, 2)).min(axis=1)
    assert draws.mean() == pytest.approx(14 / 9, abs=0.01)
    check = stats.sample_size_check(rng.normal(0, 1, 512), sizes=[8, 32, 128], repeats=100)
    ks = [c["ks_mean"] for c in check]
    assert ks[0] > ks[1] > ks[2] and 0.1 < ks[0] < 0.5  # about 1/sqrt(m) (NDS)


def _synthetic_space():
    from archspace.search.space import Space

    return Space.model_validate({
        "name": "synthetic", "base": "smt_t",
        "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4, 8]},
                   {"name": "width3", "path": "stages[2].width", "choices": [128, 192, 256, 320]},
                   {"name": "s3_sam", "path": "stages[2].stack.counts.sam", "low": 1, "high": 6}],
        "objectives": [{"metric": "accuracy", "direction": "maximize"}]})


def test_importance_ranks_first_the_parameter_that_drives_the_objective():
    space = _synthetic_space()
    rng = np.random.default_rng(3)
    rows = []
    for i in range(96):
        heads, width3, sam = int(rng.choice([1, 2, 4, 8])), int(rng.choice([128, 192, 256, 320])), int(rng.integers(1, 7))
        acc = 70 + 2.0 * (width3 / 64) + rng.normal(0, 0.3)  # width3 alone drives it
        rows.append({"verdict": "complete", "accuracy": acc, "param_heads": heads, "param_width3": width3,
                     "param_s3_sam": sam})
    imp = importance(rows, space, "accuracy", lower_is_better=False)
    assert next(iter(imp["ped_anova"])) == "width3" and imp["ped_anova"]["width3"] > 0.5
    pytest.importorskip("sklearn")
    assert next(iter(imp["fanova"])) == "width3" and imp["fanova"]["width3"] > 0.8


# ----------------------------------------------------------------------------- populations


def test_population_plan_is_balanced_stable_and_extends():
    space = configure(REPO / "spaces" / "smt.yaml", sampler="random", by=["heads", "aggregation", "s3_stacking"], trials=64)
    per = counts(space)
    assert per["heads"] == {"1": 16, "2": 16, "4": 16, "8": 16}
    assert per["aggregation"] == {"saa": 16, "ibn": 16, "linear1": 16, "none": 16}
    assert per["s3_stacking"] == {"alternate": 32, "sequential": 32}
    bigger = configure(space, trials=128)
    assert plan(bigger)[:64] == plan(space)  # a larger budget extends the plan, it never redraws it
    assert configure(REPO / "spaces" / "smt.yaml", sampler="random", by=["s3_stacking"], per_value=20).budget.trials == 40


@pytest.mark.parametrize("argv, words", [
    (["--by", "heads"], "sampler.kind: random"),
    (["--sampler", "random", "--by", "haeds"], "sampler.by: 'haeds' is not a parameter"),
    (["--sampler", "random", "--per-value", "4"], "--per-value: sizes a balanced population"),
    (["--sampler", "random", "--by", "heads", "--per-value", "8", "--trials", "4"], "--trials: 4 gives fewer than 8"),
    (["--set", "evaluator.kindd=synflow"], "--set: evaluator.kindd: unknown field"),
    (["--set", "evaluator.kind=bogus"], "evaluator.kind: 'bogus' is not allowed"),
    (["--set", "nosuch.kind=1"], "--set: nosuch.kind: 'nosuch' is not a section"),
])
def test_population_options_refuse_bad_input_in_one_line(tmp_path, capsys, argv, words):
    run_dir = tmp_path / "run"
    assert main(["search", str(REPO / "spaces" / "smt.yaml"), "--run-dir", str(run_dir), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not run_dir.exists()


def _population(tmp_path: Path, name: str, evaluator: str, trials: int, **extra) -> Path:
    run = run_search(REPO / "spaces" / "smt.yaml", run_dir=tmp_path / name, sampler="random", by=["s3_stacking", "heads"],
                     trials=trials, overrides={**PREDICTED, "evaluator.kind": evaluator, **extra})
    assert run.summary["complete"] == trials
    return run.run_dir


def test_population_search_is_resumable_and_shared_by_evaluators(tmp_path):
    """A population resumes with a larger budget by extending its plan; a second evaluator samples the same members;
    analyze compares the values of --by, correlates the two evaluators, and writes its files with their protocol."""
    a = _population(tmp_path, "params", "params", 8)
    a = _population(tmp_path, "params", "params", 16)  # the resume: 8 more members, the first 8 kept
    b = _population(tmp_path, "synflow", "synflow", 16)
    from archspace.search.results import read_table

    ra, rb = read_table(a / "trials.csv"), read_table(b / "trials.csv")
    assert [r["spec_hash"] for r in ra] == [r["spec_hash"] for r in rb]
    assert sum(r["param_s3_stacking"] == "alternate" for r in ra) == 8
    result = analyze([a, b], by="s3_stacking", normalize="none", metric="accuracy", permutations=99, resamples=100)
    assert [g["label"] for g in result["groups"]] == ["params: s3_stacking=alternate", "params: s3_stacking=sequential",
                                                      "synflow: s3_stacking=alternate", "synflow: s3_stacking=sequential"]
    assert [g["n"] for g in result["groups"]] == [8, 8, 8, 8]
    (corr,) = result["proxies"]
    assert corr["n"] == len({r["spec_hash"] for r in ra}) and -1 <= corr["kendall_tau"] <= 1
    out = a / "analysis"
    assert {f.name for f in out.iterdir()} >= {"edf.png", "best_of_k.png", "sample_size.png", "importance.png",
                                               "groups.csv", "pairs.csv", "analysis.json"}
    stored = json.loads((out / "analysis.json").read_text())
    from archspace.analysis.write import rounded

    assert stored["pairs"] == json.loads(json.dumps(rounded(result["pairs"])))
    # a parameter count against a synflow score is no comparison: pairs within each run only, and a note says so
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [
        ("params: s3_stacking=alternate", "params: s3_stacking=sequential"),
        ("synflow: s3_stacking=alternate", "synflow: s3_stacking=sequential")]
    assert any("4 pair(s) of populations not compared" in n for n in result["notes"])


def test_analyze_cli_json_where_and_errors(tmp_path, capsys):
    run = tmp_path / "p"
    assert main(["search", str(REPO / "spaces" / "smt.yaml"), "--run-dir", str(run), "--sampler", "random", "--by",
                 "s3_stacking,heads", "--trials", "8", "--set", "evaluator.kind=params", "--set", "measure.latency=predicted",
                 "--set", f"measure.profile={PROFILE}", "--set", "references=[]"]) == 0
    err = capsys.readouterr().err
    assert "population of 8: 4 per value of s3_stacking, 2 per value of heads" in err
    assert main(["analyze", str(run), "--by", "heads", "--where", "s3_msa>=1", "--normalize", "none", "--format", "json",
                 "--no-plots", "--permutations", "99"]) == 0
    result = json.loads(capsys.readouterr().out)
    kept = [r for r in __import__("archspace.search.results", fromlist=["read_table"]).read_table(run / "trials.csv")
            if r["param_s3_msa"] >= 1]
    assert sum(g["n"] for g in result["groups"]) == len(kept)
    assert result["where"] == ["s3_msa>=1"] and not (run / "analysis" / "edf.png").exists()
    for argv, words in [([str(run), "--by", "nope"], "'nope' is neither a parameter"),
                        ([str(run), "--metric", "error"], "--metric: error is 100 - top-1"),
                        ([str(run), "--where", "heads~2"], "--where: 'heads~2' must look like"),
                        ([str(run), "--permutations", "0"], "--permutations: 0 must be between"),
                        ([str(run), "--level", "0.2"], "--level: 0.2 must be in"),
                        ([str(tmp_path / "missing")], "not a run directory")]:
        assert main(["analyze", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err


def test_analyze_a_search_still_running_on_a_shared_storage(tmp_path):
    """Two workers on one journal storage; analyze reads the storage while they train and gives the trials ended."""
    storage = f"journal:///{tmp_path / 'study.log'}"
    cmd = [sys.executable, "-m", "archspace.cli", "search", str(REPO / "spaces" / "smt.yaml"), "--run-dir",
           str(tmp_path / "run"), "--storage", storage, "--workers", "2", "--sampler", "random", "--by", "s3_stacking",
           "--trials", "12", "--quiet", "--set", "measure.latency=predicted", "--set", f"measure.profile={PROFILE}",
           "--set", "references=[]", "--set", "evaluator.budget.train_subset=96", "--set",
           "evaluator.budget.test_subset=96", "--set", "evaluator.budget.threads=1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1.0)
            try:
                seen = analyze([storage], by="s3_stacking", permutations=49, resamples=50, plots=False)
            except Exception:  # noqa: BLE001 - no complete trial yet
                continue
            done = sum(g["n"] for g in seen["groups"])
            if 3 <= done < 12:
                break
        assert seen is not None and proc.poll() is None, "the search ended before it could be read mid-way"
        done = sum(g["n"] for g in seen["groups"])
        assert 3 <= done < 12 and seen["metric"] == "error"
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == 0, proc.stderr.read()
    final = analyze([storage], by="s3_stacking", permutations=49, resamples=50, plots=False)
    assert sum(g["n"] for g in final["groups"]) == 12 and [g["n"] for g in final["groups"]] == [6, 6]


def test_holm_adjustment():
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


COMMITTED = REPO / "experiments" / "results" / "populations"


@pytest.mark.parametrize("name, runs, by, where", [
    ("stacking_train", ["smt_train"], "s3_stacking", []),
    ("stacking_sensitive_train", ["smt_train"], "s3_stacking", ["s3_sam>=2", "s3_msa>=1"]),
    ("heads_train", ["smt_train"], "heads", []),
    ("spaces_train800", ["smt_train800", "efficientmod_train800", "hybrid_train800"], None, []),
])
def test_analyze_reproduces_the_committed_population_tables(tmp_path, name, runs, by, where):
    """archspace analyze on the committed population runs (trials.csv + space.yaml, as experiments/populations.py
    copied them) gives the committed tables, to the digit."""
    out = tmp_path / name
    argv = ["analyze", *(str(COMMITTED / "studies" / r) for r in runs), "--out", str(out), "--no-plots", "--format", "json"]
    argv += ["--by", by] if by else []
    for w in where:
        argv += ["--where", w]
    assert main(argv) == 0
    for table in ("groups.csv", "pairs.csv"):
        assert (out / table).read_text() == (COMMITTED / name / table).read_text(), table
