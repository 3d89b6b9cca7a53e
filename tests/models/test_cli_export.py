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


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "rt.pt"
    assert main(["models", "init", "--arch", "realtime", "--set", "channels=16", "--out", str(path)]) == 0
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.filterwarnings("error")  # refused before torch builds (and warns about) zero-channel layers
@pytest.mark.parametrize("value", ["channels=0", "channels=-3", "widths=[24,48]", "depths=[2,0,4,2]"])
def test_init_with_options_the_network_refuses_is_one_line(value, tmp_path, capsys):
    """Values the network's constructor refuses (ValueError, RuntimeError) name the option (before: a traceback)."""
    out = tmp_path / "a.pt"
    assert main(["models", "init", "--arch", "realtime", "--set", value, "--out", str(out)]) == 2
    assert f"architecture 'realtime' with --set {value}:" in _one_line(capsys)
    assert not out.exists()


def test_package_never_replaces_the_checkpoint_it_packages(small_checkpoint, tmp_path, capsys):
    """--out the input file itself would replace the trained checkpoint (optimizer state, float32 weights)."""
    before = small_checkpoint.read_bytes()
    assert main(["models", "package", str(small_checkpoint), "--out", str(small_checkpoint)]) == 2
    assert "is the checkpoint being packaged" in _one_line(capsys)
    assert small_checkpoint.read_bytes() == before
    assert main(["models", "package", str(small_checkpoint), "--out", str(tmp_path / "p.pt"), "--long-edge", "0"]) == 2
    assert "argument --long-edge: must be at least 32, got 0" in _one_line(capsys)


def test_int8_force_with_unusable_calibration_keeps_the_cached_model(small_checkpoint, tmp_path, capsys):
    """``--int8 --force`` looks for its calibration images before it discards the cached INT8 model: a bad
    --calibration leaves the model the backends use in place (before: deleted, then the rebuild failed)."""
    from models.backends import INT8_FOLDER, missing_modules
    from models.backends.int8 import ARTEFACT, META, Int8Store
    from models.precision import InferenceModel

    if missing_modules("onnx-int8"):
        pytest.skip("the onnx-int8 backend is not installed")
    model, _ = load_checkpoint(small_checkpoint)
    entry = Int8Store(tmp_path / "cache" / INT8_FOLDER).entry(InferenceModel(model, "cpu", "fp32").model, 64)
    entry.mkdir(parents=True)
    (entry / ARTEFACT).write_bytes(b"the cached INT8 model")
    (entry / META).write_text("{}")
    base = ["models", "export", str(small_checkpoint), "--int8", "--size", "64", "--cache", str(tmp_path / "cache")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--force", "--calibration", str(tmp_path / "missing")]) == 2
    assert f"calibration image folder {tmp_path / 'missing'} does not exist" in _one_line(capsys)
    assert (entry / ARTEFACT).read_bytes() == b"the cached INT8 model" and (entry / META).exists()
    assert main([*base, "--force", "--calibration", str(empty)]) == 2
    assert f"calibration image folder {empty} holds no images" in _one_line(capsys)
    assert (entry / ARTEFACT).read_bytes() == b"the cached INT8 model" and (entry / META).exists()
    assert main([*base, "--calibration-images", "0"]) == 2
    assert "argument --calibration-images: must be at least 1, got 0" in _one_line(capsys)


def test_int8_with_only_undecodable_calibration_images_is_one_line(small_checkpoint, tmp_path, capsys):
    """Files named like images that do not decode are left out; when none is left the build stops with one line
    naming one (before: NNCF's 'Calibration dataset must not be empty' traceback, exit 1). With --force the cached
    model stays in place."""
    from models.backends import INT8_FOLDER, missing_modules
    from models.backends.int8 import ARTEFACT, META, Int8Store
    from models.precision import InferenceModel

    if missing_modules("onnx-int8"):
        pytest.skip("the onnx-int8 backend is not installed")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.jpg", "b.png"):
        (bad / name).write_text("not an image")
    base = ["models", "export", str(small_checkpoint), "--int8", "--size", "64", "--cache", str(tmp_path / "cache"),
            "--calibration", str(bad)]
    assert main(base) == 2
    err = _one_line(capsys)
    assert "none of the 2 calibration images can be decoded" in err and str(bad / "a.jpg") in err
    model, _ = load_checkpoint(small_checkpoint)
    entry = Int8Store(tmp_path / "cache" / INT8_FOLDER).entry(InferenceModel(model, "cpu", "fp32").model, 64)
    assert not entry.exists()  # refused before the build starts
    entry.mkdir(parents=True)
    (entry / ARTEFACT).write_bytes(b"the cached INT8 model")
    (entry / META).write_text("{}")
    assert main([*base, "--force"]) == 2
    assert "none of the 2 calibration images can be decoded" in _one_line(capsys)
    assert (entry / ARTEFACT).read_bytes() == b"the cached INT8 model" and (entry / META).exists()


def test_int8_calibration_on_a_file_says_a_folder_is_needed(small_checkpoint, tmp_path, capsys, data_dir):
    """--calibration takes folders of images: a video file is named as not a folder (before: 'does not exist')."""
    pytest.importorskip("nncf")
    video = data_dir / "videos" / "street_5frames_960x540.mp4"
    assert main(["models", "export", str(small_checkpoint), "--int8", "--size", "64", "--cache",
                 str(tmp_path / "cache"), "--calibration", str(video)]) == 2
    err = _one_line(capsys)
    assert f"calibration image folder {video} is a file, not a folder" in err and "does not exist" not in err


def test_static_export_reports_and_writes_its_fixed_shape(small_checkpoint, tmp_path, capsys):
    """--static writes a fixed (1, 3, S, S) input, and says so (before: it printed the dynamic (N, 3, H, W))."""
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "s.onnx"
    assert main(["models", "export", str(small_checkpoint), "--onnx", str(out), "--static", "--size", "64"]) == 0
    assert "input image (1, 3, 64, 64) normalised float32" in capsys.readouterr().out
    dims = [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]
