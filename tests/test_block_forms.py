"""Block specs in every form written: the retired ``msa`` flavors load as kinds msa and vit; bad kinds or flavors get one line."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

import archspace
from archspace.cli import main
from archspace.measure.complexity import complexity
from archspace.spec.blocks import MSASpec, ViTSpec
from archspace.spec.io import dump_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
PARETO = ROOT / "experiments" / "results" / "search_smt"

# efficientmod_xxs as its preset read before SMT's and EfficientMod's attention became two kinds
RETIRED_XXS = """
name: efficientmod_xxs
stem: {kind: effmod, kernel_size: 7, stride: 4, padding: 3}
stages:
  - width: 32
    stack: {strategy: sequential, counts: {effmod: 2}}
    effmod: {mlp_ratio: [1, 6], kernel_size: 7, layer_scale: 1.0e-4}
  - width: 64
    downsample: {kernel_size: 3, stride: 2, padding: 1}
    stack: {strategy: sequential, counts: {effmod: 2}}
    effmod: {mlp_ratio: [1, 6], kernel_size: 7, layer_scale: 1.0e-4}
  - width: 128
    downsample: {kernel_size: 3, stride: 2, padding: 1}
    stack: {strategy: sequential, counts: {effmod: 6, msa: 1}}
    effmod: {mlp_ratio: [1, 6], kernel_size: 7, layer_scale: 1.0e-4}
    msa: {flavor: vit, heads: 8, min_head_dim: 32, mlp_ratio: 4}
  - width: 256
    downsample: {kernel_size: 3, stride: 2, padding: 1}
    norm_eps: 1.0e-5
    stack: {strategy: sequential, counts: {effmod: 2, msa: 2}}
    effmod: {mlp_ratio: [1, 6], kernel_size: 7, layer_scale: 1.0e-4}
    msa: {flavor: vit, heads: 8, min_head_dim: 32, mlp_ratio: 4}
head: {pool: avgpool}
"""


def test_retired_vit_flavor_is_the_vit_kind():
    old = spec_from_dict(yaml.safe_load(RETIRED_XXS))
    new = archspace.load_spec("efficientmod_xxs")
    assert old == new
    assert [b.kind for b in new.stages[3].blocks] == ["effmod", "effmod", "vit", "vit"]
    assert new.label().startswith("EE|EE|EEEEEEV|EEVV w32-64-128-256")
    block = new.stages[2].blocks[6]
    assert (block.heads, block.min_head_dim, block.qkv_bias, block.norm_eps, block.head_dim(128)) == (8, 32, False, 1e-5, 32)
    assert sum(p.numel() for p in archspace.build(old).parameters()) == 4_736_264
    assert "flavor" not in dump_spec(new) and spec_from_dict(yaml.safe_load(dump_spec(new))) == new


def test_retired_smt_flavor_in_committed_pareto_specs(tmp_path):
    """The committed search's Pareto specs, written back in the retired form (``kind: msa, flavor: smt,
    min_head_dim: 0`` on every attention block, as runs before the two kinds stored them), load as the same
    specs with their recorded params."""
    rows = {r["spec_hash"]: r for r in csv.DictReader((PARETO / "pareto.csv").open())}
    files = sorted((PARETO / "pareto").glob("*.yaml"))
    assert len(files) == len(rows) == 4
    for path in files:
        data = yaml.safe_load(path.read_text())
        for stage in data["stages"]:
            for block in stage["blocks"]:
                if block["kind"] == "msa":
                    block.update(flavor="smt", min_head_dim=0)
        old = tmp_path / path.name
        old.write_text(yaml.safe_dump(data, sort_keys=False))
        assert "flavor: smt" in old.read_text()
        spec = archspace.load_spec(old)
        assert spec == archspace.load_spec(path)
        msa = [b for s in spec.stages for b in s.blocks if b.kind == "msa"]
        assert msa and all(type(b) is MSASpec for b in msa)
        recorded = rows[path.stem.split("_")[1]]
        assert round(complexity(spec, 224)["params"] / 1e6, 6) == float(recorded["mparams"])


@pytest.mark.parametrize("block, kind, fields", [
    ({"kind": "msa", "flavor": "vit", "heads": 8, "min_head_dim": 32, "qkv_bias": False}, "vit", {"min_head_dim": 32}),
    ({"kind": "msa", "flavor": "vit", "heads": 4}, "vit", {"qkv_bias": False, "norm_eps": 1e-5, "min_head_dim": 32}),
    ({"kind": "msa", "flavor": "smt", "heads": 4, "min_head_dim": 0}, "msa", {"qkv_bias": True, "norm_eps": 1e-6}),
    ({"kind": "msa", "min_head_dim": 0, "heads": 4}, "msa", {"heads": 4}),
    ({"kind": "msa", "flavor": "smt", "heads": 8, "min_head_dim": 8}, "msa", {"heads": 8}),  # <= width // heads: a no-op
])
def test_retired_explicit_blocks(block, kind, fields):
    spec = spec_from_dict({"stages": [{"width": 64, "blocks": [block]}]})
    got = spec.stages[0].blocks[0]
    assert got.kind == kind and type(got) is (ViTSpec if kind == "vit" else MSASpec)
    assert {k: getattr(got, k) for k in fields} == fields


def test_vit_projects_through_heads_times_head_dim():
    """EfficientMod's attention at width 312: head_dim 39, so qkv is 312 -> 3*8*39 (no bias), proj 312 -> 312."""
    block = archspace.BLOCKS["vit"](ViTSpec(heads=8, mlp_ratio=5.0), 312)
    assert tuple(block.attn.qkv.weight.shape) == (936, 312) and block.attn.qkv.bias is None
    assert sum(p.numel() for p in block.parameters()) == 1_366_248  # the official AttentionBlock (official_structure.md)
    assert ViTSpec(heads=8).check(20) is None and MSASpec(heads=8).check(20).startswith("heads: 8 does not divide width 20")


