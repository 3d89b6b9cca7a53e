"""The inference engine: frames in, people out (in frame coordinates).

``PoseEstimator`` is the one inference path (``models.predictor.Predictor``: letterbox, network, flip test,
decoder, inverse mapping), plus what applications need around it: loading a checkpoint or an installed model,
the device and precision, the network backend (``models.backends``: PyTorch, ONNX Runtime or OpenVINO, fp32 or
INT8; ``auto`` = the fastest fp32 one, measured once per machine and model and recorded in the user's model
folder), per-frame timings, and the two halves ``infer_maps`` / ``decode_maps`` that the threaded pipeline
overlaps. Constructing one does not change process state: torch's CPU thread count is the process's (the command
line sets it from ``--threads``).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from os import PathLike, fspath
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.codec import Codec
from core.decoder import DecoderConfig
from core.errors import InputError
from core.geometry import long_edge_problem
from core.poses import Poses
from app.model_store import NoModelError, resolve_model, store_dir
from models.backends import CHOICES as BACKENDS
from models.precision import InferenceModel, check_cuda_index
from models.predictor import Maps, Predictor

LOG = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AUTO_ARCHS = ("realtime", "midsize", "mobilenet")  # small CPU networks where another runtime may win
CACHE = ".cache"  # in the user's model folder: INT8 models (int8/) and the measured backend choice

__all__ = ["EngineConfig", "FrameResult", "PoseEstimator", "NoModelError", "load_estimator", "resolve_device"]


def video_frames(path: str | Path, count: int = 64) -> list[np.ndarray]:
    """``count`` frames (BGR uint8, as shown) spread over the video ``path``, to calibrate an INT8 model on a user's
    own footage. Read as every run reads it (``app.sources``): its moving picture, never the cover art of a music
    file (an ``InputError`` names such a file, or a video that does not decode)."""
    from app.sources import VideoSource
    from models.backends.int8 import spread_frames

    with VideoSource(str(path)) as source:
        return spread_frames((frame.image for frame in source), count)


def _paths(value: object, what: str) -> tuple[str, ...]:
    """One path (a string or ``Path``), a sequence of them or None as a tuple of strings (a lone string is one
    path, not its letters)."""
    if value is None:
        return ()
    if isinstance(value, (str, PathLike)):
        return (fspath(value),)
    try:
        return tuple(fspath(v) for v in value)
    except TypeError:
        raise InputError(f"{what} must be a path or a sequence of paths, got {value!r}") from None


@dataclass
class EngineConfig:
    """How to run a network: device, precision, CPU threads, input size, flip test, decoder thresholds."""

    device: str = "auto"         # 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'
    precision: str = "auto"      # 'auto' (fp16 on CUDA, fp32 on CPU), 'fp32', 'fp16', 'bf16' (AMP on CUDA only)
    threads: int | None = None   # CPU threads of an ONNX Runtime session (torch uses the process's setting)
    long_edge: int | None = None  # frame long edge on the network canvas (None: the model's codec default)
    flip: bool = False           # flip test (about 2x slower)
    decoder: DecoderConfig | None = None  # None: the model's codec defaults (tuned for it); a config replaces them
    threshold: float | None = None  # keypoint threshold over the decoder settings above (None: theirs)
    backend: str = "auto"        # models.backends name ('torch', 'onnx', 'openvino', 'onnx-int8', 'openvino-int8')
    #                              or 'auto' (the fastest fp32 backend, measured once per machine and model)
    cache_dir: str | None = None  # INT8 models and the measured choice (None: <user's model folder>/.cache)
    calibration: tuple[str, ...] = ()  # image folders to calibrate INT8 on (empty: the shared LSPET/COCO train)
    calibration_videos: tuple[str, ...] = ()  # else frames of these videos (annotate and the app: the user's input)

    def __post_init__(self) -> None:
        self.calibration = _paths(self.calibration, "calibration")
        self.calibration_videos = _paths(self.calibration_videos, "calibration_videos")
        if not (self.device in DEVICES or re.fullmatch(r"cuda:\d+", str(self.device))):
            raise InputError(f"device must be one of {DEVICES} (or cuda:N), got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        problem = None if self.long_edge is None else long_edge_problem(int(self.long_edge))
        if problem is not None:
            raise InputError(f"long edge {problem}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.threshold is not None and not 0 < float(self.threshold) <= 1:  # heatmap peaks are in (0, 1]
            raise InputError(f"keypoint threshold must be in (0, 1], got {self.threshold}")
        if self.threads is not None and int(self.threads) < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")


@dataclass
class FrameResult:
    """People found in one frame (frame pixel coordinates) and where the time went (milliseconds)."""

    poses: Poses
    timings: dict[str, float]
    frame_size: tuple[int, int]  # (width, height)


#: network outputs of a batch before decoding (see :meth:`PoseEstimator.infer_maps`)
NetworkMaps = Maps


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; an unavailable CUDA request is an InputError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine (use --device cpu)")
    resolved = torch.device(device)
    check_cuda_index(resolved, "device")
    return resolved


def _autocast_precision(precision: str, device: torch.device) -> str:
    """The precision the network runs at: AMP (fp16/bf16) on CUDA only, fp32 elsewhere."""
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            LOG.info("precision %s ignored on %s: AMP is used on CUDA only", precision, device)
        return "fp32"
    return "fp16" if precision == "auto" else precision


class PoseEstimator(Predictor):
    """A pose network plus the decoder on BGR frames (the ``Predictor`` path). Thread-safe for one caller at a
    time per stage; decoder thresholds may be changed from any thread with :meth:`update_decoder`."""

    def __init__(self, model: torch.nn.Module, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        device = resolve_device(self.config.device)
        # BN folded into convolutions, channels-last, fp16/bf16 weights on CUDA, float32 outputs
        self._runner = InferenceModel(model, device, _autocast_precision(self.config.precision, device))
        self.model = self._runner.model
        codec: Codec = getattr(model, "codec", None) or Codec(model.contract)
        super().__init__(self._run_network, codec, normalize=self.model.normalize,
                         input_multiple=int(getattr(model, "input_multiple", 32)), device=device,
                         long_edge=self.config.long_edge, flip=self.config.flip, decoder=self.config.decoder)
        if self.config.threshold is not None:
            self.update_decoder(threshold=float(self.config.threshold))
        self.amp_dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[self._runner.precision]
        self.arch = getattr(model, "arch", "") or type(model).__name__
        self.name = self.arch
        self.info: dict = {}
        self.backend = "torch"
        self.backend_timings: dict[str, float] = {}
        self._model_digest: str | None = None  # of the weights, made by fingerprint() when first asked
        self._pick_backend()

    def _run_network(self, x: torch.Tensor) -> dict:
        if self._runner is None:
            raise RuntimeError("this PoseEstimator was closed")
        return self._runner(x)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_checkpoint(cls, path: str | Path, config: EngineConfig | None = None,
                        arch: str | None = None, spec: str | None = None) -> "PoseEstimator":
        """Load a checkpoint (ours: rebuilt from its stored config and codec; the authors': needs ``arch``).
        With ``spec`` ('coco' or 'crowdpose'), a checkpoint for another keypoint spec is an ``InputError``."""
        from models.checkpoint import load_checkpoint

        model, info = load_checkpoint(path, arch=arch, map_location="cpu")
        if spec is not None and model.contract.spec.name != spec:
            raise InputError(f"checkpoint {path} predicts {model.contract.spec.name} keypoints "
                             f"({model.contract.n_keypoints}), not {spec}")
        est = cls(model, config)
        est.name = Path(path).stem
        est.info = {k: v for k, v in dict(info).items() if k != "optimizer_state_dict"}
        return est

    # ------------------------------------------------------------------ inference
    def estimate(self, frame_bgr: np.ndarray) -> FrameResult:
        """People in one BGR uint8 frame."""
        return self.estimate_batch([frame_bgr])[0]

    def estimate_batch(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """People in each frame of a batch (frames may differ in size if they share one canvas size)."""
        if len(frames) == 0:
            return []
        return self.decode_maps(self.infer_maps(frames))

    def infer_maps(self, frames: Sequence[np.ndarray]) -> NetworkMaps:
        """The first half of :meth:`estimate_batch`: letterbox and network (no Python-heavy work, so a pipeline
        can decode the previous batch on another thread meanwhile)."""
        if self._runner is None:
            raise RuntimeError("this PoseEstimator was closed")
        t0 = time.perf_counter()
        canvases, transforms = self.canvases(frames)
        letterbox_ms = (time.perf_counter() - t0) * 1e3 / max(1, len(frames))
        maps = self.infer(canvases, transforms)
        maps.timings["preprocess"] += letterbox_ms  # the letterbox too, not only normalisation
        return maps

    def decode_maps(self, maps: NetworkMaps) -> list[FrameResult]:
        """The second half of :meth:`estimate_batch`: decode and map people back to frame coordinates."""
        poses = self.decode(maps)
        timings = dict(maps.timings)
        timings["total"] = sum(timings.values())
        return [FrameResult(p, dict(timings), tuple(t.src_size)) for p, t in zip(poses, maps.transforms)]

    def fingerprint(self) -> dict:
        """What decides this estimator's output, for telling outputs made otherwise apart (``--skip-existing``): the
        network's weights and config (sha256 prefix), the canvas, flip test, decoder settings and whether the
        network runs quantised. Not the fp32 runtime or the precision: those pick by machine and change poses
        by rounding only, and a cluster of unlike machines must not redo each other's inputs."""
        if self._model_digest is None:
            from models.backends.int8 import model_digest

            self._model_digest = model_digest(self.model)[:16]
        return {"model": self._model_digest, "long_edge": self.long_edge, "fixed_height": self.fixed_height,
                "flip": self.flip, "decoder": asdict(self.decoder_config),
                "int8": self.backend.endswith("int8")}

    def _pick_backend(self) -> None:
        """Replace the PyTorch runner by the configured backend's (``auto``: the recorded or measured choice among
        the fp32 backends, for the small CPU networks; PyTorch elsewhere)."""
        from models.backends import select

        name = self.config.backend
        if name == "torch" or (name == "auto" and (self.device.type != "cpu" or self.arch not in AUTO_ARCHS)):
            return
        side = self.transform_for(self.long_edge, self.long_edge).dst_size[0]
        cache = Path(self.config.cache_dir) if self.config.cache_dir else store_dir() / CACHE
        self.backend, self._runner, self.backend_timings = select(
            self.model, name, size=side, threads=self.config.threads, cache_dir=cache,
            calibration=self._calibration_images, torch_runner=self._runner, device=self.device)

    def _calibration_images(self) -> list:
        """The INT8 calibration inputs: the given folders, else the shared LSPET/COCO train images, else frames of
        the user's own videos (say so: the INT8 model is then tuned to that footage)."""
        from eval.calibration import default_images

        images = default_images(self.config.calibration)
        videos = [v for v in self.config.calibration_videos if Path(v).is_file()]
        if images or not videos:
            return images
        LOG.warning("no calibration images here: calibrating the INT8 model on 64 frames of %s", videos[0])
        return video_frames(videos[0], 64)

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


def load_estimator(model: str | Path | None = None, config: EngineConfig | None = None, arch: str | None = None,
                   store: str | Path | None = None, spec: str | None = None) -> PoseEstimator:
    """An estimator for ``model``: a checkpoint path, the name of an installed model, or None for the
    installed default. Raises :class:`NoModelError` when nothing is given and nothing is installed, and
    ``InputError`` when ``spec`` is given and the checkpoint is for another keypoint spec."""
    path, stored_arch = resolve_model(model, root=store)
    return PoseEstimator.from_checkpoint(path, config, arch=arch or stored_arch, spec=spec)
