"""The authors' Hourglass-104: exact state-dict layout and reference outputs for deterministic weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InputError
from models.factory import build_model, make_config

RTOL, ATOL = 1e-4, 1e-5


def _layout(model: torch.nn.Module) -> list:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def test_layout_matches_authors_checkpoint(hourglass, hg_layout):
    assert len(hg_layout["hmp_omp"]) == 968
    assert _layout(hourglass) == hg_layout["hmp_omp"]
    assert sum(p.numel() for p in hourglass.parameters()) == pytest.approx(187.8e6, rel=1e-3)


def test_layout_with_scale_head(hg_layout):
    with torch.device("meta"):  # shapes only, no memory or init time
        model = build_model(make_config("hourglass104", with_scale=True))
    assert len(hg_layout["hmp_omp_scale"]) == 972
    assert _layout(model) == hg_layout["hmp_omp_scale"]


def test_reference_outputs(hourglass, hg_input, hg_reference):
    with torch.no_grad():
        out = hourglass(hg_input)
    assert len(out) == 2 and set(out[0]) == {"heatmaps", "offsets"}
    for i in range(2):
        np.testing.assert_allclose(out[i]["heatmaps"].numpy(), hg_reference[f"hmp_stack{i}"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(out[i]["offsets"].numpy(), hg_reference[f"omp_stack{i}"], rtol=RTOL, atol=ATOL)


def test_reference_outputs_catch_a_wrong_weight(hourglass, hg_input, hg_reference):
    """The comparison is sharp: one perturbed BN statistic deep inside changes the outputs beyond tolerance."""
    mean = hourglass.basenet.kps[1].low2.low2.low2.low2.low2[0].bn1.running_mean
    try:
        mean += 0.5
        with torch.no_grad():
            out = hourglass(hg_input)
    finally:
        mean -= 0.5
    assert not np.allclose(out[1]["heatmaps"].numpy(), hg_reference["hmp_stack1"], rtol=RTOL, atol=ATOL)


def test_infer_returns_final_stack_in_input_pixels(hourglass, hg_input, hg_reference):
    with torch.no_grad():
        res = hourglass.infer(hg_input)
    assert hourglass.offset_scale == 1.0  # the authors' offsets are in input pixels
    np.testing.assert_allclose(res["offsets"].numpy(), hg_reference["omp_stack1"], rtol=RTOL, atol=ATOL)
    assert res["scales"] is None


def test_preprocess_uses_authors_normalisation(hourglass):
    image = np.zeros((128, 128, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    x = hourglass.preprocess(image)
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)


def test_input_size_must_be_multiple_of_128(hourglass):
    assert hourglass.input_multiple == 128
    with pytest.raises(InputError, match="multiples of 128"):
        hourglass(torch.zeros(1, 3, 96, 128))
