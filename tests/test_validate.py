"""validate_file: every shipped spec, space, ablation and preset validates by its kind; problems are one line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import archspace
from archspace.nn.build import HybridNet
from archspace.search.validate import describe, file_kind, validate_file
from archspace.spec.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = sorted((ROOT / "experiments" / "ablations").glob("*.yaml"))
SPACES = sorted((ROOT / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_every_ablation_file_validates_as_an_ablation(path):
    d = validate_file(path)
    data = yaml.safe_load(path.read_text())
    assert (d["ok"], d["kind"], d["name"]) == (True, "ablation", data["name"])
    assert d["rows"] == [r["label"] for r in data["rows"]] and d["seeds"] == data.get("seeds", 2)
    assert d["trials"] == len(data["rows"]) * d["seeds"]
    assert d["reproduces_paper"] == [r["label"] for r in data["rows"] if r.get("reproduces_paper")]
    assert describe(d).startswith(f"ok: {path}: ablation {data['name']}, {len(data['rows'])} rows x {d['seeds']} seeds")


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_shipped_space_validates_as_a_space(path):
    d = validate_file(path)
    data = yaml.safe_load(path.read_text())
    assert (d["ok"], d["kind"], d["name"]) == (True, "space", data["name"])
    assert d["params"] == [p["name"] for p in data["params"]]
    assert set(d) >= {"file", "objectives", "constraints", "references", "grid_size"}
    assert d["constraints"] == ["max_params"] and d["objectives"][0] == "accuracy"


def test_space_grid_size_is_the_product_of_the_domains():
    d = validate_file(ROOT / "spaces" / "smt.yaml")
    assert d["grid_size"] == 4 * 4 * 2 * 6 * 5 * 4 * 2  # heads, aggregation, s3_stacking, s3_sam 1-6, s3_msa 0-4, width3, mlp_ratio3
    assert d["references"] == ["smt_m_6p5m", "efficientmod_xxs", "efficientmod_xs"]


@pytest.mark.parametrize("name", archspace.preset_names())
def test_every_preset_validates_with_the_built_models_params(name):
    for source in (name, archspace.spec.io.preset_path(name)):
        d = validate_file(source)
        assert d["kind"] == "spec" and d["name"] == name
    spec = archspace.load_spec(name)
    with torch.device("meta"):
        built = sum(p.numel() for p in HybridNet(spec).parameters())
    assert d["params"] == built
    assert [s["pattern"] for s in d["stages"]] == [s.pattern for s in spec.stages]
    assert d["depth"] == sum(s["depth"] for s in d["stages"]) == spec.depth


def test_smt_t_summary():
    d = validate_file("smt_t")
    assert d["params"] == 11_506_536 and d["depth"] == 13 and d["stride"] == 32
    assert describe(d) == "ok: smt_t: 11,506,536 params, stages SS | SS | SMSMSMSM | M"


@pytest.mark.parametrize("text, kind", [("rows: []\nname: x\n", "ablation"), ("params: []\n", "space"),
                                        ("objectives: []\n", "space"), ("stages: []\n", "spec")])
def test_kind_comes_from_the_content(tmp_path, text, kind):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    assert file_kind(path) == kind


@pytest.mark.parametrize("text, fragment", [
    ("colour: red\n", "not an archspace file: a spec has stages, a space params and objectives, an ablation rows"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("name: x\ntitle: t\nrows: [{label: a, preset: smt_t}]\n", "rows: "),  # an ablation's problem, not 'stages: required'
    ("name: x\nrows: [{label: a, preset: smt_t}, {label: b, preset: smt_zz}]\ntitle: t\n", "rows[1] (b): "),
])
def test_problems_are_one_line_naming_the_kinds_field(tmp_path, text, fragment):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        validate_file(path)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg and "stages: required" not in msg
