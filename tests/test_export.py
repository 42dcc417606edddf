"""archspace export: ONNX (checked in ONNX Runtime) and TorchScript files that reproduce the eager logits, weights carried."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archspace
from archspace.cli import main


def test_export_onnx_and_torchscript_with_weights(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export check needs the onnx extra")
    torch.manual_seed(0)
    trained = archspace.build("smt_m_6p5m", num_classes=10)
    for p in trained.parameters():  # weights unlike a fresh build's, so a lost --weights would show
        p.data.add_(0.01 * torch.randn_like(p))
    weights = tmp_path / "w.pt"
    torch.save({"model": trained.state_dict()}, weights)
    onnx_file, ts_file = tmp_path / "m.onnx", tmp_path / "m.ts"
    assert main(["export", "smt_m_6p5m", "--weights", str(weights), "--num-classes", "10", "--onnx", str(onnx_file),
                 "--torchscript", str(ts_file), "--resolution", "64", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["format"] for r in report] == ["onnx", "torchscript"] and all(r["max_abs_diff"] < 1e-4 for r in report)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        eager = trained.eval()(x)
    out = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert np.abs(out - eager.numpy()).max() < 1e-4
    assert torch.allclose(torch.jit.load(str(ts_file))(x), eager, atol=1e-5)


def test_export_refuses_weights_of_another_network(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(archspace.build("efficientmod_xxs").state_dict(), weights)
    assert main(["export", "smt_t", "--weights", str(weights), "--torchscript", str(tmp_path / "m.ts")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit the network" in err and not (tmp_path / "m.ts").exists()
    assert main(["export", "smt_t"]) == 2 and "give --onnx FILE" in capsys.readouterr().err
