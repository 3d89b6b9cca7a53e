"""ONNX export of a network's inference graph (``infer``: final stack, offsets in input pixels)."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from core.errors import InputError
from models.base import PoseNet
from core.io.files import atomic_path
from models.precision import fuse_for_inference

LOG = logging.getLogger(__name__)

#: the oldest opset with the scale-factor nearest up-sampling of the FPN and hourglass decoders
MIN_OPSET = 11


class _InferGraph(nn.Module):
    """Wraps ``model.infer`` so the exported graph returns plain tensors in a fixed order."""

    def __init__(self, model: PoseNet) -> None:
        super().__init__()
        self.model = model
        self.with_scale = model.contract.with_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.infer(x)
        if self.with_scale:
            return out["heatmaps"], out["offsets"], out["scales"]
        return out["heatmaps"], out["offsets"]


def output_names(model: PoseNet) -> list[str]:
    return ["heatmaps", "offsets"] + (["scales"] if model.contract.with_scale else [])


def check_opset(opset: int) -> None:
    """``InputError`` for an ONNX opset older than ``MIN_OPSET`` or newer than this torch exports."""
    try:
        from torch.onnx import _constants  # torch states its newest opset only here
    except ImportError:
        _constants = None
    newest = getattr(_constants, "ONNX_MAX_OPSET", None)
    if opset < MIN_OPSET or (newest is not None and opset > newest):
        raise InputError(f"cannot export to ONNX opset {opset}: choose one from {MIN_OPSET} to "
                         f"{newest if newest is not None else 'the newest this torch supports'}")


def export_onnx(model: PoseNet, path: str | os.PathLike, height: int = 320, width: int = 320, opset: int = 17,
                dynamic: bool = True, fuse: bool = True) -> Path:
    """Export to ONNX (input ``image``: normalised ``(N, 3, H, W)`` float32; outputs heatmaps, offsets[, scales]).

    With ``dynamic`` the batch, height and width axes are free (H and W must stay multiples of
    ``model.input_multiple``). The file is written to a temporary name and renamed when complete.
    """
    check_opset(opset)
    m = model.input_multiple
    if height % m or width % m:
        raise InputError(f"export size {height}x{width} must be a multiple of {m} for {model.arch}")
    net = fuse_for_inference(model) if fuse else model.eval()
    graph = _InferGraph(net).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = output_names(model)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes.update({n: {0: "batch", 2: "out_height", 3: "out_width"} for n in names})
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        torch.onnx.export(graph, (torch.zeros(1, 3, height, width),), tmp, input_names=["image"],
                          output_names=names, dynamic_axes=axes if dynamic else None, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    LOG.info("exported %s to %s", model.arch, path)
    return path
