"""Search spaces: schema errors in one line and under a second, editable form, define-by-run, base values."""
from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import yaml

import archspace
from archspace.cli import main
from archspace.search.space import base_spec, base_values, editable, load_space, spec_for, suggest
from archspace.spec.io import spec_from_dict, spec_to_dict

SPACES = Path(__file__).resolve().parents[1] / "spaces"
GOOD = {
    "name": "t", "base": "smt_t",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"latency": False},
}


def write(tmp_path, data, name="space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", ["smt", "efficientmod", "hybrid"])
def test_shipped_spaces_load_and_reproduce_their_base(name):
    space = load_space(SPACES / f"{name}.yaml")
    values = base_values(space)
    assert values is not None
    got = spec_for(space, values).model_copy(update={"name": None, "num_classes": 1000})
    assert got == base_spec(space).model_copy(update={"name": None})


@pytest.mark.parametrize("name", archspace.preset_names())
def test_editable_form_round_trips(name):
    spec = archspace.load_spec(name)
    assert spec_from_dict(editable(spec)) == spec


def test_define_by_run_with_a_real_optuna_trial():
    space = load_space(SPACES / "smt.yaml")
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    values = suggest(trial, space)
    assert set(values) == {p.name for p in space.params} == set(trial.params)
    spec = spec_for(space, values)
    stage3 = spec.stages[2]
    assert stage3.width == values["width3"]
    assert stage3.counts().get("sam", 0) == values["s3_sam"] and stage3.counts().get("msa", 0) == values["s3_msa"]
    assert all(b.heads == values["heads"] for s in spec.stages[:3] for b in s.blocks if b.kind == "sam")


def test_list_choices_cycle_per_block():
    space = load_space(SPACES / "efficientmod.yaml")
    values = {**base_values(space), "ratios": "4", "s3_effmod": 4}
    spec = spec_for(space, values)
    assert [b.mlp_ratio for b in spec.stages[2].blocks if b.kind == "effmod"] == [4, 4, 4, 4]
    spec = spec_for(space, {**values, "ratios": "1,6"})
    assert [b.mlp_ratio for b in spec.stages[0].blocks] == [1, 6]


