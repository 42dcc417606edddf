"""CLI: validate, build, presets; one-line errors with exit code 2 (in-process and as a real subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import archspace
from archspace.cli import main


def test_presets_json(capsys):
    assert main(["presets", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(archspace.preset_names())
    assert by_name["smt_t"]["params"] == 11_506_536
    assert by_name["efficientmod_s"]["params"] == 12_897_184
    assert "6.5M" in by_name["smt_m_6p5m"]["about"] and "as printed" in by_name["smt_m"]["about"]


def test_build_json_has_params_and_stage_kinds(capsys):
    assert main(["build", "smt_t", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 11_506_536
    assert [s["counts"] for s in d["stages"]] == [{"sam": 2}, {"sam": 2}, {"sam": 4, "msa": 4}, {"msa": 1}]
    assert d["stages"][2]["kinds"] == ["sam", "msa"] * 4


def test_build_table_and_yaml(capsys, tmp_path):
    assert main(["build", "efficientmod_xxs"]) == 0
    out = capsys.readouterr().out
    assert "4,736,264 params" in out and "EEEEEEV" in out
    assert main(["build", "smt_t", "--format", "yaml"]) == 0
    path = tmp_path / "smt_t_expanded.yaml"
    path.write_text(capsys.readouterr().out)
    assert archspace.load_spec(str(path)) == archspace.load_spec("smt_t")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}: 11,506,536 params")


def test_validate_bad_spec_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(archspace.spec.io.preset_path("smt_t").read_text().replace("sam: {heads: 4, mlp_ratio: 4}\n    msa", "sam: {heads: 6, mlp_ratio: 4}\n    msa"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"archspace: error: {bad}: stages[2].blocks[0].heads: 6 does not divide width 256 (use split: front)\n"


@pytest.mark.parametrize("argv, fragment", [
    (["validate", "nope.yaml"], "nope.yaml: no such file"),
    (["build", "smt_q"], "smt_q: neither a file nor a preset"),
    (["build", "smt_t", "--format", "xml"], "invalid choice: 'xml'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["convert", "x.pth", "--spec", "smt_t"], "the following arguments are required: --out"),
])
def test_usage_errors(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_subprocess(tmp_path):
    bad = tmp_path / "tags.yaml"
    bad.write_text("!!python/object/apply:os.system ['echo owned']\n")
    proc = subprocess.run([sys.executable, "-m", "archspace.cli", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "malformed YAML" in proc.stderr


def test_evaluate_zero_cost_and_training(capsys):
    assert main(["evaluate", "smt_m_6p5m", "--evaluator", "naswot", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["proxy"] == "naswot" and d["score"] > 0 and d["batch_size"] == 64 and d["resolution"] == 32
    assert main(["evaluate", "smt_m_6p5m", "--epochs", "1", "--train-subset", "100", "--quiet", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "ok" and d["dataset"] == "fashion-mnist" and d["train_size"] == 100 and 0.0 <= d["top1"] <= 1.0


def test_evaluate_errors(capsys, tmp_path):
    assert main(["evaluate", "smt_t", "--evaluator", "foo"]) == 2
    assert "argument --evaluator: invalid choice: 'foo'" in capsys.readouterr().err
    assert main(["evaluate", "smt_t", "--dataset", "cifar10", "--dataset-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err


def test_profile_json_has_params_flops_latency(capsys):
    assert main(["profile", "smt_m_6p5m", "efficientmod_xxs", "--repeats", "2", "--warmup", "0", "--resolution", "64",
                 "--format", "json", "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"smt_m_6p5m", "efficientmod_xxs"}
    from archspace.measure.complexity import complexity
    for name, rec in d.items():
        assert rec["params"] == complexity(name)["params"]
        assert rec["flops"] == {k: complexity(name, 64)[k] for k in ("smt-paper", "fvcore", "full")}
        lat = rec["latency"]
        assert lat["protocol"]["batch"] == 1 and lat["protocol"]["threads"] == 1 and lat["protocol"]["resolution"] == 64
        assert lat["median_ms"] > 0 and lat["protocol"]["repeats"] == 2


def test_profile_cuda_without_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        return
    assert main(["profile", "smt_t", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_profile_calibration_file_is_written_once_and_shared(tmp_path, capsys):
    cal_file = tmp_path / "cal.json"
    args = ["profile", "efficientmod_xxs", "--repeats", "2", "--warmup", "0", "--resolution", "32", "--format", "json",
            "--quiet", "--calibration", str(cal_file)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)["latency"]
    saved = json.loads(cal_file.read_text())
    assert first["protocol"]["calibration"] == saved and saved["reference"] == "convnet112-v1"
    assert first["raw_median_ms"] > 0 and first["machine_speed"] > 0
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)["latency"]
    assert second["protocol"] == first["protocol"]  # same unit: the two runs compare
    assert main([*args, "--threads", "2"]) == 2
    assert "--calibration:" in capsys.readouterr().err and json.loads(cal_file.read_text()) == saved
    assert main(["profile", "efficientmod_xxs", "--repeats", "2", "--warmup", "0", "--resolution", "32", "--format",
                 "json", "--quiet", "--no-calibrate"]) == 0
    assert json.loads(capsys.readouterr().out)["latency"]["protocol"]["calibration"] is None


def test_profile_onnx_runtime(capsys):
    import importlib.util

    import pytest
    if any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "onnxscript")):
        pytest.skip("needs the onnx extra")
    assert main(["profile", "efficientmod_xxs", "--runtime", "onnxrt", "--repeats", "2", "--warmup", "1",
                 "--resolution", "64", "--format", "json", "--quiet", "--no-calibrate"]) == 0
    lat = json.loads(capsys.readouterr().out)["latency"]
    assert lat["protocol"]["runtime"] == "onnxrt-cpu" and lat["median_ms"] > 0


def test_version_schema_and_choices(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"archspace {archspace.__version__}"
    assert main(["schema", "spec"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"SAMSpec", "EffModSpec", "MSASpec", "ConvNeXtSpec"} <= set(schema["$defs"])
    assert main(["schema", "space"]) == 0 and "objectives" in json.loads(capsys.readouterr().out)["properties"]
    preset = str(Path(archspace.__file__).parent / "presets" / "smt_t.yaml")
    assert main(["validate", preset, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 11_506_536
    assert main(["evaluate", "smt_t", "--evaluator", "accuracy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'accuracy'" in err


def test_internal_errors_keep_their_traceback(monkeypatch, capsys):
    """A bug (a ValueError raised inside numpy, not an archspace refusal) is exit 1 with the traceback, not a user error."""
    import numpy as np

    import archspace.cli as cli
    import archspace.cli.specs as commands

    monkeypatch.setattr(commands, "cmd_presets", lambda args: np.zeros(2).reshape(3))
    with pytest.raises(ValueError, match="cannot reshape"):
        cli.main(["presets"])
    assert main(["build", "no_such_preset"]) == 2  # archspace's own refusal stays one line
    assert capsys.readouterr().err.count("\n") == 1


def test_profile_by_module_adds_up_to_the_counted_total(capsys):
    assert main(["profile", "efficientmod_xxs", "--by-module", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["efficientmod_xxs"]
    assert rows[0]["module"] == "stem" and rows[-1]["module"] == "head"
    model = archspace.build("efficientmod_xxs")
    assert [r["kind"] for r in rows if r["module"].startswith("stages.3.blocks")] == ["effmod", "effmod", "vit", "vit"]
    from archspace.measure import count_flops

    counted = count_flops(model, (1, 3, 224, 224), ("smt-paper",))["smt-paper"]
    assert sum(r["smt-paper"] for r in rows) == counted
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in model.parameters())
    block = next(r for r in rows if r["module"] == "stages.2.blocks.0")
    assert block["params"] == sum(p.numel() for p in model.stages[2].blocks[0].parameters())
