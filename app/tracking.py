"""Person tracking across frames: greedy matching by OKS (and box IoU) with a bounded lost-track memory.

Each frame's people are matched to the live tracks by a similarity matrix (the larger of the object keypoint
similarity and the box IoU); pairs are accepted greedily from the most similar down while above
``min_similarity``. Unmatched people start new tracks; tracks unseen for ``max_lost`` frames are forgotten, and
at most ``max_tracks`` are remembered, so memory stays bounded on endless streams.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.keypoints import KeypointSpec
from core.poses import Poses, keypoint_box_areas


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``(N, 4)`` and ``(M, 4)`` ``x0, y0, x1, y1`` boxes -> ``(N, M)``."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def pairwise_oks(a: np.ndarray, b: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS between ``(N, K, 3)`` and ``(M, K, 3)`` poses over keypoints present in both -> ``(N, M)``.

    The scale is the area of the union box of each pair's present keypoints (as COCO uses the object area).
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    both = (a[:, None, :, 2] > 0) & (b[None, :, :, 2] > 0)  # (N, M, K)
    dx = a[:, None, :, 0] - b[None, :, :, 0]
    dy = a[:, None, :, 1] - b[None, :, :, 1]
    area = np.maximum(keypoint_box_areas(a)[:, None], keypoint_box_areas(b)[None, :]).astype(np.float32)  # (N, M)
    inv = (1.0 / (2.0 * (2.0 * np.asarray(sigmas, np.float32)) ** 2)).astype(np.float32)  # 1 / (2 var)
    e = (dx * dx + dy * dy) * inv / area[..., None]
    sim = (np.exp(-e) * both).sum(-1)
    n = both.sum(-1)
    return np.where(n > 0, sim / np.maximum(n, 1), 0.0)


def greedy_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken greedily by descending similarity, each row and column at most once."""
    if similarity.size == 0:
        return []
    order = np.argsort(-similarity, axis=None, kind="stable")
    rows, cols = np.unravel_index(order, similarity.shape)
    keep = similarity[rows, cols] > threshold
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for r, c in zip(rows[keep].tolist(), cols[keep].tolist()):
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


@dataclass
class _Track:
    track_id: int
    keypoints: np.ndarray  # (K, 3) last matched pose
    lost: int = 0
    hits: int = 1


class Tracker:
    """Assigns stable ``track_ids`` to the people of consecutive frames."""

    def __init__(self, spec: KeypointSpec, *, min_similarity: float = 0.3, max_lost: int = 30,
                 max_tracks: int = 256) -> None:
        self.sigmas = np.asarray(spec.sigmas, dtype=np.float64)
        self.min_similarity = float(min_similarity)
        self.max_lost = int(max_lost)
        self.max_tracks = int(max_tracks)
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def active_tracks(self) -> int:
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track (after a seek, for example); ids keep counting up."""
        self._tracks = []

    def update(self, poses: Poses) -> Poses:
        """Match ``poses`` to the tracks and return them with ``track_ids`` set (the input is not modified)."""
        out = Poses(poses.keypoints, poses.scores, None, dict(poses.meta))
        ids = np.full(len(poses), -1, dtype=np.int64)
        if self._tracks and len(poses):
            prev = np.stack([t.keypoints for t in self._tracks])
            sim = np.maximum(pairwise_oks(poses.keypoints, prev, self.sigmas),
                             box_iou(poses.boxes(), Poses(prev, np.zeros(len(prev))).boxes()))
            pairs = greedy_match(sim, self.min_similarity)
        else:
            pairs = []
        matched_tracks = set()
        for det, tr in pairs:
            track = self._tracks[tr]
            track.keypoints = poses.keypoints[det].copy()
            track.lost = 0
            track.hits += 1
            ids[det] = track.track_id
            matched_tracks.add(tr)
        for i, track in enumerate(self._tracks):
            if i not in matched_tracks:
                track.lost += 1
        for det in np.flatnonzero(ids < 0):
            if not (poses.keypoints[det, :, 2] > 0).any():
                continue
            self._tracks.append(_Track(self._next_id, poses.keypoints[det].copy()))
            ids[det] = self._next_id
            self._next_id += 1
        self._tracks = [t for t in self._tracks if t.lost <= self.max_lost]
        if len(self._tracks) > self.max_tracks:  # keep the most recently seen
            self._tracks.sort(key=lambda t: t.lost)
            self._tracks = self._tracks[: self.max_tracks]
        out.track_ids = ids
        return out
