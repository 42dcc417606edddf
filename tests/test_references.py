"""Reference networks measured under a run's own protocol: references.csv, their standing, the plots, the CLI."""
from __future__ import annotations

import json

import pytest
import yaml

from archspace.cli import main
from archspace.report.pareto import front_data, with_references
from archspace.search.results import read_table

SPACE = {
    "name": "refs", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
               {"name": "width3", "path": "stages[2].width", "choices": [128, 256]}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "constraints": {"max_params": 7_000_000},
    "sampler": {"kind": "grid"}, "budget": {"trials": 6}, "seed": 0,
    "references": ["smt_m_6p5m", "efficientmod_xxs", "smt_t"],
}


def _run(tmp_path, data=SPACE):
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["search", str(path), "--run-dir", str(run), "--quiet"]) == 0
    return run


def test_space_references_are_measured_alike_and_placed(tmp_path):
    run = _run(tmp_path)
    trials = read_table(run / "trials.csv")
    refs = {r["reference"]: r for r in read_table(run / "references.csv")}
    assert set(refs) == {"smt_m_6p5m", "efficientmod_xxs", "smt_t"} and len(trials) == 6  # not trials, not in the budget
    base = next(t for t in trials if t["reference"] == "base")
    # the base preset measured as a reference is the base trial: same hash, same numbers, said so
    assert refs["smt_m_6p5m"]["spec_hash"] == base["spec_hash"] and refs["smt_m_6p5m"]["gmacs"] == base["gmacs"]
    assert refs["smt_m_6p5m"]["standing"] == f"the same architecture as trial {base['number']}"
    # the 'params' evaluator scores a network by its (proxy) parameter count: SMT-T (11.0 M with 10 classes) beats
    # every trial on it, is over max_params, and is still measured (a reference is trained whatever the limits)
    t = refs["smt_t"]
    assert t["verdict"] == "infeasible" and t["mparams"] == pytest.approx(11.0, abs=0.01)
    assert t["accuracy"] > max(r["accuracy"] for r in trials)
    assert t["standing"] == ("on the front: it neither dominates nor is dominated by a searched trial (the search did "
                             "not sample where it lies); over the space's limits (params 10,998,666 > max_params 7,000,000)")
    # EfficientMod-xxs: fewer MACs at 64 px than any trial and a higher score than some front trials: it dominates them
    x = refs["efficientmod_xxs"]
    assert x["verdict"] == "complete" and x["gmacs"] < min(r["gmacs"] for r in trials)
    beaten = [r for r in trials if r["accuracy"] < x["accuracy"]]
    assert beaten and x["standing"].startswith("dominates front trial ") and "params score +" in x["standing"]
    assert x["standing"].endswith(f" and {len(beaten) - 1} other trials")
    data = with_references(front_data(trials, "gmacs"), list(refs.values()))
    assert {label for _, _, label in data.references} == {"smt_m_6p5m", "efficientmod_xxs", "smt_t (over limits)"}


def test_report_adds_references_and_reuses_measured_ones(tmp_path, capsys):
    run = _run(tmp_path, {**SPACE, "references": []})
    assert not (run / "references.csv").exists()
    capsys.readouterr()
    assert main(["report", str(run), "--references", "smt_m", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["reference"] for r in out["references"]] == ["smt_m"] and out["references"][0]["standing"]
    first = (run / "references.csv").read_text()
    assert main(["report", str(run), "--references", "smt_m"]) == 0  # measured once: the stored row is reused
    text = capsys.readouterr().out
    assert "reference smt_m: " in text and (run / "references.csv").read_text() == first
    assert main(["report", str(run), "--references", "no_such_net"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--references: no_such_net: neither a file nor a preset" in err


def test_a_changed_protocol_measures_references_again(tmp_path):
    from archspace.report.references import measure_references, read_references
    from archspace.search.space import Space

    space = Space.model_validate({**SPACE, "references": []})
    rows = measure_references(tmp_path, space, ["smt_m_6p5m"])
    assert len(rows) == 1 and len(read_references(tmp_path, space)) == 1
    other = Space.model_validate({**SPACE, "references": [], "measure": {"latency": False, "resolution": 32}})
    assert read_references(tmp_path, other) == []  # measured at 64 px: not this protocol's numbers
    again = measure_references(tmp_path, other, ["smt_m_6p5m"])
    assert again[0]["gmacs"] < rows[0]["gmacs"]


def test_unknown_reference_in_a_space_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SPACE, "references": ["smt_q"]}))
    assert main(["validate", str(path)]) == 2  # validate knows a space file
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "references[0]: smt_q: neither a file nor a preset" in err


def test_standing_names_the_trial_that_dominates_and_by_how_much():
    from archspace.report.references import standing
    from archspace.search.space import Space

    space = Space.model_validate({**SPACE, "references": []})
    trials = [{"number": 0, "verdict": "complete", "spec_hash": "a", "accuracy": 80.0, "gmacs": 1.0},
              {"number": 1, "verdict": "complete", "spec_hash": "b", "accuracy": 82.0, "gmacs": 0.8},
              {"number": 2, "verdict": "failed", "spec_hash": "c", "accuracy": 99.0, "gmacs": 0.1}]
    ref = {"verdict": "complete", "spec_hash": "z", "accuracy": 79.5, "gmacs": 1.2}
    assert standing(ref, trials, space) == "dominated by trial 1 (params score +3%, gmacs -33%)"
    # a reference better in both objectives than a front trial dominates it (it is not 'not dominated' by luck)
    assert standing({**ref, "accuracy": 85.0, "gmacs": 0.9}, trials, space) == \
        "dominates trial 0 (params score +6%, gmacs -10%)"
    assert standing({**ref, "accuracy": 85.0, "gmacs": 0.7}, trials, space) == \
        "dominates front trial 1 (params score +4%, gmacs -13%) and 1 other trial"
    assert standing({**ref, "accuracy": 85.0}, trials, space) == (
        "on the front: it neither dominates nor is dominated by a searched trial (the search did not sample where it lies)")
    trained = space.model_copy(update={"evaluator": space.evaluator.model_copy(update={"kind": "train"})})
    assert standing(ref, trials, trained) == "dominated by trial 1 (accuracy +2.5 points, gmacs -33%)"
    assert standing({**ref, "spec_hash": "a"}, trials, space) == "the same architecture as trial 0"
    assert standing({"verdict": "failed", "reason": "RuntimeError: boom"}, trials, space) == "not measured: RuntimeError: boom"


def test_validate_checks_a_space_file(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    assert main(["validate", str(path), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "space" and d["params"] == ["heads", "width3"] and d["grid_size"] == 6
    assert d["constraints"] == ["max_params"] and d["references"] == ["smt_m_6p5m", "efficientmod_xxs", "smt_t"]
