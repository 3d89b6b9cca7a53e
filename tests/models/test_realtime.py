"""Our real-time and mid-size networks: output contract, shapes, gradients, fusion-free determinism."""
from __future__ import annotations

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
