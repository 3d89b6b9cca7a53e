"""The ``gopose eval`` pipeline: load and letterbox images in worker processes, batch canvases of equal size,
run a network (or the ground-truth oracle), optionally merge the flip test, decode, map poses back to the
image, write ``results.json`` / ``summary.json`` and evaluate with the official tools.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.io.files import write_json_atomic
from core.contract import PoseContract
from core.errors import InputError
from core.geometry import ImageTransform, fixed_height_transform, long_edge_transform
from core.keypoints import get_spec
from core.io.annotations import KeypointDataset, load_keypoint_annotations
from eval.evaluate import evaluate

LOG = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    """Everything ``gopose eval`` needs; decoder fields left at None use ``DecoderConfig``'s defaults."""

    annotations: Path
    images: Path
    out: Path
    dataset: str = "coco"
    checkpoint: Path | None = None
    arch: str | None = None
    oracle_model: bool = False
    skeleton: str | None = None
    flip: bool = False
    fixed_height: bool = False
    long_edge: int = 640
    height: int = 640
    multiple: int | None = None
    topk: int | None = None
    threshold: float | None = None
    dist_max: float | None = None
    person_threshold: float | None = None
    batch_size: int = 1
    workers: int = 2
    device: str = "auto"
    amp: bool = False
    limit: int | None = None
    test_dev: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------------------ data loading
def make_transform(width: int, height: int, opts: EvalOptions, multiple: int) -> ImageTransform:
    """The paper's test-time geometry: long edge with centre padding, or fixed height with right/bottom padding."""
    if opts.fixed_height:
        return fixed_height_transform(width, height, target_height=opts.height, multiple=multiple)
    return long_edge_transform(width, height, long_edge=opts.long_edge, multiple=multiple)


