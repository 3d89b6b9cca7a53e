"""``gopose models init|info|export`` and the exported real-time network in onnxruntime."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.cli import main
from models.checkpoint import load_checkpoint


def test_init_info_export_round_trip(tmp_path, capsys):
    ckpt = tmp_path / "rt.pt"
    assert main(["models", "init", "--arch", "realtime", "--spec", "crowdpose", "--skeleton", "dense",
                 "--with-scale", "--set", "channels=48", "--out", str(ckpt)]) == 0
    model, info = load_checkpoint(ckpt)
    assert model.arch == "realtime" and model.contract.spec.name == "crowdpose"
    assert model.contract.skeleton_name == "dense" and model.config.kwargs["channels"] == 48
    capsys.readouterr()

    assert main(["models", "info", str(ckpt), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "gopose" and d["limbs"] == model.contract.n_limbs and d["parameters"] == model.n_parameters()

    assert main(["models", "info", str(ckpt)]) == 0
    assert "spec=crowdpose skeleton=dense" in capsys.readouterr().out

    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "rt.onnx"
    assert main(["models", "export", str(ckpt), "--onnx", str(onnx_path)]) == 0
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["heatmaps", "offsets", "scales"]
    model.eval()
    for shape in [(1, 3, 320, 320), (2, 3, 192, 256)]:  # dynamic batch and size
        x = torch.randn(*shape)
        got = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = model.infer(x)
        for arr, key in zip(got, ("heatmaps", "offsets", "scales")):
            np.testing.assert_allclose(arr, ref[key].numpy(), rtol=1e-3, atol=1e-4)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["models", "info", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["models", "init", "--arch", "realtime", "--skeleton", "nope", "--out", str(tmp_path / "a.pt")]) == 2
    assert "no skeleton 'nope'" in capsys.readouterr().err
    assert main(["models", "init", "--arch", "realtime", "--set", "bogus=1", "--out", str(tmp_path / "a.pt")]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "a.pt").exists()
    assert main(["models", "export", "default", "--size", "-32", "--onnx", str(tmp_path / "a.onnx")]) == 2
    assert "argument --size: must be at least 32, got -32" in capsys.readouterr().err


def test_bench_model_prints_json_last(capsys):
    assert main(["bench", "model", "--arch", "realtime", "--size", "64", "--runs", "2", "--warmup", "1",
                 "--precision", "fp32,bf16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["ms_median"] > 0 and [r["precision"] for r in result["rows"]] == ["fp32", "bf16"]
    assert result["params_m"] == pytest.approx(0.585, abs=1e-3)
    assert result["gflops"] == pytest.approx(0.807 * (64 / 320) ** 2, rel=1e-2)


@pytest.mark.parametrize("opset", [7, 99])
def test_an_onnx_opset_the_network_cannot_use_is_one_line(tmp_path, capsys, opset):
    """Opsets before 11 lack the up-sampling the networks use; torch stops at its newest: one line, no file."""
    out = tmp_path / "a.onnx"
    assert main(["models", "export", "default", "--onnx", str(out), "--opset", str(opset)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"opset {opset}" in err and "Traceback" not in err
    assert not out.exists()
