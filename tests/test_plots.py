"""Plot data apart from drawing: which fronts a run gets, the base apart from references, the hypervolume's
reference box, zero-cost axis labels, ablation dot plots; each drawn once to check it renders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from archspace.report.diagnostics import axis_labels, protocol_label
from archspace.report.pareto import front_axes, front_data, front_file, hypervolume_data, run_plot_data, with_references
from archspace.report.plots import plot_front, plot_hypervolume
from archspace.report.tables import ablation_plot_data, plot_ablation
from archspace.search.results import to_csv
from archspace.search.space import Space

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
SPACE = {
    "name": "plots", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}],
    "evaluator": {"kind": "naswot"}, "measure": {"latency": False, "resolution": 64},
}
# (accuracy, mparams, gmacs): trial 0 is the base; 3 is on the front but far below the base's score
TRIALS = [(700.0, 6.0, 1.0), (720.0, 6.5, 1.2), (690.0, 6.5, 0.9), (500.0, 2.0, 0.5), (650.0, 8.0, 1.5)]


def rows():
    return [{"number": i, "verdict": "complete", "spec_hash": f"{i:012x}", "accuracy": a, "mparams": p, "gmacs": g,
             "reference": "base" if i == 0 else None} for i, (a, p, g) in enumerate(TRIALS)]


def test_every_searched_cost_gets_a_front_and_measured_costs_too():
    objectives = [("accuracy", "maximize"), ("mparams", "minimize")]
    assert front_axes(rows(), objectives) == [("mparams", "minimize"), ("gmacs", "minimize")]
    assert front_axes(rows(), [("accuracy", "maximize"), ("images_per_s", "maximize")]) == [("gmacs", "minimize")]
    assert front_axes([{**r, "accuracy": None} for r in rows()], objectives) == []  # no accuracy: nothing to draw against
    assert [front_file(k) for k in ("mparams", "latency_ms", "gmacs")] == ["pareto_params", "pareto_latency", "pareto_flops"]


def test_the_base_is_a_searched_trial_not_a_reference():
    data = front_data(rows(), "mparams", references={0: "smt_m_6p5m (base)"})
    assert data.references == [] and data.base == [(6.0, 700.0, 0)]
    assert [n for *_, n in data.front] == [3, 0, 1]
    refs = with_references(data, [{"reference": "smt_t", "mparams": 11.0, "accuracy": 800.0, "verdict": "infeasible"}])
    assert refs.references == [(11.0, 800.0, "smt_t (over limits)")] and refs.base == data.base


def test_hypervolume_names_the_front_trials_outside_the_reference_box():
    hv = hypervolume_data(rows(), [("accuracy", "maximize"), ("mparams", "minimize")])
    assert [n for n, _ in hv.curve] == [0, 1, 2, 3, 4]
    assert hv.curve[0] == (0, pytest.approx(0.01))  # the base alone: 0.1 x 0.1 of ratios
    assert hv.outside == [3]  # 700 / 500 = 1.4 > 1.1 x the base's score: on the front, adds nothing
    assert hv.curve[3][1] == hv.curve[2][1]
    assert hv.words == ("front trial #3 outside the reference box (1.1 x the base (trial 0) in every objective): "
                        "it adds nothing to the hypervolume")
    without_base = hypervolume_data([{**r, "reference": None} for r in rows()], [("accuracy", "maximize"), ("mparams", "minimize")])
    assert without_base.outside == [] and without_base.words == ""  # normalised over the run: no box to leave
    inside = hypervolume_data(rows()[:3], [("accuracy", "maximize"), ("mparams", "minimize")])
    assert inside.outside == [] and inside.words.startswith("every front trial lies inside the reference box (1.1 x")


def test_a_zero_cost_axis_is_labelled_by_its_evaluator():
    space = Space.model_validate(SPACE)
    labels = axis_labels(space)
    assert labels["accuracy"] == "naswot score on fashion-mnist" and "top-1" not in protocol_label(space)
    trained = Space.model_validate({**SPACE, "evaluator": {"kind": "train", "budget": {"epochs": 1, "train_subset": 2400,
                                                                                        "resolution": 32}}})
    assert axis_labels(trained)["accuracy"] == "proxy top-1 (%): fashion-mnist, 1 ep x 2,400 img, 32 px, stem s2, w0.5"


def test_run_plot_data_and_renderers(tmp_path):
    (tmp_path / "trials.csv").write_text(to_csv(rows(), ["number", "verdict", "spec_hash", "accuracy", "mparams", "gmacs",
                                                         "reference"]))
    fronts, hv = run_plot_data(tmp_path, [("accuracy", "maximize"), ("mparams", "minimize")], {0: "base"})
    assert [(f.x_key, f.file) for f in fronts] == [("mparams", "pareto_params"), ("gmacs", "pareto_flops")]
    assert hv.outside == [3]
    labels = axis_labels(Space.model_validate(SPACE))
    files = plot_front(fronts[0], tmp_path / fronts[0].file, x_label=labels["mparams"], y_label=labels["accuracy"])
    files += plot_hypervolume(hv, tmp_path / "hypervolume")
    assert [p.name for p in files] == ["pareto_params.png", "pareto_params.svg", "hypervolume.png", "hypervolume.svg"]
    assert all(p.stat().st_size > 1000 for p in files)


def test_ablation_dot_plot_data_is_the_seeds_interval():
    table = json.loads((RESULTS / "ablation_heads.json").read_text())
    data = ablation_plot_data(table)
    assert [d.label for d in data] == [r["label"] for r in table["rows"]]
    first = data[0]
    assert first.seeds == [74.8, 75.2, 74.8] and (first.lo, first.hi) == (74.8, 75.2)
    assert first.mean == 74.93 and first.paper == 81.8
    left, right = plot_ablation(table)
    assert not left.patches and not right.patches  # dots and lines, no bars from an arbitrary baseline
    lo, hi = left.get_xlim()
    assert lo < min(min(d.seeds) for d in data) and hi > max(max(d.seeds) for d in data)
