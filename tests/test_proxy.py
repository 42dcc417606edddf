"""Proxy knobs (stem stride, width multiplier), the run's fidelity diagnostics, and the ablations' seed interval."""
from __future__ import annotations

import math

import pytest
import torch

import archspace
from archspace.evaluate import TrainBudget, train_proxy
from archspace.measure.complexity import complexity
from archspace.report.diagnostics import WARNING, capacity_check
from archspace.search.ablation import seed_bootstrap_tau


@pytest.mark.parametrize("name", ["smt_t", "efficientmod_xxs"])
def test_stem_stride_two_keeps_params_and_doubles_the_maps(name):
    spec = archspace.load_spec(name)
    proxy = spec.with_stem_stride(2)
    assert proxy.stride == spec.stride // 2 and proxy.stem.stride == 2
    a, b = archspace.build(spec), archspace.build(proxy)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    x = torch.randn(1, 3, 32, 32)
    assert a.forward_features(x).shape[2:] == (1, 1) and b.forward_features(x).shape[2:] == (2, 2)
    assert complexity(proxy, 32)["params"] == complexity(spec, 32)["params"]
    assert complexity(proxy, 32)["smt-paper"] > 3 * complexity(spec, 32)["smt-paper"]
    assert spec.with_stem_stride(None) is spec


def test_width_mult_keeps_heads_divisible_and_structure():
    spec = archspace.load_spec("efficientmod_s")
    half = spec.with_width_mult(0.5)
    assert [s.width for s in half.stages] == [16, 32, 72, 156]  # EfficientMod's attention takes any width
    smt = archspace.load_spec("smt_t").with_width_mult(0.3)  # SMT attention splits the width: 8 | width in stage 3
    assert [s.width for s in smt.stages] == [20, 40, 80, 160]  # 76.8 -> 80 (8 heads), 153.6 -> 160 (16 heads)
    assert [[b.kind for b in s.blocks] for s in half.stages] == [[b.kind for b in s.blocks] for s in spec.stages]
    archspace.build(half)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="width_mult"):
        spec.with_width_mult(0)


def test_budget_knobs_need_a_spec_and_are_recorded():
    budget = TrainBudget.cpu_default(train_subset=60, test_subset=50, batch_size=30, threads=1)
    assert budget.stem_stride == 2 and budget.width_mult == 0.5 and budget.epochs == 1
    spec = archspace.load_spec("smt_m_6p5m").model_copy(update={"num_classes": 10})
    res = train_proxy(spec, budget)
    assert res.status == "ok" and res.budget.stem_stride == 2
    assert res.params == sum(p.numel() for p in archspace.build(spec.with_stem_stride(2).with_width_mult(0.5)).parameters())
    with pytest.raises(ValueError, match="pass the NetSpec"):
        train_proxy(archspace.build(spec), budget)


def test_capacity_check_warns_when_accuracy_falls_with_params():
    rows = [{"verdict": "complete", "spec_hash": f"h{i}", "mparams": p, "gmacs": p / 5, "accuracy": a}
            for i, (p, a) in enumerate([(5, 80), (8, 78), (11, 75), (15, 70)])]
    check = capacity_check(rows)
    assert check["tau_params"] == -1.0 and check["tau_flops"] == -1.0 and WARNING in check["warning"]
    rising = [{**r, "accuracy": 60 + r["mparams"]} for r in rows]
    rising.append({**rising[0], "accuracy": 66.0})  # the same architecture under another seed
    check = capacity_check(rising)
    assert check["tau_params"] == 1.0 and check["warning"] is None
    assert check["seed_sd"] == pytest.approx(0.5) and check["seeded_architectures"] == 1


def test_seed_bootstrap_interval_says_how_far_noise_moves_tau():
    paper = [81.0, 82.0, 83.0]
    clear = seed_bootstrap_tau([[70.0, 70.1], [72.0, 72.1], [74.0, 74.2]], paper)
    assert clear == {"tau_lo90": 1.0, "tau_hi90": 1.0}
    noisy = seed_bootstrap_tau([[70.0, 75.0], [72.0, 71.0], [74.0, 69.0]], paper)
    assert noisy["tau_lo90"] < 0 < noisy["tau_hi90"]
    assert seed_bootstrap_tau([[70.0], [71.0], [72.0]], paper)["tau_lo90"] is None
    assert not math.isnan(noisy["tau_hi90"])