def test_impossible_sample_gives_reason():
    space = load_space(SPACES / "hybrid.yaml")
    values = {**base_values(space), "s1_sam": 0, "s1_effmod": 0}
    with pytest.raises(archspace.SpecError, match=r"stages\[0\]\.stack\.counts: block counts must be >= 0 and not all zero"):
        spec_for(space, values)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.update(colour="red"), "colour: unknown field"),
    (lambda d: d["params"][0].update(choices=[]), "params[0].choices: empty choice list"),
    (lambda d: d.update(constraints={"max_params": 1000}), "constraints.max_params: 1,000 is below the smallest network of the space"),
    (lambda d: d.update(constraints={"max_params": -5}), "constraints.max_params: -5 is not valid"),
    (lambda d: d["objectives"][0].pop("direction"), "objectives[0].direction: missing (use maximize or minimize)"),
    (lambda d: d["objectives"][0].update(direction="up"), "objectives[0].direction: 'up' is not allowed"),
    (lambda d: d["params"][0].update(path="stages[7].sam.heads"), "params[0].path: stages[7].sam.heads: stages[7] is out of range"),
    (lambda d: d["params"][0].update(name="a/b"), "params[0].name: "),
    (lambda d: d.update(base="smt_zz"), "base: smt_zz: neither a file nor a preset"),
    (lambda d: d.update(evaluator={"kind": "train", "budget": {"epochs": 0}}), "evaluator.budget.epochs"),
    (lambda d: d.update(params=[]), "params: "),
    (lambda d: d["params"][0].update(path="stages[0:2].sam.haeds"),
     "params[0].path: stages[0:2].sam.haeds: sam has no field 'haeds' (did you mean 'heads'?)"),
    (lambda d: d["params"][0].update(path="stages[2].stack.count.msa", choices=[0, 2]),
     "params[0].path: stages[2].stack.count.msa: stack has no field 'count' (did you mean 'counts'?)"),
    (lambda d: d["params"][0].update(path="stages[2].widht", choices=[128, 256]),
     "params[0].path: stages[2].widht: stages[2] has no field 'widht' (did you mean 'width'?)"),
    (lambda d: d["params"][0].update(path="stages[2].stack.counts.msaa", choices=[0, 2]),
     "params[0].path: stages[2].stack.counts.msaa: counts has no field 'msaa' (did you mean 'msa'?)"),
    (lambda d: d["params"][0].update(path="stages[2].width.value", choices=[128]),
     "params[0].path: stages[2].width.value: width is a value, not a mapping"),
    (lambda d: d["params"].append({"name": "w3", "path": "stages[2].width", "choices": [100, 130]}),
     "params[1].choices: no value of w3 gives a valid network on the base (first, 100: stages[2].blocks[1].heads: "
     "8 does not divide width 100"),
    (lambda d: d["params"].append({"name": "h1", "path": "stages[0].sam.heads", "low": 3, "high": 3}),
     "params[1].low: no value of h1 gives a valid network on the base (first, 3: stages[0].blocks[0].heads"),
    (lambda d: d.update(measure={"latency": "maybe"}),
     "measure.latency: 'maybe' is not a latency source; use measured, predicted or false"),
    (lambda d: d.update(base={**yaml.safe_load(yaml.safe_dump(spec_to_dict(archspace.load_spec("smt_t")))),
                             "num_classes": 10, "drop_path_rate": 1.5}), "base: "),
])
def test_bad_space_files_fail_fast_in_one_line(tmp_path, capsys, mutate, fragment):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(data)
    path = write(tmp_path, data)
    t0 = time.perf_counter()
    code = main(["search", str(path), "--run-dir", str(tmp_path / "run")])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2, err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert elapsed < 1.0
    assert not (tmp_path / "run").exists()


def test_malformed_yaml(tmp_path, capsys):
    path = write(tmp_path, "name: x\nparams: [1, 2\n")
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert "malformed YAML" in err and err.count("\n") == 1


@pytest.mark.parametrize("path, problem", [
    ("stages[0:2].sam.haeds", "sam has no field 'haeds' (did you mean 'heads'?)"),
    ("stages[2].stack.count.msa", "stack has no field 'count' (did you mean 'counts'?)"),
    ("stages[2].widht", "stages[2] has no field 'widht' (did you mean 'width'?)"),
    ("stem.strid", "stem has no field 'strid' (did you mean 'stride'?)"),
    ("stages.width", "stages is a list: select stages with stages[i], stages[a:b] or stages[*]"),
    ("stages[0].effmod.mlp_ratio", None),  # a kind stage 0 lacks: its spec's fields (defaults filled in)
    ("stages[0].convnext.kernel_size", None),
    ("stages[2].stack.counts.effmod", None),
    ("stages[1].downsample.kernel_size", None),
    ("stem.kind", None),
    ("head.dropout", None),
])
def test_path_problem_derives_fields_from_the_models(path, problem):
    from archspace.search.space import path_problem

    assert path_problem(path, archspace.load_spec("smt_t")) == problem


def test_validate_refuses_a_path_typo_in_one_line(tmp_path, capsys):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["params"][0]["path"] = "stages[0:2].sam.haeds"
    path = write(tmp_path, data)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params[0].path: stages[0:2].sam.haeds: sam has no field 'haeds' (did you mean 'heads'?)" in err


def test_a_param_with_some_invalid_choices_still_loads(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["params"].append({"name": "w3", "path": "stages[2].width", "choices": [100, 128]})
    assert [p.name for p in load_space(write(tmp_path, data)).params] == ["heads", "w3"]
