"""Pose results: people with keypoints ``(P, K, 3)`` as ``x, y, score`` (score 0 = absent)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def keypoint_boxes(keypoints: np.ndarray) -> np.ndarray:
    """``(P, 4)`` float32 ``x0, y0, x1, y1`` around each person's present keypoints (zeros for none)."""
    kp = np.asarray(keypoints, np.float32)
    out = np.zeros((len(kp), 4), np.float32)
    if len(kp) == 0:
        return out
    vis = kp[:, :, 2] > 0
    x, y = kp[:, :, 0], kp[:, :, 1]
    out[:, 0] = np.where(vis, x, np.inf).min(axis=1)
    out[:, 1] = np.where(vis, y, np.inf).min(axis=1)
    out[:, 2] = np.where(vis, x, -np.inf).max(axis=1)
    out[:, 3] = np.where(vis, y, -np.inf).max(axis=1)
    out[~vis.any(axis=1)] = 0.0
    return out


def keypoint_box_areas(keypoints: np.ndarray) -> np.ndarray:
    """Area of each person's keypoint box, at least 1 (also for people without keypoints)."""
    b = keypoint_boxes(keypoints)
    return np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)


@dataclass
class Poses:
    """The people found in one image, sorted by descending score.

    ``keypoints`` is float32 ``(P, K, 3)``; a keypoint is absent exactly when its score is 0, so a keypoint
    at x = 0 or y = 0 is a valid one. ``scores`` is ``(P,)``. ``track_ids`` is filled by a tracker
    (-1 = untracked).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.keypoints.ndim != 3 or self.keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be (P, K, 3), got {self.keypoints.shape}")
        if len(self.scores) != len(self.keypoints):
            raise ValueError(f"{len(self.scores)} scores for {len(self.keypoints)} people")
        if self.track_ids is None:
            self.track_ids = np.full(len(self.keypoints), -1, dtype=np.int64)
        else:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
            if len(self.track_ids) != len(self.keypoints):
                raise ValueError(f"{len(self.track_ids)} track ids for {len(self.keypoints)} people")

    @classmethod
    def empty(cls, n_keypoints: int) -> "Poses":
        return cls(np.zeros((0, n_keypoints, 3), np.float32), np.zeros(0, np.float32))

    @classmethod
    def from_coco(cls, results: list[dict[str, Any]], n_keypoints: int) -> "Poses":
        """The inverse of :meth:`to_coco` for the results of one image (sorted by score)."""
        if not results:
            return cls.empty(n_keypoints)
        keypoints = np.asarray([r["keypoints"] for r in results], np.float32).reshape(len(results), n_keypoints, 3)
        scores = np.asarray([r["score"] for r in results], np.float32)
        order = np.argsort(-scores, kind="stable")
        return cls(keypoints[order], scores[order])

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def n_keypoints(self) -> int:
        return self.keypoints.shape[1]

    @property
    def visible(self) -> np.ndarray:
        """``(P, K)`` bool: keypoint present."""
        return self.keypoints[:, :, 2] > 0

    def boxes(self) -> np.ndarray:
        """``(P, 4)`` ``x0, y0, x1, y1`` around each person's present keypoints (zeros for none)."""
        return keypoint_boxes(self.keypoints)

    def select(self, index: np.ndarray) -> "Poses":
        """A subset of people (boolean mask, integer array or a single integer), keeping metadata."""
        if np.ndim(index) == 0:
            index = [int(index)]
        return Poses(self.keypoints[index], self.scores[index], self.track_ids[index], dict(self.meta))

    def map_points(self, fn) -> "Poses":
        """Apply ``fn((N, 2) xy) -> (N, 2) xy`` to every keypoint; scores are unchanged."""
        kp = self.keypoints.copy()
        if len(kp):
            xy = fn(kp[:, :, :2].reshape(-1, 2)).reshape(kp.shape[0], kp.shape[1], 2)
            kp[:, :, :2] = xy
        return Poses(kp, self.scores.copy(), self.track_ids.copy(), dict(self.meta))

    def to_coco(self, image_id: int, category_id: int = 1) -> list[dict[str, Any]]:
        """COCO keypoint results (absent keypoints written as 0, 0, 0)."""
        present = self.keypoints[:, :, 2] > 0
        xyv = np.where(present[:, :, None], self.keypoints, 0.0).astype(np.float64)
        xyv[:, :, :2] = np.round(xyv[:, :, :2], 2)
        # scores to 4 decimals, never rounded down to 0: a keypoint present with a low score stays present
        xyv[:, :, 2] = np.where(present, np.maximum(np.round(xyv[:, :, 2], 4), 1e-4), 0.0)
        return [{"image_id": int(image_id), "category_id": int(category_id), "keypoints": kp.reshape(-1).tolist(),
                 "score": float(score)} for kp, score in zip(xyv, self.scores)]
