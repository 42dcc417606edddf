"""Schema: validation messages, stacking values, YAML round trips, safe loading."""
from __future__ import annotations


import pytest
import yaml

import archspace
from archspace.spec import stacking
from archspace.spec.blocks import head_channels, saa_groups
from archspace.spec.io import parse_yaml, spec_from_dict, spec_hash
from archspace.spec.official import smt_variant_from_delta


def smt_t_dict() -> dict:
    return yaml.safe_load(archspace.spec.io.preset_path("smt_t").read_text())


def error_of(mutate) -> str:
    d = smt_t_dict()
    mutate(d)
    with pytest.raises(archspace.SpecError) as exc:
        spec_from_dict(d)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["stages"][2]["sam"].update(heads=6), "stages[2].blocks[0].heads: 6 does not divide width 256 (use split: front)"),
        (lambda d: d["stages"][2]["sam"].update(kernel_sizes=[3, 4, 5, 7]), "stages[2].blocks[0].kernel_sizes: kernel size 4 must be odd"),
        (lambda d: d["stages"][2]["sam"].update(kernel_sizes=[3, 5, 7]), "stages[2].blocks[0].kernel_sizes: 3 kernel sizes for 4 heads"),
        (lambda d: d["stages"][0].update(width=0), "stages[0].width: 0 is not valid; input should be greater than 0"),
        (lambda d: d["stages"][0].update(width=-64), "stages[0].width: -64 is not valid"),
        (lambda d: d["stages"][0]["stack"].update(counts={"sam": 0}), "stages[0].stack.counts: block counts must be >= 0 and not all zero"),
        (lambda d: d["stages"][0]["stack"].update(counts={"sam": -2}), "stages[0].stack.counts.sam: -2 is not a count >= 0"),
        (lambda d: d["stages"][0]["stack"].update(counts={"conv": 2}), "stages[0].stack.counts.conv: unknown block kind"),
        (lambda d: d["stages"][3]["msa"].update(heads=6), "stages[3].blocks[0].heads: 6 does not divide width 512"),
        (lambda d: d["stages"][0]["sam"].update(foo=1), "stages[0].blocks[0].foo: unknown field"),
        (lambda d: d.update(bar=1), "bar: unknown field"),
        (lambda d: d["stages"][0]["sam"].update(aggregation="big"), "stages[0].blocks[0].aggregation: 'big' is not allowed"),
        (lambda d: d["stages"][1].pop("downsample"), "stages[1].downsample: required when the width changes (64 -> 128)"),
        (lambda d: d["stages"][0]["sam"].update(heads="4"), "stages[0].blocks[0].heads: '4' is not valid"),
        (lambda d: d["stages"].clear(), "stages: "),
        (lambda d: d["stages"][0].update(downsample={"kernel_size": 3}), "stages[0].downsample: the stem downsamples"),
        (lambda d: d["stages"][2].update(stack={"strategy": "half", "counts": {"sam": 3, "msa": 5}}), "stages[2].stack.counts: half needs two kinds split {'sam': 4, 'msa': 4}"),
        (lambda d: d["stages"][2].update(stack={"strategy": "zigzag", "counts": {"sam": 4}}), "stages[2].stack.strategy: unknown stacking 'zigzag'"),
        (lambda d: d["stem"].update(kernel_size=5), "stem.kernel_size: 5 is not allowed"),
        (lambda d: d["stages"][0]["sam"].update(mlp_ratio=[]), "stages[0].sam.mlp_ratio: empty list"),
        (lambda d: d.update(drop_path_rate=1.5), "drop_path_rate: must be below 1"),
    ],
)
def test_validation_messages(mutate, expected):
    assert error_of(mutate).startswith(expected)


def test_unknown_block_kind_in_explicit_blocks():
    d = smt_t_dict()
    d["stages"][0] = {"width": 64, "blocks": [{"kind": "conv"}]}
    with pytest.raises(archspace.SpecError, match=r"^stages\[0\]\.blocks\[0\]: unknown block kind 'conv'"):
        spec_from_dict(d)


def test_attention_kind_defaults():
    vit = archspace.spec.blocks.ViTSpec(heads=8)
    assert (vit.qkv_bias, vit.min_head_dim, vit.norm_eps) == (False, 32, 1e-5)
    assert vit.head_dim(128) == 32 and vit.head_dim(312) == 39
    smt = archspace.spec.blocks.MSASpec(heads=8)
    assert (smt.qkv_bias, smt.norm_eps) == (True, 1e-6)


