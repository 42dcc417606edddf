"""Device profiles and the latency model: parts timed in context, lookups, interpolation, resume, the CLI over them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archspace.measure.latency import LatencySettings
from archspace.measure.latency.model import (load_profile, measure_profile, part_key, predict_latency, predict_parts,
                                             spec_parts)
from archspace.search.space import load_space, sample_specs
from archspace.spec.io import load_spec, spec_hash

SPACE = {
    "name": "devtiny", "base": "smt_m_6p5m",
    "params": [{"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
               {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2},
               {"name": "width3", "path": "stages[2].width", "choices": [128, 192, 256]}],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "latency", "direction": "minimize"}],
    "evaluator": {"kind": "params"}, "measure": {"resolution": 32, "warmup": 1, "repeats": 3},
    "sampler": {"kind": "random"}, "budget": {"trials": 3}, "seed": 0,
}
SETTINGS = LatencySettings(resolution=32, warmup=1, repeats=3)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dev") / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def fitted(space_file, tmp_path_factory):
    specs = [(f"s{i}", s) for i, (_, s) in enumerate(sample_specs(load_space(space_file), 6, seed=0))]
    out = tmp_path_factory.mktemp("prof") / "dev.json"
    profile = measure_profile(specs, SETTINGS, out=out, minutes=2, networks=3)
    return specs, out, profile


def test_a_profile_covers_every_part_of_its_networks_and_reads_back(fitted):
    specs, out, profile = fitted
    keys = {part_key(p)[0] for _, s in specs for p in spec_parts(s, 32)}
    assert profile.complete and set(profile.entries) == keys and profile.parts_seen == len(keys)
    assert all(e.ms > 0 and e.cv >= 0 for e in profile.entries.values())
    assert {e.kind for e in profile.entries.values()} >= {"stem", "downsample", "sam", "msa", "head"}
    assert len(profile.networks) == 3 and all(n.measured_ms > 0 and n.parts_ms > 0 for n in profile.networks)
    c = profile.correction
    assert c.networks == 3 and 0.5 < c.scale < 1.5 and c.worst_fit_pct is not None
    back = load_profile(out)
    assert back.entries == profile.entries and back.protocol == SETTINGS
    assert back.identity["name"] and "cpu_flags" in back.identity and back.calibration is not None
    assert back.unit.startswith("ms calibrated to convnet112-v1=") and "32 px" in back.label()


def test_a_prediction_is_the_corrected_sum_of_table_entries(fitted):
    specs, _, profile = fitted
    spec = specs[1][1]
    parts = predict_parts(spec, profile)
    assert all(p["how"] == "table" for p in parts) and len(parts) == len(spec_parts(spec, 32))
    total = sum(profile.entries[part_key(p)[0]].ms for p in spec_parts(spec, 32))
    c = profile.correction
    assert predict_latency(spec, profile) == pytest.approx(c.scale * total + c.per_part_ms * len(parts) + c.offset_ms)
    assert predict_latency(spec, profile) == predict_latency(spec, profile)  # deterministic, nothing timed


def test_a_part_never_timed_is_interpolated_or_fitted(fitted):
    specs, _, profile = fitted
    spec = specs[0][1]
    part = next(p for p in spec_parts(spec, 32) if p.kind == "downsample" and p.module == "stages.3.downsample")
    key, family = part_key(part)
    others = [e for k, e in profile.entries.items() if e.family == family and k != key]
    trimmed = profile.model_copy(update={"entries": {k: e for k, e in profile.entries.items() if k != key}})
    trimmed._families = None
    ms, how = next((p["ms"], p["how"]) for p in predict_parts(spec, trimmed) if p["module"] == part.module)
    assert how == ("interpolated" if others else "fit") and ms > 0
    if len(others) >= 2:
        lo, hi = min(e.ms for e in others), max(e.ms for e in others)
        assert 0.1 * lo <= ms <= 3 * hi
    # a network of another space: whatever is not in the table comes from the kinds' fits, never an error
    other = load_spec("efficientmod_xxs")
    hows = {p["how"] for p in predict_parts(other, profile)}
    assert "fit" in hows and predict_latency(other, profile) > 0


def test_a_profile_resumes_and_refuses_other_settings(fitted, tmp_path):
    specs, out, profile = fitted
    copy = tmp_path / "dev.json"
    copy.write_text(out.read_text())
    again = measure_profile(specs, SETTINGS, out=copy, minutes=2, networks=3)
    assert again.entries == profile.entries and len(again.networks) == 3  # nothing timed twice
    with pytest.raises(ValueError, match=r"--out: .* other settings \(threads\)"):
        measure_profile(specs, SETTINGS.updated(threads=2), out=copy, minutes=1)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x00\xff not json")
    with pytest.raises(ValueError, match="is not a device profile"):
        load_profile(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_profile(tmp_path / "none.json")


def test_the_time_bound_leaves_a_usable_partial_profile(space_file, tmp_path):
    specs = [(f"s{i}", s) for i, (_, s) in enumerate(sample_specs(load_space(space_file), 4, seed=3))]
    partial = measure_profile(specs, SETTINGS, out=tmp_path / "p.json", minutes=1e-4, networks=0, chunk=4)
    assert not partial.complete and 0 < len(partial.entries) < partial.parts_seen
    assert all(predict_latency(s, partial) > 0 for _, s in specs)  # the rest is predicted from interpolation and fits


def test_device_measure_and_profile_commands(space_file, tmp_path):
    out = tmp_path / "cpu.json"
    cmd = [sys.executable, "-m", "archspace.cli"]
    proc = subprocess.run(cmd + ["device", "measure", "--out", str(out), "--space", str(space_file), "--minutes", "2",
                                 "--samples", "3", "--networks", "2", "--warmup", "1", "--repeats", "3", "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["complete"] and summary["entries"] == summary["parts_seen"] > 5 and summary["networks"] == 2
    prof = load_profile(out)
    assert prof.sources == [str(space_file)] and prof.protocol.resolution == 32
    proc = subprocess.run(cmd + ["profile", "smt_m_6p5m", "--device-profile", str(out), "--resolution", "32",
                                 "--warmup", "1", "--repeats", "5", "--format", "json", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["predicted_ms"] == pytest.approx(predict_latency("smt_m_6p5m", prof))
    assert got["predicted"]["unit"] == prof.unit
    assert got["latency"]["protocol"]["calibration"] == prof.calibration.model_dump()  # measured in the profile's unit
    (tmp_path / "afile").write_text("")
    for args, field in ((["--out", str(tmp_path / "afile" / "x.json")], "--out"), (["--out", str(tmp_path)], "--out"), (["--out", str(out), "--minutes", "0"], "--minutes"),
                        (["--out", str(tmp_path / "t.json"), "--threads", "0"], "--threads")):
        proc = subprocess.run(cmd + ["device", "measure", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and field in proc.stderr, proc.stderr
    proc = subprocess.run(cmd + ["profile", "smt_t", "--device-profile", str(tmp_path / "none.json"), "--no-latency"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--device-profile" in proc.stderr and proc.stderr.count("\n") == 1
    assert spec_hash(load_spec("smt_t"))  # the presets still load beside all this

