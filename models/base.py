"""``PoseNet``: the output contract every GOPose network implements.

``forward(x)`` returns one dict per stack (last = final) with raw training outputs
``heatmaps (N,K,H/4,W/4)``, ``offsets (N,2L,H/4,W/4)`` and, when the contract has scales, ``scales``.
``infer(x)`` returns the final stack as the decoder wants it (offsets in input pixels).
``preprocess(image_bgr)`` turns a BGR uint8 canvas into the network input, with the normalisation
the weights were trained with (so the authors' checkpoints get the authors' normalisation).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.codec import Codec
from core.contract import PoseContract
from core.errors import InputError
from models.config import ModelConfig

# ImageNet statistics on RGB images scaled to [0, 1]: the authors' data_mean / data_std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

StackOutput = dict[str, torch.Tensor]


class PoseNet(nn.Module):
    """Base class: subclasses build their layers and implement ``forward``."""

    arch: str = ""
    input_multiple: int = 32
    n_stacks: int = 1  # outputs ``forward`` returns (stacked networks set their own)

    def __init__(self, contract: PoseContract, *, kwargs: dict | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 offset_scale: float = 1.0) -> None:
        super().__init__()
        if contract.stride != 4:
            raise InputError(f"{type(self).__name__} has output stride 4, the contract asks for {contract.stride}")
        self.contract = contract
        #: what encoder and decoder share (sigma, window, decoder defaults); checkpoints store the trained one
        self.codec = Codec(contract)
        self.config = ModelConfig(self.arch, contract, dict(kwargs or {}))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        #: input pixels per unit of the raw offset output (1.0: raw offsets are already in input pixels)
        self.offset_scale = float(offset_scale)

    # ----------------------------------------------------------------- input
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``InputError`` for an input that is not (N, 3, H, W) with H, W multiples of ``input_multiple``."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"network input must be (N, 3, H, W), got {tuple(x.shape)}")
        m = self.input_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise InputError(f"{self.arch} input height and width must be multiples of {m}, "
                             f"got {x.shape[2]}x{x.shape[3]}")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """BGR uint8 ``(N, H, W, 3)`` (any device) -> normalised RGB float ``(N, 3, H, W)``."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be (N, H, W, 3) BGR, got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).flip(1).float()
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        scale = 1.0 / (torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255.0)
        return (x - mean) * scale

    def preprocess(self, image_bgr: np.ndarray) -> torch.Tensor:
        """One BGR uint8 canvas ``(H, W, 3)`` -> ``(3, H, W)`` float tensor ready for ``forward``."""
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            shape = getattr(image_bgr, "shape", None)
            raise InputError(f"image must be an (H, W, 3) BGR uint8 array, got shape {shape}")
        if image_bgr.dtype != np.uint8:
            raise InputError(f"image must be uint8, got {image_bgr.dtype}")
        return self.normalize(torch.from_numpy(np.ascontiguousarray(image_bgr))[None])[0]

    # ---------------------------------------------------------------- output
    def forward(self, x: torch.Tensor) -> list[StackOutput]:  # pragma: no cover - abstract
        raise NotImplementedError

    def infer(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Final-stack outputs for decoding: ``heatmaps``, ``offsets`` (input pixels), ``scales`` or None."""
        self.check_input(x)
        last = self(x)[-1]
        offsets = last["offsets"] if self.offset_scale == 1.0 else last["offsets"] * self.offset_scale
        return {"heatmaps": last["heatmaps"], "offsets": offsets, "scales": last.get("scales")}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

