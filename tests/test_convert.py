"""Official checkpoints: converted weights reproduce the official float64 logits to 1e-8."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archspace
from archspace.cli import main
from archspace.measure.complexity import complexity

FAMILIES = {"SMT": "smt", "EfficientMod": "efficientmod"}


def fixture_names():
    """Every fixture in shared/reference/fixtures (a pair NAME.json + NAME.npz), not a hand list."""
    from conftest import reference_dir

    ref = reference_dir()
    return sorted(p.stem for p in (ref / "fixtures").glob("*.json")) if ref and (ref / "fixtures").is_dir() else []


def load_fixture(fixtures_dir, stem):
    meta = json.loads((fixtures_dir / f"{stem}.json").read_text())
    z = np.load(fixtures_dir / f"{stem}.npz")
    state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
    return meta, state, torch.from_numpy(z["input"]), torch.from_numpy(z["logits"])


def test_every_shared_fixture_is_found():
    names = fixture_names()
    if not names:
        pytest.skip("shared/reference is not beside the repository")
    assert {"smt_small_fixture", "effmod_small_fixture", "effmod_uneven_heads_fixture"} <= set(names)


@pytest.mark.parametrize("stem", fixture_names())
def test_fixture_logits_float64(fixtures_dir, stem):
    meta, state, x, logits = load_fixture(fixtures_dir, stem)
    spec = archspace.spec_from_official(FAMILIES[meta["family"]], **meta["official_constructor_args"])
    model = archspace.build(spec).double().eval()
    assert sum(p.numel() for p in model.parameters()) == meta["params"]
    assert complexity(spec, 64)["params"] == meta["params"]
    model.load_state_dict(archspace.convert_official(state, spec), strict=True)
    with torch.no_grad():
        out = model(x)
    rel = (out - logits).abs().max() / logits.abs().max()
    assert rel.item() <= 1e-8


def test_fixture_detects_wrong_eps(fixtures_dir):
    """The check is sharp: SMT block LayerNorms at eps 1e-5 instead of 1e-6 miss the logits."""
    meta, state, x, logits = load_fixture(fixtures_dir, "smt_small_fixture")
    spec = archspace.spec_from_official("smt", **meta["official_constructor_args"])
    data = spec.model_dump(mode="json")
    for stage in data["stages"]:
        for block in stage["blocks"]:
            block["norm_eps"] = 1e-5
    wrong = archspace.spec.io.spec_from_dict(data)
    model = archspace.build(wrong).double().eval()
    model.load_state_dict(archspace.convert_official(state, wrong))
    with torch.no_grad():
        rel = (model(x) - logits).abs().max() / logits.abs().max()
    assert rel.item() > 1e-6


def test_convert_refuses_mismatched_spec(fixtures_dir):
    meta, state, _, _ = load_fixture(fixtures_dir, "smt_small_fixture")
    with pytest.raises(archspace.SpecError, match="state_dict: "):
        archspace.convert_official(state, archspace.load_spec("smt_t"))
    with pytest.raises(archspace.SpecError, match="neither an official SMT"):
        archspace.convert_official({"foo.weight": np.zeros(3)}, archspace.load_spec("smt_t"))


def test_convert_cli_pth_and_npz(fixtures_dir, tmp_path, capsys):
    meta, state, x, logits = load_fixture(fixtures_dir, "effmod_small_fixture")
    spec = archspace.spec_from_official("efficientmod", **meta["official_constructor_args"])
    spec_file = tmp_path / "effmod_small.yaml"
    archspace.dump_spec(spec, spec_file)
    ckpt = tmp_path / "official.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, ckpt)
    out = tmp_path / "converted.pth"
    assert main(["convert", str(ckpt), "--spec", str(spec_file), "--out", str(out)]) == 0
    converted = torch.load(out, weights_only=True)
    model = archspace.build(spec).double().eval()
    model.load_state_dict(converted)
    with torch.no_grad():
        assert ((model(x) - logits).abs().max() / logits.abs().max()).item() <= 1e-8
    out_npz = tmp_path / "converted.npz"
    assert main(["convert", str(fixtures_dir / "effmod_small_fixture.npz"), "--spec", str(spec_file), "--out", str(out_npz)]) == 0
    assert set(np.load(out_npz).files) == set(converted)


def test_convert_cli_errors_write_nothing(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "never.pth"
    code = main(["convert", str(fixtures_dir / "smt_small_fixture.npz"), "--spec", "smt_t", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("archspace: error: state_dict: ") and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    code = main(["convert", str(bad), "--spec", "smt_t", "--out", str(out)])
    assert code == 2 and "cannot load as a weights-only checkpoint" in capsys.readouterr().err
    assert not out.exists()