BAD = [
    (lambda b: b.update(flavor=[1]), r"^stages\[0\]\.blocks\[0\]\.flavor: \[1\] is not smt or vit"),
    (lambda b: b.update(flavor="swin"), r"^stages\[0\]\.blocks\[0\]\.flavor: 'swin' is not smt or vit"),
    (lambda b: b.update(flavor=None), r"^stages\[0\]\.blocks\[0\]\.flavor: None is not smt or vit"),
    (lambda b: b.update(flavor={"a": 1}), r"^stages\[0\]\.blocks\[0\]\.flavor: \{'a': 1\} is not smt or vit"),
    (lambda b: b.update(flavor="smt", min_head_dim=[1]), r"^stages\[0\]\.blocks\[0\]\.min_head_dim: unknown field"),
    (lambda b: b.update(kind=[1]), r"^stages\[0\]\.blocks\[0\]: unknown block kind '\[1\]'"),
    (lambda b: b.update(kind={"a": 1}), r"^stages\[0\]\.blocks\[0\]: unknown block kind"),
    (lambda b: b.update(kind=None), r"^stages\[0\]\.blocks\[0\]: unknown block kind 'None'"),
]


@pytest.mark.parametrize("mutate, message", BAD)
def test_malformed_block_one_line(mutate, message):
    block = {"kind": "msa", "heads": 4}
    mutate(block)
    with pytest.raises(archspace.SpecError, match=message) as info:
        spec_from_dict({"stages": [{"width": 64, "blocks": [block]}]})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("stack, message", [
    ({"strategy": "alternate", "kinds": [[1], "sam"], "depth": 2}, r"^stages\[0\]\.stack\.kinds: unknown block kind \[1\]"),
    ({"strategy": "alternate", "kinds": 5, "depth": 2}, r"^stages\[0\]\.stack\.kinds: expected a list of block kinds"),
    ({"strategy": "pattern", "pattern": [{"a": 1}]}, r"^stages\[0\]\.stack\.pattern: unknown block kind \{'a': 1\}"),
    ({"strategy": "pattern", "pattern": "msa"}, r"^stages\[0\]\.stack\.pattern: expected a list of block kinds"),
])
def test_malformed_stack_kinds_one_line(stack, message):
    with pytest.raises(archspace.SpecError, match=message):
        spec_from_dict({"stages": [{"width": 64, "stack": stack}]})