class EvalImages(Dataset):
    """Decodes one image and resamples it onto its canvas (runs in the DataLoader's worker processes)."""

    def __init__(self, image_dir: Path, records: list[dict[str, Any]], transforms: list[ImageTransform]):
        self.image_dir = image_dir
        self.records = records
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        rec = self.records[index]
        path = self.image_dir / rec["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        sample: dict[str, Any] = {"index": index, "image_id": rec["id"], "transform": self.transforms[index]}
        if image is None:
            sample["error"] = f"image {path} cannot be decoded"
            return sample
        h, w = image.shape[:2]
        if (w, h) != (rec["width"], rec["height"]):
            sample["error"] = (f"image {path} is {w}x{h}, the annotation file says {rec['width']}x{rec['height']}")
            return sample
        sample["canvas"] = self.transforms[index].warp(image)
        sample["load_ms"] = (time.perf_counter() - t0) * 1e3
        return sample


def _collate(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return samples


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)


def loader_context(workers: int):
    """Workers start from a fresh interpreter ("forkserver", else "spawn"), not by forking this process: a
    forked child inherits OpenCV's and OpenMP's thread pools in whatever state they were and can deadlock.
    A main script without a file (piped on stdin) cannot be re-imported there, so it gets "fork"."""
    if workers == 0:
        return None
    import multiprocessing
    import sys

    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    has_spec = getattr(main, "__spec__", None) is not None
    methods = multiprocessing.get_all_start_methods()
    if not has_spec and main_file is not None and not os.path.isfile(main_file) and "fork" in methods:
        LOG.debug("main script %s is not a file: DataLoader workers are forked", main_file)
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def canvas_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Index batches of at most ``batch_size`` images whose canvases have the same size (file order kept
    within a size)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(i)
    batches = []
    for idx in groups.values():
        batches.extend(idx[s:s + batch_size] for s in range(0, len(idx), batch_size))
    return sorted(batches, key=lambda b: b[0])


# ---------------------------------------------------------------------------------------------------- backends
class NetworkBackend:
    """A ``PoseNet`` on a device: uint8 canvases in, final-stack maps out. The network runs prepared for
    inference (batch norms folded, channels-last, fp16 autocast with ``amp`` on CUDA)."""

    def __init__(self, model: torch.nn.Module, device: torch.device, amp: bool = False):
        from models.precision import InferenceModel

        self.device = device
        self.amp = amp and device.type == "cuda"
        self.net = InferenceModel(model, device, precision="fp16" if self.amp else "fp32")
        self.model = self.net.model  # the prepared copy on ``device`` (its normalisation is the model's)
        self.contract: PoseContract = model.contract
        self.input_multiple = int(getattr(model, "input_multiple", 32))

    def prepare(self, canvases: list[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(canvases)).to(self.device, non_blocking=True)
        normalize = getattr(self.model, "normalize", None)
        if normalize is not None:
            return normalize(batch)
        return torch.stack([self.model.preprocess(c) for c in canvases]).to(self.device)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, samples: list[dict[str, Any]], flip: bool) -> tuple[dict, dict | None]:
        """Outputs for ``x`` and, with ``flip``, for the mirrored ``x`` (one forward pass of 2N images)."""
        inp = torch.cat([x, x.flip(3)]) if flip else x
        out = self.net(inp)
        if not flip:
            return out, None
        n = len(x)
        return ({k: (v[:n] if v is not None else None) for k, v in out.items()},
                {k: (v[n:] if v is not None else None) for k, v in out.items()})


class OracleBackend:
    """The ground-truth oracle in place of a network (``--oracle-model``)."""

    def __init__(self, oracle, device: torch.device):
        self.oracle = oracle
        self.device = device
        self.contract: PoseContract = oracle.contract
        self.input_multiple = oracle.input_multiple

    def prepare(self, canvases: list[np.ndarray]) -> torch.Tensor:
        # The same uint8 -> tensor step as a network; the oracle only reads the input's size.
        return torch.from_numpy(np.stack(canvases)).permute(0, 3, 1, 2).to(self.device)

    def infer(self, x: torch.Tensor, samples: list[dict[str, Any]], flip: bool) -> tuple[dict, dict | None]:
        size = (int(x.shape[3]), int(x.shape[2]))
        transforms = [s["transform"] for s in samples]
        ids = [s["image_id"] for s in samples]

        def run(flipped: bool) -> dict:
            out = self.oracle.infer_samples(transforms, ids, size, flipped=flipped)
            return {k: (v.to(self.device) if v is not None else None) for k, v in out.items()}

        return run(False), (run(True) if flip else None)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name} requested but CUDA is not available")
    return device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------- the pipeline
@dataclass
class EvalResult:
    """What one evaluation produced (``summary`` is what ``summary.json`` holds)."""

    results: list[dict[str, Any]]
    summary: dict[str, Any]
    image_ids: list[int] = field(default_factory=list)


def build_backend(opts: EvalOptions, dataset_gt: KeypointDataset, device: torch.device,
                  model: torch.nn.Module | None = None):
    """The network from ``--checkpoint`` (or ``model``, checked against ``--dataset``) or the oracle, plus
    a description of where the network came from."""
    spec = get_spec(opts.dataset)
    if opts.oracle_model:
        from eval.oracle_model import OracleModel

        contract = PoseContract(spec, skeleton_name=opts.skeleton or "default")
        return OracleBackend(OracleModel(dataset_gt, contract), device), {"oracle": True}
    info: Any = {}
    if model is None:
        if opts.checkpoint is None:
            raise InputError("give --checkpoint FILE or --oracle-model")
        from models.checkpoint import load_checkpoint

        model, info = load_checkpoint(opts.checkpoint, arch=opts.arch, map_location="cpu")
    contract: PoseContract = model.contract
    source = f"checkpoint {opts.checkpoint}" if opts.checkpoint is not None else f"the {type(model).__name__} model"
    if contract.spec.name != spec.name:
        raise InputError(f"{source} predicts {contract.spec.name} keypoints "
                         f"({contract.n_keypoints}), but --dataset is {spec.name} ({spec.n_keypoints} keypoints)")
    if opts.skeleton and opts.skeleton != contract.skeleton_name:
        raise InputError(f"{source} was trained with the {contract.skeleton_name!r} skeleton; "
                         f"--skeleton {opts.skeleton} cannot change it")
    ck = {"path": str(opts.checkpoint) if opts.checkpoint is not None else None,
          "arch": getattr(model, "arch", opts.arch), "contract": contract.to_dict()}
    if isinstance(info, dict):
        ck.update({k: info[k] for k in ("epoch", "step", "format") if k in info})
    return NetworkBackend(model, device, amp=opts.amp), ck