def test_stacking_strategies():
    assert stacking.expand("alternate", {"sam": 4, "msa": 4}) == ["sam", "msa"] * 4
    assert stacking.expand("alternate", {"sam": 3, "msa": 1}) == ["sam", "msa", "sam", "sam"]
    assert stacking.expand("alternate", kinds=["sam", "msa"], depth=5) == ["sam", "msa", "sam", "msa", "sam"]
    assert stacking.expand("sequential", {"effmod": 2, "msa": 1}) == ["effmod", "effmod", "msa"]
    assert stacking.expand("half", kinds=["sam", "msa"], depth=8) == ["sam"] * 4 + ["msa"] * 4
    assert stacking.expand("half", kinds=["sam", "msa"], depth=5) == ["sam"] * 3 + ["msa"] * 2
    assert stacking.expand("pattern", pattern=["msa", "sam"]) == ["msa", "sam"]
    assert stacking.pattern_string(["sam", "effmod", "msa"]) == "SEM"


def test_stage_stores_expanded_sequence_and_cycles_ratios():
    spec = archspace.load_spec("efficientmod_s")
    stage = spec.stages[2]
    assert stage.pattern == "E" * 8 + "V" * 4
    assert [b.mlp_ratio for b in stage.blocks[:8]] == [1, 6] * 4
    assert stage.blocks[8].kind == "vit" and stage.blocks[11].mlp_ratio == 4.0
    assert "stack" not in spec.model_dump()["stages"][2]


def test_uneven_split_sizes():
    assert head_channels(64, 6, "front") == (11, 11, 11, 11, 10, 10)
    assert head_channels(64, 6, "last") == (10, 10, 10, 10, 10, 14)
    assert head_channels(256, 4, "even") == (64,) * 4
    assert saa_groups(64, 6) == 8 and saa_groups(256, 4) == 64


def test_kernel_sizes_default_per_head():
    b = archspace.spec.blocks.SAMSpec(heads=6)
    assert b.kernel_sizes == (3, 5, 7, 9, 11, 13)


