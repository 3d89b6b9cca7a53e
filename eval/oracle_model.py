"""An "oracle network" for ``gopose eval --oracle-model``: it answers every batch with the encoded ground truth.

For each image of a batch it maps the image's annotated people into the network-input canvas with the same
transform the image went through (keypoints via ``transform.apply``, person scale = sqrt(area) x the
transform's scale), encodes them with the codec's encoder and returns the maps with the layout of
``PoseNet.infer``. For the flip test it answers the mirrored input as a perfect network would: people mirrored
and left/right keypoint channels swapped. Everything after it (flip merge, decoding, inverse transform,
evaluation) is the code a real network's output goes through.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from core.codec import Codec
from core.contract import PoseContract
from core.encoder import person_scales_from_keypoints
from core.geometry import ImageTransform, hflip_transform
from core.io.annotations import KeypointDataset


class OracleModel:
    """Encoded ground truth of the images of ``dataset`` as network outputs of a model with ``codec`` (a bare
    contract gets the default codec)."""

    arch = "oracle"
    input_multiple = 128

    def __init__(self, dataset: KeypointDataset, codec: Codec | PoseContract):
        codec = codec if isinstance(codec, Codec) else Codec(codec)
        self.dataset = dataset
        self.codec = codec
        self.contract = codec.contract
        self.encoder = codec.encoder()
        self._perm = np.asarray(self.contract.spec.flip_permutation, dtype=np.int64)

    def people(self, image_id: int, transform: ImageTransform, flipped: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(P, K, 3)`` in canvas pixels and person scales ``(P,)`` of the image's annotated people."""
        img = self.dataset.image(image_id)
        keep = img.is_person
        kps = img.keypoints[keep].copy()
        area = img.area[keep]
        scale = transform.zoom
        shape = kps.shape[:2] + (2,)
        kps[:, :, :2] = transform.apply(kps[:, :, :2].reshape(-1, 2)).reshape(shape)
        fallback = person_scales_from_keypoints(kps)
        scales = np.where(area > 0, np.sqrt(np.maximum(area, 0.0)) * scale, fallback).astype(np.float32)
        if flipped:
            w, h = transform.dst_size
            kps[:, :, :2] = hflip_transform(w, h).apply(kps[:, :, :2].reshape(-1, 2)).reshape(shape)
            kps = kps[:, self._perm]  # a mirrored left shoulder looks like a right shoulder
        return kps, scales

    def infer_samples(self, transforms: Sequence[ImageTransform], image_ids: Sequence[int],
                      input_size: tuple[int, int], flipped: bool = False) -> dict[str, torch.Tensor | None]:
        """``heatmaps (N,K,h,w)``, ``offsets (N,2L,h,w)`` (input px) and ``scales`` for a batch of canvases."""
        heat, off, kscale = [], [], []
        for transform, image_id in zip(transforms, image_ids):
            if tuple(transform.dst_size) != tuple(input_size):
                raise ValueError(f"canvas {transform.dst_size} does not match the batch input {input_size}")
            kps, scales = self.people(image_id, transform, flipped)
            t = self.encoder.encode(kps, input_size, person_scales=scales)
            heat.append(t.heatmaps)
            off.append(t.offsets)
            kscale.append(t.keypoint_scale)
        scales_t = torch.from_numpy(np.stack(kscale)) if self.contract.with_scale else None
        return {"heatmaps": torch.from_numpy(np.stack(heat)), "offsets": torch.from_numpy(np.stack(off)),
                "scales": scales_t}
