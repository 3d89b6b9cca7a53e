"""The inference engine: frames in, people out (in frame coordinates).

``PoseEstimator`` wraps a network (``models``) and the greedy offset-guided decoder (``core.decoder``):

1. preprocess: ``core.geometry.long_edge_transform`` letterboxes each frame onto a square canvas of
   ``long_edge`` (rounded up to the network's input multiple), then the network's own normalisation;
2. network: on the chosen device, under autocast (fp16/bf16) on CUDA when asked; optional flip test (the
   mirrored canvas runs in the same batch and ``core.decoder.merge_flip`` averages the maps);
3. decode, then map every keypoint back to the frame with the transform's exact inverse.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.contract import PoseContract
from core.decoder import DecoderConfig, decode, merge_flip
from core.errors import InputError
from core.geometry import ImageTransform, long_edge_transform
from core.poses import Poses
from app.model_store import NoModelError, resolve_model
from models.precision import InferenceModel

LOG = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BACKENDS = ("torch", "onnx", "auto")
AUTO_ONNX_ARCHS = ("realtime", "midsize")  # small CPU networks where ONNX Runtime may win

__all__ = ["EngineConfig", "FrameResult", "PoseEstimator", "NoModelError", "load_estimator", "resolve_device"]


@dataclass
class EngineConfig:
    """How to run a network: device, precision, CPU threads, input size, flip test, decoder thresholds."""

    device: str = "auto"         # 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'
    precision: str = "auto"      # 'auto' (fp16 on CUDA, fp32 on CPU), 'fp32', 'fp16', 'bf16' (AMP on CUDA only)
    threads: int | None = None   # CPU threads for torch (None: torch's default)
    long_edge: int = 512         # frame long edge on the network canvas
    flip: bool = False           # flip test (about 2x slower)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    backend: str = "auto"        # 'torch', 'onnx' (ONNX Runtime, CPU) or 'auto' (ONNX Runtime where measured faster)

    def __post_init__(self) -> None:
        if not (self.device in DEVICES or str(self.device).startswith("cuda:")):
            raise InputError(f"device must be one of {DEVICES} (or cuda:N), got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if int(self.long_edge) < 32:
            raise InputError(f"long edge must be at least 32 pixels, got {self.long_edge}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.threads is not None and int(self.threads) < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")


@dataclass
class FrameResult:
    """People found in one frame (frame pixel coordinates) and where the time went (milliseconds)."""

    poses: Poses
    timings: dict[str, float]
    frame_size: tuple[int, int]  # (width, height)


@dataclass
class NetworkMaps:
    """Network outputs of a batch before decoding (see :meth:`PoseEstimator.infer_maps`)."""

    heatmaps: torch.Tensor
    offsets: torch.Tensor
    scales: torch.Tensor | None
    transforms: list[ImageTransform]
    sizes: list[tuple[int, int]]
    timings: dict[str, float]

    def __len__(self) -> int:
        return len(self.sizes)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; an unavailable CUDA request is an InputError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine (use --device cpu)")
    return torch.device(device)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            LOG.info("precision %s ignored on %s: AMP is used on CUDA only", precision, device)
        return None
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[precision]


class PoseEstimator:
    """Runs a pose network plus the decoder on BGR frames. Thread-safe for one caller at a time; decoder
    thresholds may be changed from any thread with :meth:`update_decoder`."""

    def __init__(self, model: torch.nn.Module, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        if self.config.threads:
            torch.set_num_threads(int(self.config.threads))
        self.device = resolve_device(self.config.device)
        self.amp_dtype = _autocast_dtype(self.config.precision, self.device)
        precision = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.amp_dtype]
        # BN folded into convolutions, channels-last and autocast on CUDA, float32 outputs
        self._runner = InferenceModel(model, self.device, precision)
        self.model = self._runner.model
        self.contract: PoseContract = model.contract
        self.multiple = int(getattr(model, "input_multiple", 32))
        self._decoder = self.config.decoder
        self._lock = threading.Lock()
        self._transforms: dict[tuple[int, int], ImageTransform] = {}
        self.arch = getattr(model, "arch", "") or type(model).__name__
        self.name = self.arch
        self.info: dict = {}
        self.backend = "torch"
        self.backend_timings: dict[str, float] = {}
        if self.config.backend == "onnx" or (self.config.backend == "auto" and self.arch in AUTO_ONNX_ARCHS):
            self._pick_backend()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_checkpoint(cls, path: str | Path, config: EngineConfig | None = None,
                        arch: str | None = None, spec: str | None = None) -> "PoseEstimator":
        """Load a checkpoint (ours: rebuilt from its stored config; the authors': needs ``arch``). With
        ``spec`` ('coco' or 'crowdpose'), a checkpoint for another keypoint spec is an ``InputError``."""
        from models.checkpoint import load_checkpoint

        model, info = load_checkpoint(path, arch=arch, map_location="cpu")
        if spec is not None and model.contract.spec.name != spec:
            raise InputError(f"checkpoint {path} predicts {model.contract.spec.name} keypoints "
                             f"({model.contract.n_keypoints}), not {spec}")
        est = cls(model, config)
        est.name = Path(path).stem
        est.info = {k: v for k, v in dict(info).items() if k != "optimizer_state_dict"}
        return est

    # ------------------------------------------------------------------ settings
    @property
    def decoder_config(self) -> DecoderConfig:
        return self._decoder

    def update_decoder(self, **fields) -> DecoderConfig:
        """Change decoder settings (e.g. ``threshold=0.1``) for the next frames; safe from any thread."""
        self._decoder = self._decoder.with_(**fields)
        return self._decoder

    @property
    def long_edge(self) -> int:
        return int(self.config.long_edge)

    def transform_for(self, width: int, height: int) -> ImageTransform:
        key = (int(width), int(height))
        t = self._transforms.get(key)
        if t is None:
            t = long_edge_transform(width, height, self.long_edge, self.multiple)
            if len(self._transforms) > 16:
                self._transforms.clear()
            self._transforms[key] = t
        return t

    # ------------------------------------------------------------------ inference
    def estimate(self, frame_bgr: np.ndarray) -> FrameResult:
        """People in one BGR uint8 frame."""
        return self.estimate_batch([frame_bgr])[0]

    def estimate_batch(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """People in each frame of a batch (frames may differ in size: all share one canvas size)."""
        if len(frames) == 0:
            return []
        return self.decode_maps(self.infer_maps(frames))

    def infer_maps(self, frames: Sequence[np.ndarray]) -> NetworkMaps:
        """The first half of :meth:`estimate_batch`: preprocessing and the network (no Python-heavy work, so a
        pipeline can decode the previous batch on another thread meanwhile)."""
        if self._runner is None:
            raise RuntimeError("this PoseEstimator was closed")
        with self._lock:
            t0 = time.perf_counter()
            sizes, transforms, canvases = [], [], []
            for image in frames:
                _check_frame(image)
                h, w = image.shape[:2]
                t = self.transform_for(w, h)
                sizes.append((w, h))
                transforms.append(t)
                canvases.append(t.warp(image))
            batch = torch.from_numpy(np.stack(canvases)).to(self.device, non_blocking=True)
            x = self.model.normalize(batch)
            t1 = time.perf_counter()
            heatmaps, offsets, scales = self._network(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t2 = time.perf_counter()
        n = len(frames)
        return NetworkMaps(heatmaps, offsets, scales, transforms, sizes,
                           {"preprocess": (t1 - t0) * 1000 / n, "network": (t2 - t1) * 1000 / n})

    def decode_maps(self, maps: NetworkMaps) -> list[FrameResult]:
        """The second half of :meth:`estimate_batch`: decode and map people back to frame coordinates."""
        t2 = time.perf_counter()
        decoded = decode(maps.heatmaps, maps.offsets, self.contract, self._decoder, scales=maps.scales)
        results = []
        for poses, t, size in zip(decoded, maps.transforms, maps.sizes):
            results.append(FrameResult(poses.map_points(t.inverse), {}, size))
        timings = dict(maps.timings)
        timings["decode"] = (time.perf_counter() - t2) * 1000 / max(1, len(results))
        timings["total"] = sum(timings.values())
        for r in results:
            r.timings = dict(timings)
        return results

    @torch.inference_mode()
    def _network(self, x: torch.Tensor):
        n = x.shape[0]
        if self.config.flip:
            x = torch.cat([x, x.flip(-1)])
        out = self._runner(x)
        hm, off, sc = out["heatmaps"], out["offsets"], out.get("scales")
        if self.config.flip:
            hm, off, sc = merge_flip(hm[:n], off[:n], hm[n:], off[n:], self.contract,
                                     scales=None if sc is None else sc[:n],
                                     flipped_scales=None if sc is None else sc[n:])
        return hm, off, sc

    def _pick_backend(self) -> None:
        """``backend='onnx'``: ONNX Runtime on CPU (an error when unavailable); ``'auto'``: ONNX Runtime when it
        is installed, the device is the CPU, the network exports, and it measures faster than PyTorch."""
        from app.onnx_backend import OnnxRunner, compare_runners, onnxruntime_available

        explicit = self.config.backend == "onnx"
        if self.device.type != "cpu" or not onnxruntime_available():
            if explicit:
                raise InputError("the ONNX backend needs onnxruntime (pip install 'gopose[onnx]') and device cpu")
            return
        side = long_edge_transform(self.long_edge, self.long_edge, self.long_edge, self.multiple).dst_size[0]
        try:
            onnx = OnnxRunner(self.model, side, threads=self.config.threads)
        except Exception as exc:  # noqa: BLE001 - a network that does not export keeps the PyTorch backend
            if explicit:
                raise InputError(f"cannot export {self.name} to ONNX: {exc}") from None
            LOG.info("ONNX backend unavailable for %s: %s", self.name, exc)
            return
        if not explicit:
            x = torch.zeros(1, 3, side, side)
            t_torch, t_onnx = compare_runners([self._runner, onnx], x)
            LOG.info("backend timing at %d px: torch %.1f ms, onnxruntime %.1f ms", side, t_torch, t_onnx)
            self.backend_timings = {"torch": t_torch, "onnxruntime": t_onnx}
            if t_onnx > 0.95 * t_torch:
                return
        self._runner = onnx
        self.backend = "onnxruntime"

    def close(self) -> None:
        """Release the network (GPU memory included)."""
        self.model = None
        self._runner = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_frame(image) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}"
        raise InputError(f"frame must be an (H, W, 3) BGR uint8 array, got {desc}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"frame is empty: {image.shape}")


def load_estimator(model: str | Path | None = None, config: EngineConfig | None = None, arch: str | None = None,
                   store: str | Path | None = None, spec: str | None = None) -> PoseEstimator:
    """An estimator for ``model``: a checkpoint path, the name of an installed model, or None for the
    installed default. Raises :class:`NoModelError` when nothing is given and nothing is installed, and
    ``InputError`` when ``spec`` is given and the checkpoint is for another keypoint spec."""
    path, stored_arch = resolve_model(model, root=store)
    return PoseEstimator.from_checkpoint(path, config, arch=arch or stored_arch, spec=spec)
