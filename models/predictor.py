"""The one inference path: BGR frames -> canvases -> network (+ flip test) -> decoder -> people in frame pixels.

``gopose eval``, ``gopose annotate`` and the app all run a ``Predictor`` (the app and annotate through
``app.engine.PoseEstimator``, which adds model loading and backend choice), so the AP that eval reports is
measured on the path users run. Stages, usable one by one (a pipeline overlaps them on threads, eval loads
canvases in worker processes):

1. ``transform_for(w, h)``: the letterbox onto the network canvas (long edge, or fixed height as in the paper's
   CrowdPose protocol), rounded up to the network's input multiple; ``canvases(frames)`` applies it;
2. ``infer(canvases)``: uint8 canvases -> normalised tensor -> network; with ``flip`` the mirrored canvases run in
   the same batch and ``core.decoder.merge_flip`` averages the maps;
3. ``decode(maps)``: the codec's decoder, then every keypoint mapped back with the transform's exact inverse
   (kept inside the frame: a peak in the letterbox padding lands on its edge).

The network is any callable ``x (N, 3, H, W) float -> {"heatmaps", "offsets", "scales"}`` (float32 tensors,
offsets in input pixels): a ``models.precision.InferenceModel``, an ONNX Runtime session, or the oracle.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from core.codec import Codec
from core.decoder import DecoderConfig, merge_flip
from core.errors import InputError
from core.geometry import ImageTransform, fixed_height_transform, long_edge_transform
from core.poses import Poses

Network = Callable[[torch.Tensor], dict]
logger = logging.getLogger(__name__)


@dataclass
class Maps:
    """Network outputs of a batch before decoding, with the transforms that made its canvases."""

    heatmaps: torch.Tensor
    offsets: torch.Tensor
    scales: torch.Tensor | None
    transforms: list[ImageTransform]
    timings: dict[str, float]

    def __len__(self) -> int:
        return len(self.transforms)


def check_frame(image: object) -> None:
    """``InputError`` unless ``image`` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}"
        raise InputError(f"frame must be an (H, W, 3) BGR uint8 array, got {desc}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"frame is empty: {image.shape}")


def _nonfinite(maps: Maps) -> int:
    """How many values of the network maps are NaN or infinite (0 on the usual path: one reduction per map)."""
    tensors = [t for t in (maps.heatmaps, maps.offsets, maps.scales) if t is not None]
    if all(bool(torch.isfinite(t).all()) for t in tensors):
        return 0
    return sum(int((~torch.isfinite(t)).sum()) for t in tensors)


def _into_frame(transform: ImageTransform, xy: np.ndarray) -> np.ndarray:
    """Canvas points mapped back to the frame, kept inside it: a peak in the letterbox padding (no picture there)
    lands on the frame's edge instead of outside the image."""
    out = transform.inverse(xy)
    w, h = transform.src_size
    out[:, 0] = np.clip(out[:, 0], -0.5, w - 0.5)
    out[:, 1] = np.clip(out[:, 1], -0.5, h - 0.5)
    return out


class Predictor:
    """Frames to people with one network and its codec.

    ``normalize`` turns a uint8 ``(N, H, W, 3)`` BGR tensor into the network input (the model's own
    normalisation); ``device`` is where canvases go; ``long_edge`` (default: the codec's) or ``fixed_height``
    choose the canvas; ``decoder`` overrides the codec's decoder defaults. Safe for one caller at a time per
    stage; ``update_decoder`` may be called from any thread.
    """

    def __init__(self, network: Network, codec: Codec, *, normalize: Callable[[torch.Tensor], torch.Tensor],
                 input_multiple: int = 32, device: torch.device | str = "cpu", long_edge: int | None = None,
                 fixed_height: int | None = None, flip: bool = False, decoder: DecoderConfig | None = None) -> None:
        self.network = network
        self.codec = codec
        self.contract = codec.contract
        self.normalize = normalize
        self.multiple = int(input_multiple)
        if self.multiple < 1 or self.multiple % self.contract.stride:
            raise InputError(f"the canvas multiple must be a positive multiple of the network's stride "
                             f"({self.contract.stride}), got {self.multiple}")
        self.device = torch.device(device)
        self.long_edge = int(long_edge or codec.long_edge)
        self.fixed_height = int(fixed_height) if fixed_height else None
        if min(self.long_edge, self.fixed_height or self.long_edge) < 16:
            raise InputError("the network canvas must be at least 16 pixels, "
                             f"got {self.fixed_height or self.long_edge}")
        self.flip = bool(flip)
        self._decoder = decoder if decoder is not None else codec.decoder
        if self._decoder.sigma != codec.sigma:
            self._decoder = self._decoder.with_(sigma=codec.sigma)
        self._transforms: dict[tuple[int, int], ImageTransform] = {}
        self._lock = threading.Lock()
        #: batches whose network maps held NaN or infinite values (their cells give no keypoints)
        self.nonfinite_batches = 0

    @classmethod
    def from_model(cls, model: torch.nn.Module, *, device: torch.device | str = "cpu", precision: str = "auto",
                   **kwargs) -> "Predictor":
        """A predictor running ``model`` (a ``PoseNet``) prepared for inference on ``device`` (batch norms folded,
        channels-last, weights cast once for fp16/bf16), with the model's codec and normalisation."""
        from models.precision import InferenceModel

        runner = InferenceModel(model, device, precision)
        return cls(runner, model.codec, normalize=runner.model.normalize,
                   input_multiple=int(getattr(model, "input_multiple", 32)), device=runner.device, **kwargs)

    # ------------------------------------------------------------------ settings
    @property
    def decoder_config(self) -> DecoderConfig:
        return self._decoder

    def update_decoder(self, **fields) -> DecoderConfig:
        """Change decoder settings (e.g. ``threshold=0.1``) for the next batches."""
        if "sigma" in fields:
            raise ValueError("the decoder's sigma is the codec's heatmap sigma")
        self._decoder = self._decoder.with_(**{k: v for k, v in fields.items() if v is not None})
        return self._decoder

    # ------------------------------------------------------------------ stage 1: geometry
    def transform_for(self, width: int, height: int) -> ImageTransform:
        """The letterbox of a ``width`` x ``height`` frame onto the network canvas (cached per size)."""
        key = (int(width), int(height))
        t = self._transforms.get(key)
        if t is None:
            if self.fixed_height:
                t = fixed_height_transform(width, height, target_height=self.fixed_height, multiple=self.multiple)
            else:
                t = long_edge_transform(width, height, self.long_edge, self.multiple)
            if len(self._transforms) > 16:
                self._transforms.clear()
            self._transforms[key] = t
        return t

    def canvases(self, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[ImageTransform]]:
        """Each frame letterboxed onto its canvas (frames of a batch must share one canvas size)."""
        canvases, transforms = [], []
        for image in frames:
            check_frame(image)
            t = self.transform_for(image.shape[1], image.shape[0])
            transforms.append(t)
            canvases.append(t.warp(image))
        if len({c.shape for c in canvases}) > 1:
            raise InputError(f"frames of one batch need one canvas size, got {sorted({c.shape for c in canvases})}")
        return canvases, transforms

    # ------------------------------------------------------------------ stage 2: network
    @torch.inference_mode()
    def infer(self, canvases: Sequence[np.ndarray], transforms: Sequence[ImageTransform]) -> Maps:
        """Run the network (and the flip test) on uint8 canvases; ``transforms`` made them (for ``decode``)."""
        t0 = time.perf_counter()
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(canvases))).to(self.device, non_blocking=True)
        x = self.normalize(batch)
        n = x.shape[0]
        if self.flip:
            x = torch.cat([x, x.flip(-1)])
        t1 = time.perf_counter()
        with self._lock:
            out = self.network(x)
            hm, off, sc = out["heatmaps"], out["offsets"], out.get("scales")
            if self.flip:
                hm, off, sc = merge_flip(hm[:n], off[:n], hm[n:], off[n:], self.contract,
                                         scales=None if sc is None else sc[:n],
                                         flipped_scales=None if sc is None else sc[n:])
            if hm.device.type == "cuda":  # wait for this stream's work only, not the whole device
                done = torch.cuda.Event()
                done.record()
                done.synchronize()
        t2 = time.perf_counter()
        return Maps(hm, off, sc, list(transforms),
                    {"preprocess": (t1 - t0) * 1e3 / n, "network": (t2 - t1) * 1e3 / n})

    # ------------------------------------------------------------------ stage 3: decoding
    def decode(self, maps: Maps) -> list[Poses]:
        """People of each canvas of ``maps``, in the coordinates of the frame it came from."""
        t0 = time.perf_counter()
        heatmaps = maps.heatmaps
        bad = _nonfinite(maps)
        if bad:
            self.nonfinite_batches += 1
            if self.nonfinite_batches == 1:  # once per predictor: a broken model would flood the log every frame
                logger.warning("the network's output holds %d NaN or infinite values; no keypoints are found there "
                               "(a numeric overflow: try another --precision or backend, or check the weights)", bad)
            # a +inf cell would be a peak of infinite score (a person ranked first, Infinity in results.json);
            # non-finite offsets and scales already reject their links (their distances compare False)
            heatmaps = torch.nan_to_num(heatmaps, nan=0.0, posinf=0.0, neginf=0.0)
        decoded = self.codec.decode(heatmaps, maps.offsets, maps.scales, self._decoder)
        poses = [p.map_points(functools.partial(_into_frame, t)) for p, t in zip(decoded, maps.transforms)]
        maps.timings["decode"] = (time.perf_counter() - t0) * 1e3 / max(1, len(poses))
        return poses

    # ------------------------------------------------------------------ all at once
    def predict(self, frames: Sequence[np.ndarray]) -> list[Poses]:
        """People in each BGR uint8 frame."""
        if len(frames) == 0:
            return []
        canvases, transforms = self.canvases(frames)
        return self.decode(self.infer(canvases, transforms))
