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
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(out - eager.numpy()).max() < 1e-4
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, dynamic batch axis
    for batch in (2, 3):  # the file runs at any batch, equal to eager image by image
        xb = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            eager_b = trained(xb)
        out_b = session.run(None, {"input": xb.numpy()})[0]
        assert out_b.shape == (batch, 10) and np.abs(out_b - eager_b.numpy()).max() < 1e-4
    assert torch.allclose(torch.jit.load(str(ts_file))(x), eager, atol=1e-5)


def test_export_refuses_weights_of_another_network(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(archspace.build("efficientmod_xxs").state_dict(), weights)
    assert main(["export", "smt_t", "--weights", str(weights), "--torchscript", str(tmp_path / "m.ts")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit the network" in err and not (tmp_path / "m.ts").exists()
    assert main(["export", "smt_t"]) == 2 and "give --onnx FILE, --torchscript FILE" in capsys.readouterr().err


CODE_CHECK = """
import sys, torch
sys.path.insert(0, sys.argv[1])
module = __import__(sys.argv[2])
model = module.build().eval()
state = torch.load(sys.argv[3])
assert list(model.state_dict()) == list(state), "state_dict keys differ"
model.load_state_dict(state)
x = torch.load(sys.argv[4])
with torch.no_grad():
    torch.save(model(x), sys.argv[5])
heavy = sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("archspace", "pydantic", "yaml", "optuna", "numpy_archspace"))
print("imports:", heavy)
"""


@pytest.mark.parametrize("name", ["smt_t", "efficientmod_xxs", "hybrid_convnext"])
def test_code_export_reproduces_the_model_in_a_fresh_interpreter(tmp_path, name):
    import subprocess
    import sys

    if name == "hybrid_convnext":  # every block kind, both stems' worth of fields, an uneven MHMC split
        data = {"name": "hybrid_convnext", "num_classes": 10, "stages": [
            {"width": 24, "stack": {"strategy": "pattern", "pattern": ["convnext", "sam"]}, "sam": {"heads": 3, "split": "front"}},
            {"width": 40, "downsample": {"kernel_size": 2, "stride": 2},
             "stack": {"strategy": "alternate", "counts": {"effmod": 2, "msa": 1}}, "msa": {"flavor": "vit", "heads": 8}}]}
        spec = archspace.spec.io.spec_from_dict(data)
    else:
        spec = archspace.load_spec(name)
    torch.manual_seed(0)
    model = archspace.build(spec, num_classes=10).eval()
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = torch.randn(2, 3, 64, 64)
    torch.save(x, tmp_path / "x.pt")
    assert main(["export", name if name != "hybrid_convnext" else str(_write_spec(tmp_path, spec)), "--num-classes", "10",
                 "--code", str(tmp_path / "exported_net.py")]) == 0
    proc = subprocess.run([sys.executable, "-c", CODE_CHECK, str(tmp_path), "exported_net", str(tmp_path / "w.pt"),
                           str(tmp_path / "x.pt"), str(tmp_path / "y.pt")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.strip().endswith("imports: []")  # torch only
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), model(x), atol=1e-6, rtol=0)


def _write_spec(tmp_path, spec):
    path = tmp_path / "spec.yaml"
    path.write_text(archspace.dump_spec(spec))
    return path
