"""The moving average of the weights: its update rule, warm-up, integer buffers and save/restore."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from train.ema import WeightAverage


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def _perturb(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
        net[1].num_batches_tracked += 3


def test_update_moves_the_average_by_one_minus_decay_and_copies_integer_buffers():
    net = _net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    avg = WeightAverage(net, decay=0.9)
    _perturb(net, 1.0)
    avg.update(net)
    w = avg.weights
    torch.testing.assert_close(w["0.weight"], 0.9 * start["0.weight"] + 0.1)
    torch.testing.assert_close(w["1.bias"], 0.9 * start["1.bias"] + 0.1)
    assert int(w["1.num_batches_tracked"]) == 3
    assert avg.updates == 1
    assert not torch.equal(w["0.weight"], net.state_dict()["0.weight"])  # the average is a copy, not the model


def test_the_average_converges_to_weights_that_stop_changing():
    net = _net()
    avg = WeightAverage(net, decay=0.5)
    _perturb(net, 2.0)
    for _ in range(40):
        avg.update(net)
    torch.testing.assert_close(avg.weights["0.weight"], torch.full_like(avg.weights["0.weight"], 2.0))


def test_warm_up_ramps_the_decay():
    avg = WeightAverage(_net(), decay=0.99, warmup_steps=10)
    assert avg.current_decay() == pytest.approx(0.99 * (1 - math.exp(-0.1)))
    avg.updates = 1000
    assert avg.current_decay() == pytest.approx(0.99)
    assert WeightAverage(_net(), decay=0.99).current_decay() == 0.99


def test_state_round_trip_and_a_mismatched_state_names_the_key():
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    _perturb(net, 1.0)
    avg.update(net)
    again = WeightAverage(_net(), decay=0.9)
    again.load_state_dict(avg.state_dict())
    assert again.updates == 1
    assert all(torch.equal(again.weights[k], avg.weights[k]) for k in avg.weights)
    with pytest.raises(KeyError, match=r"lacks 0\.bias"):
        again.load_state_dict({"updates": 1, "weights": {"1.bias": torch.zeros(4)}})
