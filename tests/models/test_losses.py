"""Losses against hand-computed values, gradient checks and the empty-batch case."""
from __future__ import annotations

import math
import re

import pytest
import torch

from core.errors import InputError
from models.losses import LossConfig, PoseLoss, focal_l2, heatmap_loss, offset_loss, scale_loss


def _targets(n=1, k=1, limbs=1, h=1, w=2, dtype=torch.float64):
    return {
        "heatmaps": torch.zeros(n, k, h, w, dtype=dtype),
        "offsets": torch.zeros(n, 2 * limbs, h, w, dtype=dtype),
        "offset_mask": torch.zeros(n, limbs, h, w, dtype=torch.bool),
        "person_scale": torch.zeros(n, limbs, h, w, dtype=dtype),
        "keypoint_scale": torch.zeros(n, k, h, w, dtype=dtype),
        "keypoint_scale_mask": torch.zeros(n, k, h, w, dtype=torch.bool),
        "ignore": torch.zeros(n, h, w, dtype=torch.bool),
    }


def test_focal_l2_by_hand():
    p = torch.tensor([0.8, 0.3, 0.005])
    t = torch.tensor([1.0, 0.0, 0.009])
    # foreground (t >= tau): 0.5 * 0.2^2 * (1-0.8)^2; background: 0.5 * 0.3^2 * (1-(1-0.3))^2
    expected = [0.5 * 0.04 * 0.04, 0.5 * 0.09 * 0.09, 0.5 * 0.004 ** 2 * 0.005 ** 2]
    torch.testing.assert_close(focal_l2(p, t, tau=0.01, gamma=2.0), torch.tensor(expected))
    # gamma = 0 is plain (half) L2
    torch.testing.assert_close(focal_l2(p, t, 0.01, 0.0), 0.5 * (p - t) ** 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_focal_l2_gradient_is_finite_where_the_prediction_is_exact(dtype):
    """With 0 < gamma < 1, ``|1 - q|^gamma`` has an infinite derivative where ``q == 1``: a heatmap peak that rounds
    to exactly 1.0 under fp16/bf16 autocast, or a background cell at exactly 0. Before, its gradient was NaN (and
    NaN reached every other cell of an ignored region through ``torch.where``); now it is the limit, 0."""
    peak = torch.tensor(0.99995).to(dtype).float()
    assert peak.item() == 1.0  # what autocast hands the loss
    pred = torch.stack([peak, torch.tensor(0.0), torch.tensor(0.3)]).view(1, 1, 1, 3).requires_grad_()
    target = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)
    for gamma in (0.5, 2.0):
        for ignore in (torch.zeros(1, 1, 3, dtype=torch.bool), torch.tensor([[[True, True, False]]])):
            pred.grad = None
            loss = heatmap_loss(pred, target, ignore, gamma=gamma)
            loss.backward()
            assert torch.isfinite(pred.grad).all(), (gamma, pred.grad)
            assert pred.grad[0, 0, 0, :2].tolist() == [0.0, 0.0]
            assert loss.item() == pytest.approx(0.5 * 0.09 * 0.3 ** gamma)


