"""archspace.results: the trials of a run as a typed DataFrame, from a run directory or its storage."""
from __future__ import annotations

import pandas as pd
import pytest

import archspace
from archspace.search.engine import run_worker
from archspace.search.results import parse, read_table, to_csv
from archspace.search.space import Space

SPACE = {
    "name": "res3", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
               {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2},
               {"name": "ratio", "path": "stages[*].sam.mlp_ratio", "choices": [2.0, 4.0]}],
    "objectives": [{"metric": "params", "direction": "minimize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 3}, "seed": 0,
}


def test_results_of_a_three_trial_run(tmp_path):
    run = tmp_path / "run"
    space = Space.model_validate(SPACE)
    run_worker(space, run, progress=None)
    (run / "space.yaml").write_text(__import__("yaml").safe_dump(SPACE))
    df = archspace.results(run)
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert {"param_heads", "param_s3_msa", "param_ratio"} <= set(df.columns) and "params" not in df.columns
    assert df["mparams"].dtype == "float64" and df["gmacs"].dtype == "float64"
    assert df["number"].tolist() == [0, 1, 2] and (df["verdict"] == "complete").all()
    base = df[df["reference"] == "base"].iloc[0]
    assert base["mparams"] == pytest.approx(6.12705, abs=1e-6) and base["arch"] == "S|S|SMSM|M w64-128-256-384 h4-4-4/8-16 r4-4-4-2"
    assert (df["evaluator"] == "params").all() and df["gmacs_convention"].iloc[0] == "smt-paper"
    assert df["spec_hash"].str.fullmatch(r"[0-9a-f]+").all()
    from_storage = archspace.results(f"sqlite:///{run / 'study.db'}")  # the study carries its space
    assert from_storage[["number", "spec_hash", "mparams"]].equals(df[["number", "spec_hash", "mparams"]])
    text = (run / "trials.csv").read_text()
    assert "0000000001" not in text  # floats rounded, no binary noise in the table
    with pytest.raises(archspace.SpecError, match="does not exist"):
        archspace.results(f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()


def test_hashes_and_words_stay_strings(tmp_path):
    rows = [{"number": 0, "spec_hash": "012345678901", "accuracy": 67.10000000000001, "param_x": "1,6"},
            {"number": 1, "spec_hash": "123e45678901", "accuracy": 70.0, "param_x": 4}]
    path = tmp_path / "t.csv"
    path.write_text(to_csv(rows, ["number", "spec_hash", "accuracy", "param_x"]))
    assert "67.1," in path.read_text()
    back = read_table(path)
    assert [r["spec_hash"] for r in back] == ["012345678901", "123e45678901"]
    assert back[0]["accuracy"] == 67.1 and back[0]["param_x"] == "1,6" and back[1]["param_x"] == 4
    assert parse("param_y", "123e45678901") == "123e45678901" and parse("param_y", "inf") == float("inf")


def test_report_plots_say_their_protocol_and_hypervolume_is_relative_to_the_base(tmp_path):
    import yaml

    from archspace.report.diagnostics import axis_labels
    from archspace.report.run import make_report
    from archspace.search.results import columns, table
    from archspace.search.front import hypervolume_curve

    space_data = {**SPACE, "name": "synthetic", "objectives": [{"metric": "accuracy", "direction": "maximize"},
                                                             {"metric": "latency", "direction": "minimize"}],
                  "evaluator": {"kind": "train", "budget": {"epochs": 1, "train_subset": 2400, "resolution": 32}},
                  "measure": {"latency": True, "resolution": 224, "threads": 1}}
    space = Space.model_validate(space_data)
    rows = [{"number": i, "state": "COMPLETE", "verdict": "complete", "spec_hash": f"{i:012x}", "accuracy": acc,
             "latency_ms": lat, "gmacs": lat / 100, "mparams": lat / 20, "reference": "base" if i == 0 else None,
             "params": {"heads": 4, "s3_msa": 1, "ratio": 4.0}}
            for i, (acc, lat) in enumerate([(70.0, 100.0), (72.0, 90.0), (69.0, 60.0), (60.0, 150.0)])]
    run = tmp_path / "run"
    run.mkdir()
    (run / "space.yaml").write_text(yaml.safe_dump(space_data))
    (run / "trials.csv").write_text(to_csv(table(space, rows), columns(space)))
    files = {p.name for p in make_report(run, space)}
    assert {"pareto_latency.png", "pareto_flops.svg", "hypervolume.png"} <= files
    labels = axis_labels(space)
    assert labels["accuracy"] == "proxy top-1 (%): fashion-mnist, 1 ep x 2,400 img, 32 px, stem s2, w0.5"
    assert labels["latency_ms"] == "latency (ms calibrated to this run's reference): cpu, batch 1, 224 px, 1 thread(s)"
    pytest.importorskip("plotly")
    assert "pareto.html" in files and "trial 1" in (run / "pareto.html").read_text()
    # ratios to the base (70 %, 100 ms), reference point 1.1 x base: the base alone covers 0.1 x 0.1
    curve = hypervolume_curve(rows, ["accuracy", "latency_ms"], ["maximize", "minimize"], reference=rows[0])
    assert curve[0] == (0, pytest.approx(0.01))
    assert curve[-1][1] == curve[-2][1] > curve[0][1]  # trial 3 is worse than the base: no gain
