"""Parameter and multiply-accumulate counts measured with forward hooks on conv and linear layers.

Convention: MACs count one multiply-add per weight use (conv: output elements x in_channels/groups x kh x kw,
plus nothing for bias); GFLOPs = 2 x MACs / 1e9. Batch norm, activations, up-sampling and additions are
not counted (they are a few percent at most for these nets).
"""
from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs of one forward pass on a single ``(1, 3, height, width)`` input.

    Works on a model built under ``torch.device('meta')`` (shapes only: instant even for Hourglass-104).
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            device = next(model.parameters()).device
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def gflops(model: nn.Module, height: int, width: int) -> float:
    """2 x MACs / 1e9 for one ``height x width`` image."""
    return 2.0 * count_macs(model, height, width) / 1e9


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