@pytest.mark.parametrize("kind", ["vit", [1], None])
def test_template_cannot_name_another_kind(kind):
    """A template's key is its kind: ``msa: {kind: vit}`` used to build a vit block in place of the msa one."""
    with pytest.raises(archspace.SpecError, match=r"^stages\[0\]\.msa\.kind: a template's key names its kind"):
        spec_from_dict({"stages": [{"width": 64, "stack": {"counts": {"msa": 1}}, "msa": {"kind": kind}}]})


def test_validate_malformed_flavor_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    text = archspace.spec.io.preset_path("smt_t").read_text()
    assert "    msa: {" in text
    bad.write_text(text.replace("    msa: {", "    msa: {flavor: [[1]], ", 1))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".flavor: [1] is not smt or vit" in err and "Traceback" not in err


def test_every_block_kind_keeps_its_state_dict_keys():
    """The names and order that official conversion and stored checkpoints rely on, layer scale on."""
    ffn = ["norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.dwconv.weight", "mlp.dwconv.bias",
           "mlp.fc2.weight", "mlp.fc2.bias"]
    keys = {
        "sam": ["gamma_1", "gamma_2", "norm1.weight", "norm1.bias", "mixer.v.weight", "mixer.v.bias", "mixer.s.weight",
                "mixer.s.bias", "mixer.local_convs.0.weight", "mixer.local_convs.0.bias", "mixer.local_convs.1.weight",
                "mixer.local_convs.1.bias", "mixer.agg.0.weight", "mixer.agg.0.bias", "mixer.agg.1.weight", "mixer.agg.1.bias",
                "mixer.agg.1.running_mean", "mixer.agg.1.running_var", "mixer.agg.1.num_batches_tracked", "mixer.agg.3.weight",
                "mixer.agg.3.bias", "mixer.proj.weight", "mixer.proj.bias", *ffn],
        "effmod": ["gamma", "norm.weight", "norm.bias", "mod.fc1.weight", "mod.fc1.bias", "mod.f.weight", "mod.f.bias",
                   "mod.ctx_conv.weight", "mod.ctx_conv.bias", "mod.g.weight", "mod.g.bias", "mod.fc2.weight", "mod.fc2.bias"],
        "msa": ["gamma_1", "gamma_2", "norm1.weight", "norm1.bias", "attn.q.weight", "attn.q.bias", "attn.kv.weight",
                "attn.kv.bias", "attn.local_conv.weight", "attn.local_conv.bias", "attn.proj.weight", "attn.proj.bias", *ffn],
        "vit": ["gamma_1", "gamma_2", "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
                "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"],
        "convnext": ["gamma", "dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                     "mlp.fc2.weight", "mlp.fc2.bias"],
    }
    specs = {"sam": {"heads": 2}, "msa": {"heads": 2}}
    assert set(keys) == set(archspace.blocks.REGISTRY)
    for kind, entry in archspace.blocks.REGISTRY.items():
        block = entry.module(entry.spec(**specs.get(kind, {}), layer_scale=0.5), 16)
        assert list(block.state_dict()) == keys[kind], kind
        buffers = {name for name, _ in block.named_buffers()}
        assert [name for name, _ in block.named_parameters()] == [k for k in keys[kind] if k not in buffers]
        y = torch.randn(1, 3, 3, 16)
        off = entry.module(entry.spec(**specs.get(kind, {}), layer_scale=None), 16)
        assert not any("gamma" in k for k in off.state_dict()) and off(y).shape == y.shape