def test_heatmap_loss_skips_ignored_cells():
    pred = torch.tensor([[[[0.8, 0.3]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    ignore = torch.tensor([[[False, True]]])
    assert heatmap_loss(pred, target, ignore).item() == pytest.approx(0.5 * 0.04 * 0.04)
    assert heatmap_loss(pred, target, ~ignore).item() == pytest.approx(0.5 * 0.09 * 0.09)


def test_offset_loss_by_hand():
    t = _targets()
    pred = torch.tensor([[[[10.0, 7.0]], [[-4.0, 3.0]]]], dtype=torch.float64)  # channels x, y of limb 0
    t["offsets"][0, 0, 0, 0], t["offsets"][0, 1, 0, 0] = 12.0, -4.0
    t["offset_mask"][0, 0, 0, 0] = True  # only the first cell has a target
    t["person_scale"][0, 0, 0, 0] = 4.0
    # x error |10/4 - 12/4| = 0.5 -> sqrt 0.7071; y error 0 is under the margin -> dropped; mean over 1 + 1
    got = offset_loss(pred, t["offsets"], t["offset_mask"], t["person_scale"], t["ignore"])
    assert got.item() == pytest.approx(math.sqrt(0.5) / 2)
    # without the square-root rescale
    got = offset_loss(pred, t["offsets"], t["offset_mask"], t["person_scale"], t["ignore"], sqrt_re=False)
    assert got.item() == pytest.approx(0.5 / 2)
    # an ignored cell contributes nothing
    t["ignore"][0, 0, 0] = True
    assert offset_loss(pred, t["offsets"], t["offset_mask"], t["person_scale"], t["ignore"]).item() == 0.0


def test_scale_loss_by_hand():
    pred = torch.tensor([[[[3.0, 1.0]]]])
    target = torch.tensor([[[[2.0, 1.05]]]])
    mask = torch.tensor([[[[True, True]]]])
    ignore = torch.zeros(1, 1, 2, dtype=torch.bool)
    # errors 1.0 and 0.05; 0.05 < margin 0.1 is dropped: sqrt(1) / (1 + 1)
    assert scale_loss(pred, target, mask, ignore).item() == pytest.approx(0.5)
    assert scale_loss(pred, target, ~mask, ignore).item() == 0.0


def test_pose_loss_combines_tasks_stacks_and_batch():
    t = _targets(n=2)
    t["heatmaps"][0, 0, 0, 0] = 1.0
    t["offsets"][0, 0, 0, 0] = 12.0
    t["offset_mask"][0, 0, 0, 0] = True
    t["person_scale"][0, 0, 0, 0] = 4.0
    t["keypoint_scale"][0, 0, 0, 0] = 2.0
    t["keypoint_scale_mask"][0, 0, 0, 0] = True

    def stack(h, o, s):
        return {"heatmaps": torch.full((2, 1, 1, 2), h, dtype=torch.float64),
                "offsets": torch.full((2, 2, 1, 2), o, dtype=torch.float64),
                "scales": torch.full((2, 1, 1, 2), s, dtype=torch.float64)}

    outputs = [stack(0.5, 10.0, 3.0), stack(0.8, 12.0, 2.0)]
    loss = PoseLoss(LossConfig(stack_weights=(1.0, 3.0)))
    total, terms = loss(outputs, t)
    # stack 0: heatmap cells: fg 0.5*.25*.25, three bg cells 0.5*.25*.25 each -> 4 * 0.0078125
    #   offsets: only (img 0, cell 0): x err |10-12|/4 = .5 -> sqrt; y err |10-0|/4 = 2.5 -> sqrt; / (1 + 2)
    #   scales: |3-2| = 1 -> 1 / 2
    h0, o0, s0 = 4 * 0.5 * 0.25 * 0.25, (math.sqrt(0.5) + math.sqrt(2.5)) / 3, 0.5
    # stack 1: fg 0.5*.04*.04; bg 3 cells 0.5*.64*.64; offsets x exact (dropped), y |12|/4=3 -> sqrt(3)/2; scale 0
    h1, o1, s1 = 0.5 * 0.04 * 0.04 + 3 * 0.5 * 0.64 * 0.64, math.sqrt(3.0) / 2, 0.0
    hmp = (0.25 * h0 + 0.75 * h1) / 2
    off = (0.25 * o0 + 0.75 * o1) / 2
    scl = (0.25 * s0 + 0.75 * s1) / 2
    assert terms["heatmap"].item() == pytest.approx(hmp)
    assert terms["offset"].item() == pytest.approx(off)
    assert terms["scale"].item() == pytest.approx(scl)
    assert total.item() == pytest.approx(hmp + 10000 * off + 10 * scl)


def test_gradcheck():
    torch.manual_seed(0)
    n, k, limbs, h, w = 2, 2, 2, 3, 4
    t = _targets(n, k, limbs, h, w)
    t["heatmaps"] = torch.rand(n, k, h, w, dtype=torch.float64)
    t["offsets"] = torch.randn(n, 2 * limbs, h, w, dtype=torch.float64) * 10
    t["offset_mask"] = torch.rand(n, limbs, h, w) > 0.4
    t["person_scale"] = torch.rand(n, limbs, h, w, dtype=torch.float64) * 50 + 5
    t["keypoint_scale"] = torch.rand(n, k, h, w, dtype=torch.float64) * 8
    t["keypoint_scale_mask"] = torch.rand(n, k, h, w) > 0.4
    t["ignore"] = torch.rand(n, h, w) > 0.8
    loss = PoseLoss(LossConfig(offset_weight=1.0))

    def fn(hm, off, sc):
        return loss([{"heatmaps": hm, "offsets": off, "scales": sc}], t)[0]

    inputs = (torch.rand(n, k, h, w, dtype=torch.float64, requires_grad=True),
              (torch.randn(n, 2 * limbs, h, w, dtype=torch.float64) * 10).requires_grad_(),
              (torch.rand(n, k, h, w, dtype=torch.float64) * 8).requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_batch_without_people_has_no_nan():
    t = _targets(n=2, k=17, limbs=19, h=8, w=8, dtype=torch.float32)
    outputs = [{"heatmaps": torch.randn(2, 17, 8, 8, requires_grad=True),
                "offsets": torch.randn(2, 38, 8, 8, requires_grad=True),
                "scales": torch.randn(2, 17, 8, 8, requires_grad=True)} for _ in range(2)]
    total, terms = PoseLoss()(outputs, t)
    assert torch.isfinite(total) and terms["offset"].item() == 0.0 and terms["scale"].item() == 0.0
    total.backward()
    for out in outputs:
        for v in out.values():
            assert torch.isfinite(v.grad).all()
    assert outputs[0]["offsets"].grad.abs().sum() == 0


def test_stack_weights_must_match_network():
    t = _targets()
    outs = [{"heatmaps": torch.zeros(1, 1, 1, 2, dtype=torch.float64),
             "offsets": torch.zeros(1, 2, 1, 2, dtype=torch.float64)}]
    with pytest.raises(ValueError, match="2 weights for a network with 1 stack"):
        PoseLoss(LossConfig(stack_weights=(1.0, 1.0)))(outs, t)


@pytest.mark.parametrize("weights,message", [
    ((1.0, 1.0, 1.0, 1.0), "loss stack_weights: 4 weights for a network with 1 stack"),  # the authors' default
    ((0.0, 0.0), "loss stack_weights must sum to a positive number"),
    ((2.0, -1.0), "loss stack_weights must be numbers >= 0"),
])
def test_bad_stack_weights_are_input_errors(weights, message):
    """Stack weights come from the user's training config: a bad one is an ``InputError`` (one line from the CLI,
    before: a ValueError traceback at the first training step); sum and sign are refused when the config is made."""
    t = _targets()
    outs = [{"heatmaps": torch.zeros(1, 1, 1, 2, dtype=torch.float64),
             "offsets": torch.zeros(1, 2, 1, 2, dtype=torch.float64)}]
    with pytest.raises(InputError, match=re.escape(message)):
        PoseLoss(LossConfig(stack_weights=weights))(outs, t)
    if len(weights) == 2:
        with pytest.raises(InputError, match=re.escape(message)):
            LossConfig(stack_weights=weights)


def test_half_precision_outputs_are_summed_in_float32():
    t = _targets(n=1, k=17, limbs=19, h=128, w=128, dtype=torch.float32)
    outputs = [{"heatmaps": torch.full((1, 17, 128, 128), 1.0, dtype=torch.bfloat16),
                "offsets": torch.zeros(1, 38, 128, 128, dtype=torch.bfloat16)}]
    total, terms = PoseLoss()(outputs, t)
    # every cell is background with p = 1: 0.5 * 1 * 1 per cell, 17*128*128 cells (exceeds fp16 range)
    assert total.dtype == torch.float32 and terms["heatmap"].item() == pytest.approx(0.5 * 17 * 128 * 128)
