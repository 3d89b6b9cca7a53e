"""Our real-time and mid-size networks: output contract, shapes, gradients, fusion-free determinism."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from core.errors import InputError
from models.factory import ModelConfig, build_model, make_config


@pytest.mark.parametrize("arch", ["realtime", "midsize"])
@pytest.mark.parametrize("spec,skeleton,with_scale", [("coco", "default", False), ("crowdpose", "dense", True)])
def test_output_contract(arch, spec, skeleton, with_scale):
    model = build_model(make_config(arch, spec, skeleton, with_scale)).eval()
    c = model.contract
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, list) and len(out) == 1
    assert out[0]["heatmaps"].shape == (2, c.heatmap_channels, 16, 24)
    assert out[0]["offsets"].shape == (2, c.offset_channels, 16, 24)
    if with_scale:
        assert out[0]["scales"].shape == (2, c.n_keypoints, 16, 24)
    else:
        assert "scales" not in out[0]
    res = model.infer(x)
    assert torch.equal(res["heatmaps"], out[0]["heatmaps"]) and torch.equal(res["offsets"], out[0]["offsets"])
    assert (res["scales"] is None) != with_scale


def test_config_rebuilds_same_architecture():
    model = build_model(make_config("realtime", "coco", "redundant", channels=48))
    again = build_model(ModelConfig.from_dict(model.config.to_dict()))
    assert again.config == model.config and again.contract.n_limbs == 31
    shapes = [(k, v.shape) for k, v in model.state_dict().items()]
    assert [(k, v.shape) for k, v in again.state_dict().items()] == shapes


def test_backward_reaches_every_parameter():
    model = build_model(make_config("realtime", with_scale=True)).train()
    out = model(torch.randn(2, 3, 64, 64))
    loss = sum(v.square().mean() for v in out[0].values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_offset_gain_scales_raw_offsets_only():
    a = build_model(make_config("realtime", offset_gain=1.0)).eval()
    b = build_model(make_config("realtime", offset_gain=8.0)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ra, rb = a.infer(x), b.infer(x)
    torch.testing.assert_close(rb["offsets"], 8.0 * ra["offsets"])
    torch.testing.assert_close(rb["heatmaps"], ra["heatmaps"])
    assert b.config.kwargs["offset_gain"] == 8.0


def test_bad_inputs_are_named():
    model = build_model(make_config("realtime"))
    with pytest.raises(InputError, match="multiples of 32"):
        model(torch.zeros(1, 3, 100, 96))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        model(torch.zeros(1, 1, 96, 96))
    with pytest.raises(InputError, match="unknown architecture"):
        build_model(make_config("realtime").__class__("resnet", model.contract, {}))
    with pytest.raises(InputError, match="unexpected keyword"):
        build_model(make_config("realtime", width=3))
    with pytest.raises(InputError, match="uint8"):
        model.preprocess(np.zeros((64, 64, 3), np.float32))


@pytest.mark.parametrize("arch,option,value,message", [
    ("mobilenet", "alpha", -1, "alpha must be a number > 0, got -1"),       # before: "alpha must be >= 1"
    ("mobilenet", "alpha", -0.5, "alpha must be a number > 0, got -0.5"),   # before: accepted
    ("realtime", "offset_gain", 0, "offset_gain must be a number > 0, got 0"),
    ("realtime", "channels", 64.0, "channels must be an integer >= 1, got 64.0"),  # before: torch's empty() error
    ("realtime", "expand", "4", "expand must be an integer >= 1, got '4'"),
    ("realtime", "widths", [24, 48.5, 96, 128], "widths must be a list of integers >= 1"),
    ("mobilenet", "refine", 2.0, "refine must be an integer >= 1, got 2.0"),
])
def test_options_of_the_wrong_kind_are_refused_naming_the_option(arch, option, value, message):
    """Options are checked against the kind of their default: counts are integers >= 1 (a float would reach torch
    as a channel count), multipliers are numbers > 0 (alpha 0.5 is the default, so never "alpha must be >= 1").
    An ``InputError``, so ``gopose train`` with such ``model.kwargs`` prints one line, not a traceback."""
    with pytest.raises(InputError, match=re.escape(message)):
        build_model(make_config(arch, **{option: value}))


def test_options_the_constructor_refuses_are_input_errors():
    with pytest.raises(InputError, match="widths and depths need 4 entries"):
        build_model(make_config("realtime", depths=[1, 1, 1]))


def test_options_of_the_right_kind_build():
    assert build_model(make_config("mobilenet", alpha=1, offset_gain=2)).config.kwargs["alpha"] == 1
    assert build_model(make_config("realtime", widths=(16, 24, 32, 48), offset_gain=4)).encoder is not None


def test_preprocess_matches_batched_normalize():
    model = build_model(make_config("realtime"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    batch = model.normalize(torch.from_numpy(images))
    single = model.preprocess(images[1])
    torch.testing.assert_close(batch[1], single)
    rgb = images[1][..., ::-1].astype(np.float32) / 255.0
    expected = (rgb - np.array(model.mean)) / np.array(model.std)
    np.testing.assert_allclose(single.permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_damaged_backbone_file_is_an_input_error(tmp_path):
    """A backbone ``.npz`` whose bytes fail a member's CRC (a damaged copy or download) is one ``InputError``
    naming the file and the member (before: zipfile.BadZipFile from deep inside numpy, a traceback)."""
    import zipfile

    from eval.shared_data import shared_data_dir
    from models.mobilenet import MobileNetV1

    src = shared_data_dir() / "backbones" / "mobilenet_v1_0.25.npz"
    assert MobileNetV1(0.25).load_npz(src) == 54
    member = next(i for i in zipfile.ZipFile(src).infolist() if i.filename == "pw13.weight.npy")
    data = bytearray(src.read_bytes())
    data[member.header_offset + 200] ^= 0xFF  # inside the array's bytes
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=re.escape(f"backbone weights {bad}") + ".*pw13.weight"):
        MobileNetV1(0.25).load_npz(bad)