@pytest.mark.parametrize("name", archspace.preset_names())
def test_presets_round_trip_through_yaml(name, tmp_path):
    spec = archspace.load_spec(name)
    path = tmp_path / "spec.yaml"
    archspace.dump_spec(spec, path)
    again = archspace.load_spec(str(path))
    assert again == spec
    assert spec_from_dict(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json")))) == spec
    assert spec_hash(again) == spec_hash(spec)


def test_ablation_readings_round_trip(reference_counts):
    for row in reference_counts["smt_ablations"]:
        spec = smt_variant_from_delta(row["cfg_delta"])
        assert spec_from_dict(yaml.safe_load(archspace.dump_spec(spec))) == spec


def test_spec_hash_ignores_name_and_sees_structure():
    a = archspace.load_spec("smt_t")
    b = a.model_copy(update={"name": "other"})
    assert spec_hash(a) == spec_hash(b)
    assert spec_hash(a) != spec_hash(archspace.load_spec("smt_s"))


def test_specs_are_frozen():
    spec = archspace.load_spec("smt_t")
    with pytest.raises(Exception):
        spec.num_classes = 10  # type: ignore[misc]


def test_yaml_is_loaded_safely():
    with pytest.raises(archspace.SpecError, match="malformed YAML .*python/object/apply"):
        parse_yaml("!!python/object/apply:os.system ['echo owned']", "evil.yaml")
    with pytest.raises(archspace.SpecError, match=r"^bad\.yaml: line 1 column 9: malformed YAML"):
        parse_yaml("a: [1, 2", "bad.yaml")


def test_load_spec_errors(tmp_path):
    with pytest.raises(archspace.SpecError, match="neither a file nor a preset"):
        archspace.load_spec("smt_zz")
    with pytest.raises(archspace.SpecError, match="no such file"):
        archspace.load_spec(str(tmp_path / "missing.yaml"))
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(archspace.SpecError, match="expected a mapping"):
        archspace.load_spec(str(p))


@pytest.mark.parametrize("data, expected", [
    (bytes(range(256)), r"binary\.yaml: a binary file, not YAML text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"binary\.yaml: a binary file"),
    ("name: caf\xe9\n".encode("latin-1"), r"binary\.yaml: not UTF-8 text \(byte 0xe9 at offset 9; save the file as UTF-8\)"),
    (b"", r"binary\.yaml: empty \(a spec is a mapping with stem, stages and head"),
    (b"name: \x07\n", r"binary\.yaml: character 7: malformed YAML \(unacceptable character #x0007"),
])
def test_files_that_are_no_yaml_text_get_one_line(tmp_path, data, expected):
    path = tmp_path / "binary.yaml"
    path.write_bytes(data)
    with pytest.raises(archspace.SpecError, match=expected) as exc:
        archspace.load_spec(str(path))
    assert "\n" not in str(exc.value)


def test_byte_order_marks_are_honoured(tmp_path):
    text = archspace.spec.io.preset_path("smt_t").read_text()
    for name, data in (("utf8", b"\xef\xbb\xbf" + text.encode()), ("utf16", text.encode("utf-16"))):
        (tmp_path / f"{name}.yaml").write_bytes(data)
        assert archspace.load_spec(str(tmp_path / f"{name}.yaml")) == archspace.load_spec("smt_t")


@pytest.mark.parametrize("dropout", [1, 2.5, 1e9])
def test_head_dropout_is_a_probability(dropout):
    # before: accepted, then nn.Dropout raised "dropout probability has to be between 0 and 1" in the builder
    assert error_of(lambda d: d.update(head={"pool": "mean", "dropout": dropout})).startswith(
        f"head.dropout: {dropout!r} is not valid; input should be less than 1")


def test_one_line_renders_any_validation_error():
    from pydantic import ValidationError

    from archspace.evaluate.budget import TrainBudget
    from archspace.spec.errors import one_line

    with pytest.raises(ValidationError) as exc:
        TrainBudget(epochs=0)
    assert one_line(exc.value) == "epochs: 0 is not valid; input should be greater than or equal to 1"
    with pytest.raises(ValidationError) as exc:
        TrainBudget(epochs=0, batch_size="x")
    assert one_line(exc.value).startswith("epochs: 0 is not valid; input should be greater than or equal to 1 (and 1 more problem;")
    assert one_line(archspace.SpecError("a\n  b")) == "a b"


def test_json_schema_accepts_both_stage_forms_and_refuses_typos():
    jsonschema = pytest.importorskip("jsonschema")
    from archspace.spec.io import dump_spec, json_schema, preset_names
    from archspace.spec.net import NetSpec

    schema = json_schema(NetSpec)
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in preset_names():  # what load_spec reads: the compact files and their expanded dumps
        jsonschema.validate(yaml.safe_load(archspace.spec.io.preset_path(name).read_text()), schema)
        jsonschema.validate(yaml.safe_load(dump_spec(archspace.load_spec(name))), schema)
    for mutate in (lambda d: d["stages"][2]["sam"].update(haeds=4),  # a typo in a template
                   lambda d: d["stages"][2]["stack"]["counts"].update(conv=2),  # an unknown kind
                   lambda d: d["stages"][2].update(blocks=[{"kind": "sam"}]),  # both forms at once
                   lambda d: d["stages"][0].update(width=0),
                   lambda d: d["stages"][0]["sam"].update(mlp_ratio=100)):  # pydantic's le=64 behind a BeforeValidator
        d = smt_t_dict()
        mutate(d)
        with pytest.raises(archspace.SpecError):
            spec_from_dict(d)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(d, schema)


def test_preset_about_is_the_whole_first_sentence():
    from archspace.spec.io import preset_about, preset_names

    assert preset_about("smt_t") == "SMT-T (Lin et al. 2023, Table 13; official smt_t)."
    assert preset_about("smt_l_layerscale") == ("SMT-L with layer scale (init 1e-4) on every block, as the official "
                                                "SMT-L yaml trains it.")
    assert all(preset_about(n).endswith((".", ")")) and "\n" not in preset_about(n) for n in preset_names())
    with pytest.raises(archspace.SpecError, match="not a preset"):
        preset_about("smt_zz")


def test_label_tells_apart_every_searched_field():
    def label(mutate) -> str:
        d = smt_t_dict()
        mutate(d)
        return spec_from_dict(d).label()

    base = label(lambda d: None)
    assert base == "SS|SS|SMSMSMSM|M w64-128-256-512 h4-4-4/8-16 r4-4-4-2"
    assert label(lambda d: d.update(name="other")) == base  # equal networks, equal labels
    variants = {
        "aggregation": label(lambda d: [s["sam"].update(aggregation="ibn") for s in d["stages"][:3]]),
        "mlp_ratio": label(lambda d: d["stages"][2]["sam"].update(mlp_ratio=2)),
        "kernels": label(lambda d: d["stages"][0]["sam"].update(kernel_sizes=[3, 3, 3, 3])),
        "layer_scale": label(lambda d: d["stages"][3]["msa"].update(layer_scale=1e-4)),
    }
    assert variants == {
        "aggregation": base + " aibn-ibn-ibn-_",
        "mlp_ratio": "SS|SS|SMSMSMSM|M w64-128-256-512 h4-4-4/8-16 r4-4-2/4-2",
        "kernels": base + " k3.3.3.3-3.5.7.9-3.5.7.9-_",
        "layer_scale": base + " lsoff-off-off-0.0001",
    }
    assert archspace.load_spec("efficientmod_xxs").label() == "EE|EE|EEEEEEV|EEVV w32-64-128-256 h_-_-8-8 r1/6-1/6-1/6/4-1/6/4"
