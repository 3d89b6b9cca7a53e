"""The authors' Hourglass-104 (CenterNet's 2-stack hourglass), state-dict compatible with their checkpoints.

Input stride 4 stem (7x7 conv s2 + residual s2), ``n_stacks`` recursive 5-level hourglasses with channel
widths 256-256-384-384-384-512, down-sampling by a stride-2 residual (no max-pool) and nearest up-sampling,
a 3x3 conv per stack, and the intermediate supervision merge between stacks. Module names follow the
authors' checkpoints (``basenet.*``, ``headnets.*``) so their ``model_state_dict`` loads unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.contract import PoseContract
from models.base import PoseNet
from models.heads import apply_heads, build_heads, init_heads

DIMS = (256, 256, 384, 384, 384, 512)
MODULES = (2, 2, 2, 2, 2, 4)


class ConvBNReLU(nn.Module):
    """k x k convolution (no bias) + batch norm + ReLU; attributes ``conv`` and ``bn``."""

    def __init__(self, k: int, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Residual(nn.Module):
    """Two 3x3 conv-BN with a (projected when needed) identity path; attributes ``conv1 bn1 conv2 bn2 skip``."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.skip = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.skip(x), inplace=True)


def _residuals(cin: int, cout: int, count: int, stride: int = 1, widen_last: bool = False) -> nn.Sequential:
    """``count`` residual blocks from ``cin`` to ``cout``; the channel change happens in the first block,
    or in the last one when ``widen_last`` (the up-sampling branch)."""
    if widen_last:
        blocks = [Residual(cin, cin) for _ in range(count - 1)] + [Residual(cin, cout)]
    else:
        blocks = [Residual(cin, cout, stride)] + [Residual(cout, cout) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


class HourglassLevel(nn.Module):
    """One recursion level: ``up1`` keeps resolution, ``low1`` halves it, ``low2`` is the next level
    (or the innermost residuals), ``low3`` returns to this level's width before 2x nearest up-sampling."""

    def __init__(self, dims: tuple[int, ...], modules: tuple[int, ...]) -> None:
        super().__init__()
        cur, nxt = dims[0], dims[1]
        self.up1 = _residuals(cur, cur, modules[0])
        self.low1 = _residuals(cur, nxt, modules[0], stride=2)
        self.low2 = (HourglassLevel(dims[1:], modules[1:]) if len(dims) > 2
                     else _residuals(nxt, nxt, modules[1]))
        self.low3 = _residuals(nxt, cur, modules[0], widen_last=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low3(self.low2(self.low1(x)))
        return self.up1(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class HourglassBackbone(nn.Module):
    """Stem + stacked hourglasses; returns one 256-channel stride-4 feature map per stack."""

    def __init__(self, n_stacks: int = 2, dims: tuple[int, ...] = DIMS, modules: tuple[int, ...] = MODULES,
                 cnv_dim: int = 256) -> None:
        super().__init__()
        cur = dims[0]
        self.n_stacks = n_stacks
        self.pre = nn.Sequential(ConvBNReLU(7, 3, 128, stride=2), Residual(128, cur, stride=2))
        self.kps = nn.ModuleList(HourglassLevel(dims, modules) for _ in range(n_stacks))
        self.cnvs = nn.ModuleList(ConvBNReLU(3, cur, cnv_dim) for _ in range(n_stacks))
        self.inters = nn.ModuleList(Residual(cur, cur) for _ in range(n_stacks - 1))
        self.inters_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cur, cur, 1, bias=False), nn.BatchNorm2d(cur)) for _ in range(n_stacks - 1))
        self.cnvs_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cnv_dim, cur, 1, bias=False), nn.BatchNorm2d(cur)) for _ in range(n_stacks - 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        inter = self.pre(x)
        features = []
        for i in range(self.n_stacks):
            cnv = self.cnvs[i](self.kps[i](inter))
            features.append(cnv)
            if i < self.n_stacks - 1:
                inter = F.relu(self.inters_[i](inter) + self.cnvs_[i](cnv), inplace=True)
                inter = self.inters[i](inter)
        return features


class HourglassNet(PoseNet):
    """Hourglass-104 pose network (``arch='hourglass104'``): 2 stacks, outputs of both stacks for training.

    Raw offsets are in input pixels (the authors' encoder subtracts cell centres in input pixels and their
    decoder adds the up-sampled offsets unscaled); heatmaps have no activation.
    """

    arch = "hourglass104"
    input_multiple = 128  # five 2x down-samplings after the stride-4 stem

    def __init__(self, contract: PoseContract, n_stacks: int = 2) -> None:
        super().__init__(contract, kwargs={"n_stacks": n_stacks})
        if n_stacks < 1:
            raise ValueError(f"n_stacks must be >= 1, got {n_stacks}")
        self.n_stacks = n_stacks  # outputs per forward: what loss.stack_weights must fit
        self.basenet = HourglassBackbone(n_stacks)
        self.headnets = build_heads(256, contract, n_stacks)
        init_heads(self.headnets)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        self.check_input(x)
        return apply_heads(self.headnets, self.basenet(x))
