"""Network + encoder targets + PoseLoss: a few optimiser steps on one real-shaped sample reduce every term."""
from __future__ import annotations

import numpy as np
import torch

from core.encoder import TargetEncoder
from models.factory import build_model, make_config
from models.losses import PoseLoss


def test_realtime_net_fits_one_person():
    torch.manual_seed(0)
    model = build_model(make_config("realtime", with_scale=True)).train()
    size = 64
    rng = np.random.default_rng(0)
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, 0] = rng.uniform(15, 50, 17)
    person[0, :, 1] = np.linspace(8, 56, 17)
    person[0, :, 2] = 2
    targets = TargetEncoder(model.contract).encode(person, (size, size)).as_dict()
    batch = {k: torch.from_numpy(np.asarray(v))[None] for k, v in targets.items()}
    image = torch.randn(1, 3, size, size)
    loss_fn = PoseLoss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        total, terms = loss_fn(model(image), batch)
        first = first or {k: v.item() for k, v in terms.items()}
        opt.zero_grad()
        total.backward()
        opt.step()
    _, last = loss_fn(model(image), batch)
    assert last["total"].item() < 0.5 * first["total"]
    for term in ("heatmap", "offset", "scale"):
        assert last[term].item() < first[term], term
