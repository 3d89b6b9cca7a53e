"""The ``gopose eval`` pipeline: load and letterbox images in worker processes, batch canvases of equal size,
run a network (or the ground-truth oracle), optionally merge the flip test, decode, map poses back to the
image, write ``results.json`` / ``summary.json`` and evaluate with the official tools.
"""
from __future__ import annotations

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
from core.codec import Codec
from core.decoder import DecoderConfig, keypoint_candidates
from core.contract import PoseContract
from core.errors import InputError
from core.geometry import ImageTransform
from core.keypoints import get_spec
from core.io.annotations import KeypointDataset, load_keypoint_annotations
from eval.evaluate import check_ground_truth, evaluate, evaluate_coco_with_found, people_found
from eval.grouping_bound import perfect_grouping
from eval.misses import draw_misses
from models.precision import check_cuda_index
from models.predictor import Maps, Predictor

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
    long_edge: int | None = None         # None: the model's codec default (640 for the oracle)
    height: int | None = None            # with fixed_height; None: DEFAULT_HEIGHT
    multiple: int | None = None
    topk: int | None = None
    threshold: float | None = None
    dist_max: float | None = None
    person_threshold: float | None = None
    decoder: dict[str, Any] = field(default_factory=dict)  # any other DecoderConfig field (e.g. limb_norm)
    batch_size: int = 1
    workers: int = 2
    device: str = "auto"
    amp: bool = False
    limit: int | None = None
    split: str | None = None              # only the images whose 'split' field is this (LSPET: train / val)
    test_dev: bool = False
    backend: str = "torch"                # models.backends name, or 'auto' (recorded in cache_dir)
    cache_dir: Path | None = None         # INT8 models and the measured backend choice (needed by int8 / auto)
    calibration: tuple[str, ...] = ()     # INT8 calibration image folders (empty: the shared LSPET/COCO train)
    grouping_bound: bool = False          # also count the people a perfect grouping of the candidates finds
    draw_misses: Path | None = None       # pictures of the images with missed people go here

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------------------ data loading
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


# ------------------------------------------------------------------------------------------------ the predictor
class OracleNetwork:
    """The ground-truth oracle (``--oracle-model``) as the predictor's network: ``bind`` the batch's images
    before ``Predictor.infer``; the flip test's mirrored half (rows N..2N) gets the mirrored people."""

    def __init__(self, oracle) -> None:
        self.oracle = oracle
        self._batch: tuple[list[ImageTransform], list[int]] = ([], [])

    def bind(self, transforms: Sequence[ImageTransform], image_ids: Sequence[int]) -> None:
        self._batch = (list(transforms), list(image_ids))

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        transforms, ids = self._batch
        size = (int(x.shape[3]), int(x.shape[2]))
        parts = [self.oracle.infer_samples(transforms, ids, size, flipped=False)]
        if x.shape[0] == 2 * len(ids):
            parts.append(self.oracle.infer_samples(transforms, ids, size, flipped=True))
        elif x.shape[0] != len(ids):
            raise ValueError(f"oracle bound to {len(ids)} images, got a batch of {x.shape[0]}")
        return {k: (torch.cat([p[k] for p in parts]).to(x.device) if parts[0][k] is not None else None)
                for k in parts[0]}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r}: unknown device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    check_cuda_index(device, "--device")
    return device


@dataclass
class EvalResult:
    """What one evaluation produced (``summary`` is what ``summary.json`` holds)."""

    results: list[dict[str, Any]]
    summary: dict[str, Any]
    image_ids: list[int] = field(default_factory=list)


