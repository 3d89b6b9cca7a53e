"""The encode -> decode upper bound ("oracle"): ground truth encoded to stride-4 maps, decoded by the same decoder
a network's output goes through, mapped back to the image and evaluated with the official protocol."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.contract import PoseContract
from core.decoder import DecoderConfig, decode
from core.geometry import long_edge_transform
from core.keypoints import get_spec
from core.io.annotations import KeypointDataset, load_keypoint_annotations
from eval.evaluate import check_ground_truth, evaluate
from eval.oracle_model import OracleModel

LOG = logging.getLogger(__name__)

# The paper's evaluation settings for the decoder.
PAPER_DECODER = DecoderConfig(topk=32, threshold=0.04, dist_max=40.0)


def damage_maps(heatmaps: np.ndarray, offsets: np.ndarray, rng: np.random.Generator, noise: float = 0.0,
                blur: float = 0.0, peak_scale: float = 1.0, offset_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Make encoded maps look like a network's: Gaussian blur (flattened, merged peaks; ``blur`` in cells),
    peak heights scaled, additive noise on heatmaps, and noise on offsets (input px)."""
    import cv2

    hm = heatmaps.astype(np.float32) * peak_scale
    if blur > 0:
        hm = np.stack([cv2.GaussianBlur(c, (0, 0), blur) for c in hm])
        hm *= heatmaps.max() * peak_scale / max(float(hm.max()), 1e-6)
    if noise > 0:
        hm = hm + rng.normal(0, noise, hm.shape).astype(np.float32)
    off = offsets.astype(np.float32)
    if offset_noise > 0:
        off = off + rng.normal(0, offset_noise, off.shape).astype(np.float32)
    return hm, off


def build_oracle(annotations: str | Path | KeypointDataset, dataset: str = "coco",
                 skeleton: str | None = None) -> OracleModel:
    """The encoded-ground-truth "network" of an annotation file (its ``dataset`` and ``contract`` attached)."""
    spec = get_spec(dataset)
    data = annotations if isinstance(annotations, KeypointDataset) else load_keypoint_annotations(annotations, spec)
    return OracleModel(data, PoseContract(spec, skeleton_name=skeleton or spec.default_skeleton))


def run_oracle(annotations: str | Path | KeypointDataset, dataset: str = "coco", long_edge: int = 640,
               skeleton: str | None = None, image_ids: Sequence[int] | None = None,
               decoder: DecoderConfig | None = None, damage: dict[str, float] | None = None,
               seed: int = 0) -> dict[str, Any]:
    """Encode every image's ground truth at ``long_edge``, decode it, evaluate. Returns the metrics plus
    ``decode_ms_median`` (decoding one image's stride-4 maps to poses in original image coordinates) and
    ``encode_ms_median``. ``damage`` (keyword arguments of :func:`damage_maps`) degrades the maps first."""
    oracle = build_oracle(annotations, dataset, skeleton)
    data, contract = oracle.dataset, oracle.contract
    check_ground_truth(data, dataset)  # before the encode/decode loop, not after it
    cfg = decoder or PAPER_DECODER
    ids = list(image_ids) if image_ids is not None else data.image_ids
    rng = np.random.default_rng(seed)
    results: list[dict] = []
    decode_ms, encode_ms = [], []
    for image_id in ids:
        img = data.image(image_id)
        transform = long_edge_transform(img.width, img.height, long_edge)
        kps, scales = oracle.people(image_id, transform)
        t0 = time.perf_counter()
        targets = oracle.encoder.encode(kps, transform.dst_size, person_scales=scales)
        encode_ms.append((time.perf_counter() - t0) * 1e3)
        hm, off = targets.heatmaps, targets.offsets
        if damage:
            hm, off = damage_maps(hm, off, rng, **damage)
        hm_t, off_t = torch.from_numpy(hm[None]), torch.from_numpy(off[None])
        if not decode_ms:  # warm-up: torch's first calls of each kernel are slow
            decode(hm_t, off_t, contract, cfg)
        t0 = time.perf_counter()
        poses = decode(hm_t, off_t, contract, cfg)[0].map_points(transform.inverse)
        decode_ms.append((time.perf_counter() - t0) * 1e3)
        results.extend(poses.to_coco(image_id))
    metrics = evaluate(dataset, data, results, image_ids=ids)
    metrics.update(
        decode_ms_median=float(np.median(decode_ms)) if decode_ms else 0.0,
        decode_ms_p90=float(np.percentile(decode_ms, 90)) if decode_ms else 0.0,
        encode_ms_median=float(np.median(encode_ms)) if encode_ms else 0.0,
        images=len(ids), skeleton=contract.skeleton_name, limbs=contract.n_limbs, long_edge=long_edge,
        peak_mode=cfg.peak_mode,
    )
    return metrics
