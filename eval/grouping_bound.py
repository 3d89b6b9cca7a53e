"""What a perfect grouping could find: each annotated person assembled from the network's own keypoint candidates.

The decoder can only group the candidates the heatmaps give it (peaks above the threshold, top-K per type). For
every annotated person this module builds the pose an oracle grouping would pick from them: per labelled keypoint,
the nearest candidate of its type. Evaluated like any results (:func:`eval.evaluate.people_found`), these poses
bound what any grouping of the same candidates can find, so a gap between the decoded people-found table and this
one is the grouping's, and what neither finds is the network's.
"""
from __future__ import annotations

import numpy as np

from core.io.annotations import ImageAnnotations
from core.poses import Poses


def perfect_grouping(xy: np.ndarray, score: np.ndarray, image: ImageAnnotations) -> Poses:
    """One pose per annotated person of ``image`` (not crowd regions, at least one labelled keypoint) from the
    candidates ``xy`` ``(K, T, 2)`` / ``score`` ``(K, T)`` in image pixels: the nearest candidate of each labelled
    keypoint's type (absent where the type has none). A pose's score is its OKS-like closeness to its own person,
    so pycocotools matches the best-built poses first."""
    people = np.flatnonzero(image.is_person)
    k = xy.shape[0]
    if len(people) == 0:
        return Poses.empty(k)
    gt = image.keypoints[people].astype(np.float64)                                 # (P, K, 3)
    d2 = ((xy[None].astype(np.float64) - gt[:, :, None, :2]) ** 2).sum(-1)        # (P, K, T)
    d2 = np.where(score[None] > 0, d2, np.inf)
    nearest = d2.argmin(-1)                                                         # (P, K)
    best = np.take_along_axis(d2, nearest[..., None], -1)[..., 0]                   # (P, K) squared distances
    usable = (gt[:, :, 2] > 0) & np.isfinite(best)
    types = np.arange(k)[None]
    kp_xy, kp_s = xy[types, nearest], score[types, nearest]                       # (P, K, 2), (P, K)
    keypoints = np.concatenate([kp_xy, kp_s[..., None]], -1).astype(np.float32)
    keypoints[~usable] = 0.0
    closeness = np.exp(-np.where(usable, best, 0.0) / np.maximum(image.area[people], 1.0)[:, None])
    scores = (closeness * usable).sum(1) / np.maximum((gt[:, :, 2] > 0).sum(1), 1)
    order = np.argsort(-scores, kind="stable")
    return Poses(keypoints[order], scores[order].astype(np.float32))