def _load_model(opts: EvalOptions, model: torch.nn.Module | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network from ``--checkpoint`` (or ``model``), checked against ``--dataset``."""
    info: Any = {}
    if model is None:
        if opts.checkpoint is None:
            raise InputError("give --checkpoint FILE or --oracle-model")
        from models.checkpoint import load_checkpoint

        model, info = load_checkpoint(opts.checkpoint, arch=opts.arch, map_location="cpu")
    contract: PoseContract = model.contract
    spec = get_spec(opts.dataset)
    source = f"checkpoint {opts.checkpoint}" if opts.checkpoint is not None else f"the {type(model).__name__} model"
    if contract.spec.name != spec.name:
        raise InputError(f"{source} predicts {contract.spec.name} keypoints "
                         f"({contract.n_keypoints}), but --dataset is {spec.name} ({spec.n_keypoints} keypoints)")
    ck = {"path": str(opts.checkpoint) if opts.checkpoint is not None else None,
          "arch": getattr(model, "arch", opts.arch), "contract": contract.to_dict()}
    if isinstance(info, dict):
        ck.update({k: info[k] for k in ("epoch", "step", "format") if k in info})
    return model, ck


def _sub_skeleton(network, codec: Codec, skeleton: str | None, source: str):
    """Decode through ``skeleton`` when it is a part of the model's (the channels of its limbs only)."""
    if not skeleton or skeleton == codec.contract.skeleton_name:
        return network, codec
    try:
        sub, index = codec.with_skeleton(skeleton)
    except (KeyError, ValueError) as exc:
        raise InputError(f"{source} was trained with the {codec.contract.skeleton_name!r} skeleton; --skeleton "
                         f"{skeleton} is not a part of it ({exc.args[0] if exc.args else exc})") from None

    def selected(x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out = dict(network(x))
        out["offsets"] = Codec.select_limbs(out["offsets"], index)
        return out

    return selected, sub


def _backend(opts: EvalOptions, runner, size: int):
    """``(backend name, network)``: ``runner`` (PyTorch) or the ``--backend`` runner of its network."""
    if opts.backend == "torch":
        return "torch", runner
    from eval.calibration import default_images
    from models.backends import select

    m = int(getattr(runner.model, "input_multiple", 32))
    name, network, _ = select(runner.model, opts.backend, size=-(-int(size) // m) * m, cache_dir=opts.cache_dir,
                              calibration=lambda: default_images(opts.calibration), torch_runner=runner,
                              device=runner.device)
    return name, network


#: the canvas height of ``--fixed-height`` without ``--height`` (the paper's CrowdPose protocol)
DEFAULT_HEIGHT = 640


def canvas_size(opts: EvalOptions) -> tuple[int | None, int | None]:
    """``(long_edge, fixed_height)`` of the run (None: the model's long edge / no fixed height); a size option the
    chosen canvas would silently ignore is an ``InputError``."""
    if opts.fixed_height:
        if opts.long_edge is not None:
            raise InputError(f"--long-edge {opts.long_edge} has no effect with --fixed-height (give --height)")
        return None, DEFAULT_HEIGHT if opts.height is None else opts.height
    if opts.height is not None:
        raise InputError(f"--height {opts.height} needs --fixed-height (without it --long-edge sizes the canvas)")
    return opts.long_edge, None


def _multiple(opts: EvalOptions, default: int) -> int:
    """``--multiple`` when given (0 too: the predictor refuses it), else the network's own."""
    return default if opts.multiple is None else opts.multiple


def build_predictor(opts: EvalOptions, dataset_gt: KeypointDataset, device: torch.device,
                    model: torch.nn.Module | None = None) -> tuple[Predictor, OracleNetwork | None, dict[str, Any]]:
    """The predictor ``gopose eval`` runs (the one the app and annotate run), the oracle network when it stands in
    for a network, and a description of where the network came from."""
    decoder_opts = {**opts.decoder, **{k: getattr(opts, k) for k in ("topk", "threshold", "dist_max",
                                                                     "person_threshold")}}
    long_edge, fixed_height = canvas_size(opts)
    geometry = {"long_edge": long_edge, "fixed_height": fixed_height, "flip": opts.flip}
    try:
        if opts.oracle_model:
            from eval.oracle_model import OracleModel

            spec = get_spec(opts.dataset)
            codec = Codec(PoseContract(spec, skeleton_name=opts.skeleton or spec.default_skeleton), long_edge=640)
            oracle = OracleNetwork(OracleModel(dataset_gt, codec))
            predictor = Predictor(oracle, codec, normalize=lambda b: b.permute(0, 3, 1, 2),
                                  input_multiple=_multiple(opts, OracleModel.input_multiple), device=device,
                                  decoder=codec.decoder_config(**decoder_opts), **geometry)
            return predictor, oracle, {"oracle": True}
        from models.precision import InferenceModel

        net, ck = _load_model(opts, model)
        runner = InferenceModel(net, device, precision="fp16" if opts.amp and device.type == "cuda" else "fp32")
        ck["backend"], backend_net = _backend(opts, runner, fixed_height or long_edge or net.codec.long_edge)
        network, codec = _sub_skeleton(backend_net, net.codec, opts.skeleton, ck["path"] or "the model")
        predictor = Predictor(network, codec, normalize=runner.model.normalize,
                              input_multiple=_multiple(opts, int(getattr(net, "input_multiple", 32))),
                              device=device, decoder=codec.decoder_config(**decoder_opts), **geometry)
        return predictor, None, ck
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(f"invalid decoder option: {exc}") from None


def _records(gt: KeypointDataset, opts: EvalOptions) -> list[dict[str, Any]]:
    images = gt.images
    if opts.split is not None:
        split = {int(r["id"]): r.get("split") for r in gt.raw["images"]}
        if not any(v is not None for v in split.values()):
            raise InputError(f"annotation file {opts.annotations} has no 'split' field; --split {opts.split} "
                             "cannot select images")
        if opts.split not in split.values():
            names = ", ".join(sorted({str(v) for v in split.values() if v is not None}))
            raise InputError(f"annotation file {opts.annotations} has no image of --split {opts.split} "
                             f"(its splits: {names})")
        images = [img for img in images if split[img.id] == opts.split]
    images = images if opts.limit is None else images[:opts.limit]
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
    if opts.limit is not None and opts.limit < 1:
        raise InputError(f"--limit must be at least 1, got {opts.limit}")
    if not opts.test_dev:  # what the evaluation needs is checked before any inference
        check_ground_truth(gt, opts.dataset)
    records = _records(gt, opts)
    if not records:
        raise InputError(f"annotation file {opts.annotations} lists no images")
    _check_images(opts.images, records, opts.annotations)
    if opts.batch_size < 1 or opts.workers < 0:
        raise InputError(f"--batch-size must be >= 1 and --workers >= 0, got {opts.batch_size}, {opts.workers}")
    long_edge, fixed_height = canvas_size(opts)
    size = fixed_height if opts.fixed_height else long_edge
    if size is not None and size < 16:
        raise InputError(f"--{'height' if opts.fixed_height else 'long-edge'} must be at least 16 pixels, got {size}")
    for wanted, option in ((opts.grouping_bound, "--grouping-bound"), (opts.draw_misses, "--draw-misses")):
        if wanted and (opts.dataset != "coco" or opts.test_dev):
            raise InputError(f"{option} needs COCO ground truth (--dataset coco, not --test-dev)")
    device = resolve_device(opts.device)
    predictor, oracle, checkpoint_info = build_predictor(opts, gt, device, model)
    contract = predictor.contract
    config = predictor.decoder_config
    transforms = [predictor.transform_for(r["width"], r["height"]) for r in records]
    batches = canvas_batches([t.dst_size for t in transforms], opts.batch_size)
    loader = DataLoader(EvalImages(opts.images, records, transforms), batch_sampler=batches,
                        num_workers=opts.workers, collate_fn=_collate, worker_init_fn=_worker_init,
                        multiprocessing_context=loader_context(opts.workers))

    n = len(records)
    pre_ms, net_ms, dec_ms = np.zeros(n), np.zeros(n), np.zeros(n)
    results: list[dict[str, Any]] = []
    bound: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", desc="eval", leave=False)
    t_start = time.perf_counter()
    t_first = None
    for samples in loader:
        if t_first is None:  # steady-state throughput starts once the workers deliver
            t_first = time.perf_counter()
        bad = next((s["error"] for s in samples if "error" in s), None)
        if bad:
            raise InputError(bad)
        idx = np.array([s["index"] for s in samples])
        m = len(samples)
        if oracle is not None:
            oracle.bind([s["transform"] for s in samples], [s["image_id"] for s in samples])
        maps = predictor.infer([s["canvas"] for s in samples], [s["transform"] for s in samples])
        for s, p in zip(samples, predictor.decode(maps)):
            results.extend(p.to_coco(s["image_id"]))
        if opts.grouping_bound:
            bound.extend(_perfect_grouping(maps, samples, gt, contract, config))
        pre_ms[idx] = np.array([s["load_ms"] for s in samples]) + maps.timings["preprocess"]
        net_ms[idx] = maps.timings["network"]
        dec_ms[idx] = maps.timings["decode"]
        if bar is not None:
            bar.update(m)
    wall = time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(opts.out / "results.json", results)  # kept whatever the evaluation below says

    image_ids = [r["id"] for r in records]
    metrics, found, misses = None, None, None
    if opts.dataset == "coco" and not opts.test_dev:  # AP and the people-found rows from one evaluation
        coco = evaluate_coco_with_found(gt, results, image_ids)
        metrics, found = coco.metrics, coco.found
        if opts.draw_misses:
            opts.draw_misses.mkdir(parents=True, exist_ok=True)
            misses = len(draw_misses(gt, results, coco.matched, opts.images, opts.draw_misses))
        if opts.grouping_bound:
            by_row = {(r["size"], r["keypoints"]): r["found"] for r in people_found(gt, bound, image_ids)}
            for row in found:
                row["found_perfect_grouping"] = by_row[(row["size"], row["keypoints"])]
    elif not opts.test_dev:
        metrics = evaluate(opts.dataset, gt, results, image_ids=image_ids)
    timing = {
        "preprocess_ms_median": float(np.median(pre_ms)),
        "network_ms_median": float(np.median(net_ms)),
        "decode_ms_median": float(np.median(dec_ms)),
        "total_ms_median": float(np.median(pre_ms + net_ms + dec_ms)),
        "wall_s": wall,
        "startup_s": (t_first or t_start) - t_start,
        "images_per_s": _throughput(n, wall, (t_first or t_start) - t_start),
        "note": "per-image shares of each batch; preprocess = decode+letterbox in a worker + normalisation",
    }
    summary = {
        "metrics": metrics,
        "found": found,
        "misses_drawn": misses,
        "n_images": n,
        "n_results": len(results),
        "dataset": opts.dataset,
        "annotations": str(opts.annotations),
        "checkpoint": checkpoint_info,
        "contract": contract.to_dict(),
        "decoder": asdict(config) if hasattr(config, "__dataclass_fields__") else repr(config),
        "settings": opts.to_dict(),
        "input": {"long_edge": None if predictor.fixed_height else predictor.long_edge,  # what ran, defaults
                  "fixed_height": predictor.fixed_height, "multiple": predictor.multiple, "flip": predictor.flip},
        "timing": timing,
        "device": _device_name(device),
        "torch": torch.__version__,
        "host": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(opts.out / "summary.json", summary, indent=2)
    return EvalResult(results=results, summary=summary, image_ids=image_ids)


def _perfect_grouping(maps: Maps, samples: list[dict[str, Any]], gt: KeypointDataset, contract: PoseContract,
                      config: DecoderConfig) -> list[dict[str, Any]]:
    """COCO results of :func:`eval.grouping_bound.perfect_grouping` for one batch of network maps."""
    out = []
    for s, (xy, score) in zip(samples, keypoint_candidates(maps.heatmaps, contract, config)):
        in_image = s["transform"].inverse(xy)
        out.extend(perfect_grouping(in_image, score, gt.image(s["image_id"])).to_coco(s["image_id"]))
    return out


def _throughput(n: int, wall: float, startup: float) -> float:
    """Images per second from the first batch's arrival on (worker start-up excluded): all ``n`` images, the
    first batch's too, are processed in that time."""
    steady = wall - startup
    if steady > 0:
        return n / steady
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
