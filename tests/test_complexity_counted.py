"""The analytic complexity equals what the counters measure on the built module, for every block variant."""
from __future__ import annotations

import pytest
import torch

import archspace
from archspace.measure import count_flops
from archspace.measure.complexity import complexity
from archspace.search.space import load_space, spec_for, suggest
from archspace.spec.io import spec_from_dict
from archspace.spec.official import smt_variant
from conftest import REPO


def variants():
    small = dict(embed_dims=[32, 64, 96, 128], depths=[1, 1, 3, 1], sa_num_heads=[-1, -1, 4, 8], mlp_ratios=[4, 4, 4, 2])
    yield "uneven-front", smt_variant(ca_num_heads=[6, 6, 6, -1], split="front", **small)
    yield "uneven-last-ibn", smt_variant(ca_num_heads=[6, 6, 6, -1], split="last", aggregation="ibn", **small)
    yield "linear2-half", smt_variant(aggregation="linear2", stage3_pattern="half", **small)
    yield "none-allsam", smt_variant(aggregation="none", stage3_pattern="sam", ca_attentions=[1, 1, 1, 1],
                                     ca_num_heads=[1, 1, 1, 1], kernel_sizes=[5], **small)
    yield "layerscale", smt_variant(use_layerscale=True, aggregation="linear1", **small)
    data = archspace.spec.io.spec_to_dict(archspace.load_spec("efficientmod_xxs"))
    for stage in data["stages"]:
        for b in stage["blocks"]:
            if b["kind"] == "effmod":
                b.update(context=["f", "g"], fusion="sum")
            else:
                b.update(layer_scale=1e-4)
    yield "effmod-f-g-sum-vit-ls", spec_from_dict(data)
    from archspace.blocks import REGISTRY

    for kind, entry in REGISTRY.items():  # every registered kind, default fields, in a two-stage net
        yield f"kind-{kind}", spec_from_dict({"name": f"k_{kind}", "stages": [
            {"width": 32, "stack": {"strategy": "sequential", "counts": {kind: 1}}},
            {"width": 64, "downsample": {"kernel_size": 2, "stride": 2}, "stack": {"strategy": "sequential", "counts": {kind: 1}}}]})
    space = load_space(REPO / "spaces" / "hybrid.yaml")
    import optuna
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=5))
    n = 0
    while n < 2:
        trial = study.ask()
        try:
            spec = spec_for(space, suggest(trial, space))
        except archspace.SpecError:
            continue
        n += 1
        yield f"hybrid-{n}", spec


CASES = list(variants())


@pytest.mark.parametrize("name, spec", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("resolution", [64])
def test_analytic_equals_counted(name, spec, resolution):
    torch.manual_seed(0)
    model = archspace.build(spec, num_classes=10)
    counted = count_flops(model, input_shape=(1, 3, resolution, resolution))
    analytic = complexity(spec, resolution, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == analytic["params"]
    for convention in ("smt-paper", "fvcore", "full"):
        assert analytic[convention] == counted[convention], convention


@pytest.mark.parametrize("name", archspace.preset_names())
def test_analytic_equals_counted_presets_224(name):
    with torch.device("meta"):
        model = archspace.build(name)
    counted = count_flops(model, conventions=("smt-paper", "full"))
    analytic = complexity(name)
    assert (analytic["smt-paper"], analytic["full"]) == (counted["smt-paper"], counted["full"])
