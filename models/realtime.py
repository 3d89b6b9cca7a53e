"""GOPose's own real-time network (``arch='realtime'``) and a wider ``midsize`` variant.

A MobileNetV2-style encoder (inverted residuals: 1x1 expand, 3x3 depthwise, 1x1 linear project, BN,
ReLU) down to stride 32, a light FPN decoder (1x1 laterals, nearest 2x up-sampling and addition) back to
stride 4, one depthwise-separable 3x3 refinement at stride 4, and the shared 1x1 heads. Only ops that
fuse (conv+BN+ReLU) and export to ONNX opset >= 11. One stack, so ``forward`` returns a one-element list.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.contract import PoseContract
from models.base import PoseNet
from models.heads import apply_heads, build_heads, init_heads


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 -> depthwise 3x3 (stride s) -> linear 1x1 project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, relu=False)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class Encoder(nn.Module):
    """Stem (3x3 s2) then four stages at strides 4, 8, 16, 32; returns the four stage outputs."""

    def __init__(self, stem: int, widths: Sequence[int], depths: Sequence[int], expand: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, stem, 3, 2), conv_bn(stem, stem, 3, 1, groups=stem),
                                  conv_bn(stem, stem, 1, relu=False))
        stages = []
        cin = stem
        for width, depth in zip(widths, depths):
            blocks = [InvertedResidual(cin, width, 2, expand)]
            blocks += [InvertedResidual(width, width, 1, expand) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class FPNDecoder(nn.Module):
    """Top-down FPN to stride 4 with ``channels`` channels, then a depthwise-separable 3x3 refinement."""

    def __init__(self, in_widths: Sequence[int], channels: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(conv_bn(w, channels, 1) for w in in_widths)
        self.refine = nn.Sequential(conv_bn(channels, channels, 3, groups=channels), conv_bn(channels, channels, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = self.laterals[-1](feats[-1])
        for lateral, feat in zip(reversed(self.laterals[:-1]), reversed(feats[:-1])):
            y = lateral(feat) + F.interpolate(y, scale_factor=2.0, mode="nearest")
        return self.refine(y)


class RealtimeNet(PoseNet):
    """Our real-time pose network: stride 4, one stack, same heads and output contract as Hourglass-104.

    ``offset_gain`` multiplies the offset head so a unit-scale conv output spans tens of input pixels;
    raw offsets are then in input pixels, like the authors' network.
    """

    arch = "realtime"
    input_multiple = 32

    def __init__(self, contract: PoseContract, *, stem: int = 16, widths: Sequence[int] = (24, 48, 96, 128),
                 depths: Sequence[int] = (2, 3, 4, 2), expand: int = 4, channels: int = 64,
                 offset_gain: float = 8.0) -> None:
        widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError("widths and depths need 4 entries (strides 4, 8, 16, 32)")
        super().__init__(contract, kwargs={"stem": stem, "widths": list(widths), "depths": list(depths),
                                           "expand": expand, "channels": channels, "offset_gain": offset_gain})
        self.offset_gain = float(offset_gain)
        self.encoder = Encoder(stem, widths, depths, expand)
        self.decoder = FPNDecoder(widths, channels)
        self.headnets = build_heads(channels, contract, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        init_heads(self.headnets, std=0.01)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        self.check_input(x)
        return apply_heads(self.headnets, [self.decoder(self.encoder(x))], offset_gain=self.offset_gain)


class MidsizeNet(RealtimeNet):
    """The same design, twice as wide and deeper, with 128 decoder channels (``arch='midsize'``)."""

    arch = "midsize"

    def __init__(self, contract: PoseContract, *, stem: int = 32, widths: Sequence[int] = (48, 64, 128, 192),
                 depths: Sequence[int] = (3, 4, 6, 3), expand: int = 6, channels: int = 128,
                 offset_gain: float = 8.0) -> None:
        super().__init__(contract, stem=stem, widths=widths, depths=depths, expand=expand, channels=channels,
                         offset_gain=offset_gain)
