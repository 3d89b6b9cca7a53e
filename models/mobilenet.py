"""``arch='mobilenet'``: an ImageNet MobileNetV1 backbone with a light FPN neck to stride 4 (the default model).

The backbone is MobileNetV1 (Howard et al. 2017) in the layout of the shared ImageNet weights
(``backbones/mobilenet_v1_{0.5,0.25}.npz``): a 3x3 stride-2 convolution then 13 depthwise/pointwise pairs, each a
convolution with bias and ReLU6 (batch norm is folded into those weights, so the backbone has none). Stride-2 layers
pad like TensorFlow's SAME on inputs that are multiples of 32 (one pixel bottom/right), so the ImageNet weights see
what they were trained on. Taps at strides 4, 8, 16, 32 (``pw3``, ``pw5``, ``pw11``, ``pw13``) feed a top-down FPN
with batch-normalised 1x1 laterals, ``refine`` depthwise-separable 3x3 blocks at stride 4 and the shared heads.
The input is RGB scaled to [-1, 1) (``(u8 - 128) / 128``), the backbone's own normalisation.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.contract import PoseContract
from core.errors import InputError
from models.base import PoseNet
from models.heads import apply_heads, build_heads, init_heads
from models.realtime import FPNDecoder, conv_bn

#: dw1..dw13 strides of MobileNetV1
STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
#: pointwise layers whose outputs are the stride 4, 8, 16, 32 features
TAPS = (3, 5, 11, 13)
#: (u8 - 128) / 128 written as the (x - mean) / std that ``PoseNet.normalize`` applies to x / 255
_MEAN = (128.0 / 255.0,) * 3
_STD = (128.0 / 255.0,) * 3


def _widths(alpha: float) -> tuple[int, ...]:
    """Output channels of conv0 and pw1..pw13 for width multiplier ``alpha``."""
    base = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    return tuple(max(8, int(c * alpha)) for c in base)


class SamePadConv(nn.Conv2d):
    """A 3x3 convolution whose stride-2 form pads one pixel bottom/right only (TF SAME on even inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 2:
            x = F.pad(x, (0, 1, 0, 1))
        return super().forward(x)


class MobileNetV1(nn.Module):
    """The convolutional part of MobileNetV1; ``forward`` returns the stride 4, 8, 16 and 32 features."""

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        w = _widths(alpha)
        self.alpha = float(alpha)
        self.conv0 = SamePadConv(3, w[0], 3, 2, 0)
        self.dw = nn.ModuleList(SamePadConv(w[i], w[i], 3, s, 0 if s == 2 else 1, groups=w[i])
                                for i, s in enumerate(STRIDES))
        self.pw = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 1) for i in range(len(STRIDES)))

    @property
    def tap_widths(self) -> tuple[int, ...]:
        return tuple(self.pw[t - 1].out_channels for t in TAPS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.conv0(x))
        feats = []
        for i, (dw, pw) in enumerate(zip(self.dw, self.pw), 1):
            x = F.relu6(pw(F.relu6(dw(x))))
            if i in TAPS:
                feats.append(x)
        return feats

    def load_npz(self, path: str | Path) -> int:
        """Copy the shared ImageNet weights (``conv0``, ``dw{i}``, ``pw{i}``; the classifier is not used).
        Returns the number of tensors loaded; a damaged file or one of another width is an ``InputError`` naming it."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"backbone weights {path} do not exist")
        try:
            arrays = np.load(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise InputError(f"backbone weights {path} are not a readable .npz file: {exc}") from None
        layers = {"conv0": self.conv0, **{f"dw{i}": m for i, m in enumerate(self.dw, 1)},
                  **{f"pw{i}": m for i, m in enumerate(self.pw, 1)}}
        loaded = 0
        with torch.no_grad():
            for name, conv in layers.items():
                for part in ("weight", "bias"):
                    key = f"{name}.{part}"
                    if key not in arrays:
                        raise InputError(f"backbone weights {path} lack {key}")
                    value = torch.from_numpy(_read_array(arrays, key, path))
                    target = getattr(conv, part)
                    if value.shape != target.shape:
                        raise InputError(f"backbone weights {path}: {key} is {tuple(value.shape)}, a MobileNetV1 "
                                         f"with alpha {self.alpha} needs {tuple(target.shape)}")
                    target.copy_(value)
                    loaded += 1
        return loaded


def _read_array(arrays: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """``arrays[key]`` as float32; a damaged member (bad CRC, truncated, not an array) is an ``InputError``."""
    try:
        return np.asarray(arrays[key], np.float32)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise InputError(f"backbone weights {path}: {key} is damaged or unreadable ({exc})") from None


class MobileNetPose(PoseNet):
    """MobileNetV1 backbone + FPN neck at stride 4 + the shared heatmap and offset heads."""

    arch = "mobilenet"
    input_multiple = 32

    def __init__(self, contract: PoseContract, *, alpha: float = 0.5, channels: int = 64, refine: int = 2,
                 offset_gain: float = 8.0) -> None:
        if refine < 1:
            raise ValueError("refine needs at least one block")
        super().__init__(contract, kwargs={"alpha": alpha, "channels": channels, "refine": refine,
                                           "offset_gain": offset_gain}, mean=_MEAN, std=_STD)
        self.offset_gain = float(offset_gain)
        self.backbone = MobileNetV1(alpha)
        self.decoder = FPNDecoder(self.backbone.tap_widths, channels)
        self.refine = nn.Sequential(*(nn.Sequential(conv_bn(channels, channels, 3, groups=channels),
                                                    conv_bn(channels, channels, 1)) for _ in range(refine - 1)))
        self.headnets = build_heads(channels, contract, 1)
        for m in [self.decoder, self.refine]:
            for conv in m.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        init_heads(self.headnets, std=0.01)

    def backbone_parameter_names(self) -> set[str]:
        return {f"backbone.{n}" for n, _ in self.backbone.named_parameters()}

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        self.check_input(x)
        features = self.refine(self.decoder(self.backbone(x)))
        return apply_heads(self.headnets, [features], offset_gain=self.offset_gain)