def decoder_config(opts: EvalOptions):
    from core.decoder import DecoderConfig

    kw = {k: getattr(opts, k) for k in ("topk", "threshold", "dist_max", "person_threshold")
          if getattr(opts, k) is not None}
    try:
        return DecoderConfig(**kw)
    except ValueError as exc:
        raise InputError(f"invalid decoder option: {exc}") from None


def _records(gt: KeypointDataset, opts: EvalOptions) -> list[dict[str, Any]]:
    images = gt.images if opts.limit is None else gt.images[:max(0, opts.limit)]
    return [{"id": img.id, "file_name": img.file_name, "width": img.width, "height": img.height} for img in images]


def _check_images(image_dir: Path, records: list[dict[str, Any]], annotations: Path) -> None:
    if not image_dir.is_dir():
        raise InputError(f"image folder {image_dir} does not exist" if not image_dir.exists()
                         else f"image folder {image_dir} is not a directory")
    missing = [r["file_name"] for r in records if not (image_dir / r["file_name"]).is_file()]
    if missing:
        raise InputError(f"{len(missing)} of {len(records)} images listed in {annotations} are missing from "
                         f"{image_dir} (e.g. {missing[0]})")


def run_evaluation(opts: EvalOptions, progress: bool = False, model: torch.nn.Module | None = None) -> EvalResult:
    """Run the whole evaluation and write ``results.json`` and ``summary.json`` into ``opts.out``.
    ``model`` (a ``PoseNet``) replaces ``opts.checkpoint`` for callers that hold a network already."""
    spec = get_spec(opts.dataset)
    gt = load_keypoint_annotations(opts.annotations, spec, require_annotations=not opts.test_dev)
    records = _records(gt, opts)
    if not records:
        raise InputError(f"annotation file {opts.annotations} lists no images")
    _check_images(opts.images, records, opts.annotations)
    if opts.batch_size < 1 or opts.workers < 0:
        raise InputError(f"--batch-size must be >= 1 and --workers >= 0, got {opts.batch_size}, {opts.workers}")
    size = opts.height if opts.fixed_height else opts.long_edge
    if size < 16:
        raise InputError(f"--{'height' if opts.fixed_height else 'long-edge'} must be at least 16 pixels, got {size}")
    device = resolve_device(opts.device)
    backend, checkpoint_info = build_backend(opts, gt, device, model)
    contract = backend.contract
    from core.decoder import decode, merge_flip

    config = decoder_config(opts)
    multiple = opts.multiple or backend.input_multiple
    transforms = [make_transform(r["width"], r["height"], opts, multiple) for r in records]
    batches = canvas_batches([t.dst_size for t in transforms], opts.batch_size)
    loader = DataLoader(EvalImages(opts.images, records, transforms), batch_sampler=batches,
                        num_workers=opts.workers, collate_fn=_collate, worker_init_fn=_worker_init,
                        multiprocessing_context=loader_context(opts.workers))

    n = len(records)
    pre_ms, net_ms, dec_ms = np.zeros(n), np.zeros(n), np.zeros(n)
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", desc="eval", leave=False)
    t_start = time.perf_counter()
    t_first, n_first = None, 0
    for samples in loader:
        if t_first is None:  # steady-state throughput starts once the workers deliver
            t_first, n_first = time.perf_counter(), len(samples)
        bad = next((s["error"] for s in samples if "error" in s), None)
        if bad:
            raise InputError(bad)
        idx = np.array([s["index"] for s in samples])
        m = len(samples)
        t0 = time.perf_counter()
        x = backend.prepare([s["canvas"] for s in samples])
        _sync(device)
        t1 = time.perf_counter()
        out, flipped = backend.infer(x, samples, opts.flip)
        _sync(device)
        t2 = time.perf_counter()
        heat, off, scales = out["heatmaps"], out["offsets"], out.get("scales")
        if flipped is not None:
            heat, off, scales = merge_flip(heat, off, flipped["heatmaps"], flipped["offsets"], contract,
                                           scales=scales, flipped_scales=flipped.get("scales"))
        poses = decode(heat, off, contract, config, scales=scales)
        for s, p in zip(samples, poses):
            results.extend(p.map_points(s["transform"].inverse).to_coco(s["image_id"]))
        t3 = time.perf_counter()
        pre_ms[idx] = np.array([s["load_ms"] for s in samples]) + (t1 - t0) * 1e3 / m
        net_ms[idx] = (t2 - t1) * 1e3 / m
        dec_ms[idx] = (t3 - t2) * 1e3 / m
        if bar is not None:
            bar.update(m)
    wall = time.perf_counter() - t_start
    if bar is not None:
        bar.close()

    image_ids = [r["id"] for r in records]
    metrics = None if opts.test_dev else evaluate(opts.dataset, gt, results, image_ids=image_ids)
    timing = {
        "preprocess_ms_median": float(np.median(pre_ms)),
        "network_ms_median": float(np.median(net_ms)),
        "decode_ms_median": float(np.median(dec_ms)),
        "total_ms_median": float(np.median(pre_ms + net_ms + dec_ms)),
        "wall_s": wall,
        "startup_s": (t_first or t_start) - t_start,
        "images_per_s": _throughput(n, n_first, wall, (t_first or t_start) - t_start),
        "note": "per-image shares of each batch; preprocess = decode+letterbox in a worker + normalisation",
    }
    summary = {
        "metrics": metrics,
        "n_images": n,
        "n_results": len(results),
        "dataset": opts.dataset,
        "annotations": str(opts.annotations),
        "checkpoint": checkpoint_info,
        "contract": contract.to_dict(),
        "decoder": asdict(config) if hasattr(config, "__dataclass_fields__") else repr(config),
        "settings": opts.to_dict(),
        "timing": timing,
        "device": _device_name(device),
        "torch": torch.__version__,
        "host": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(opts.out / "results.json", results)
    write_json_atomic(opts.out / "summary.json", summary, indent=2)
    return EvalResult(results=results, summary=summary, image_ids=image_ids)


def _throughput(n: int, n_first: int, wall: float, startup: float) -> float:
    """Images per second after the first batch arrived (worker start-up excluded), or overall for one batch."""
    steady = wall - startup
    if n > n_first and steady > 0:
        return (n - n_first) / steady
    return n / wall if wall > 0 else math.inf


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores)"


def format_timing(timing: dict[str, Any], n_images: int) -> str:
    """The per-image timing split as a small table."""
    rows = [("preprocess", timing["preprocess_ms_median"]), ("network", timing["network_ms_median"]),
            ("decode", timing["decode_ms_median"]), ("total", timing["total_ms_median"])]
    lines = ["stage        median ms/image", "-----------  ---------------"]
    lines += [f"{name:<11}  {value:15.2f}" for name, value in rows]
    lines.append(f"{n_images} images in {timing['wall_s']:.2f} s (worker start-up {timing['startup_s']:.2f} s): "
                 f"{timing['images_per_s']:.2f} images/s")
    return "\n".join(lines)


def summary_line(summary: dict[str, Any]) -> dict[str, Any]:
    """The final one-line JSON of ``gopose eval``."""
    m = summary.get("metrics") or {}
    t = summary["timing"]
    line = {"AP": m.get("AP"), "AP50": m.get("AP50"), "n_images": summary["n_images"],
            "images_per_s": round(t["images_per_s"], 3)}
    for k in ("preprocess_ms_median", "network_ms_median", "decode_ms_median", "total_ms_median"):
        line[k] = round(t[k], 3)
    line["device"] = summary["device"]
    return line
