"""Output heads: one 1x1 convolution per stack per head (the authors' layout).

``headnets[0].hp_convs[i]`` -> keypoint heatmaps of stack i; ``headnets[1].reg_convs[i]`` -> guiding offsets;
``headnets[1].scale_convs[i]`` -> keypoint scales (only when the contract has scales).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from core.contract import PoseContract


class HeatmapHead(nn.Module):
    def __init__(self, in_channels: int, n_keypoints: int, n_stacks: int) -> None:
        super().__init__()
        self.hp_convs = nn.ModuleList(nn.Conv2d(in_channels, n_keypoints, 1) for _ in range(n_stacks))


class OffsetHead(nn.Module):
    def __init__(self, in_channels: int, n_offsets: int, n_scales: int, n_stacks: int) -> None:
        super().__init__()
        self.reg_convs = nn.ModuleList(nn.Conv2d(in_channels, n_offsets, 1) for _ in range(n_stacks))
        self.scale_convs = (nn.ModuleList(nn.Conv2d(in_channels, n_scales, 1) for _ in range(n_stacks))
                            if n_scales else None)


def build_heads(in_channels: int, contract: PoseContract, n_stacks: int) -> nn.ModuleList:
    """``ModuleList([HeatmapHead, OffsetHead])`` sized by the contract."""
    return nn.ModuleList([
        HeatmapHead(in_channels, contract.heatmap_channels, n_stacks),
        OffsetHead(in_channels, contract.offset_channels, contract.scale_channels, n_stacks),
    ])


def apply_heads(headnets: nn.ModuleList, features: Sequence[torch.Tensor],
                offset_gain: float = 1.0) -> list[dict[str, torch.Tensor]]:
    """Run the heads on each stack's feature map; one output dict per stack."""
    hmp, omp = headnets[0], headnets[1]
    outputs = []
    for i, feat in enumerate(features):
        offsets = omp.reg_convs[i](feat)
        out = {"heatmaps": hmp.hp_convs[i](feat), "offsets": offsets * offset_gain if offset_gain != 1.0 else offsets}
        if omp.scale_convs is not None:
            out["scales"] = omp.scale_convs[i](feat)
        outputs.append(out)
    return outputs


def init_heads(headnets: nn.ModuleList, std: float = 0.001) -> None:
    """Small random weights and zero biases: start from near-zero heatmaps and offsets."""
    for m in headnets.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
