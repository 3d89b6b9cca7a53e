"""One-Euro smoothing of tracked keypoints (Casiez et al., CHI 2012), vectorised over people x keypoints.

The filter is a low-pass whose cut-off rises with speed: still keypoints are smoothed strongly (no jitter),
moving ones follow with little lag. Positions are in pixels and speeds in pixels per second; ``beta`` is in
Hz per (pixel/second). State is kept per track id and dropped after ``max_age`` seconds unseen (before it
could be used: a track seen again after a longer gap, or after time went back, starts afresh). The pipeline
also resets the smoother, with the tracker, at a seek.
"""
from __future__ import annotations

import math

import numpy as np

from core.poses import Poses


def _alpha(cutoff: np.ndarray | float, dt: float | np.ndarray) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One-Euro filter over arrays of any shape (one independent filter per element)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)

    def step(self, x: np.ndarray, x_prev: np.ndarray, dx_prev: np.ndarray,
             dt: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One update: returns ``(x_hat, dx_hat)`` from the new raw value and the previous filtered state."""
        dx = (x - x_prev) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = a_d * dx + (1 - a_d) * dx_prev
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        a = _alpha(cutoff, dt)
        return a * x + (1 - a) * x_prev, dx_hat


class PoseSmoother:
    """Smooths the keypoints of tracked people (``track_ids >= 0``); untracked people pass unchanged."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0,
                 max_age: float = 2.0, default_fps: float = 25.0) -> None:
        self.filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.max_age = float(max_age)
        self.default_dt = 1.0 / default_fps
        # track id -> (x_hat (K, 2), dx_hat (K, 2), valid (K,) bool, last timestamp)
        self._state: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}

    @property
    def n_states(self) -> int:
        return len(self._state)

    def reset(self) -> None:
        self._state.clear()

    def update(self, poses: Poses, timestamp: float) -> Poses:
        """Return ``poses`` with smoothed coordinates (scores and ids unchanged); ``timestamp`` in seconds."""
        self._expire(timestamp)
        out = Poses(poses.keypoints.copy(), poses.scores, poses.track_ids, dict(poses.meta))
        rows = np.flatnonzero(poses.track_ids >= 0)
        if len(rows):
            xy = poses.keypoints[rows, :, :2].astype(np.float64)  # (P, K, 2)
            present = (poses.keypoints[rows, :, 2] > 0) & np.isfinite(xy).all(-1)  # (P, K); NaN: not carried on
            x_prev = xy.copy()
            dx_prev = np.zeros_like(xy)
            had = np.zeros_like(present)
            dts = np.full(len(rows), self.default_dt)
            for i, tid in enumerate(poses.track_ids[rows].tolist()):
                st = self._state.get(tid)
                if st is None:
                    continue
                x_prev[i], dx_prev[i], had[i] = st[0], st[1], st[2]
                dt = timestamp - st[3]
                dts[i] = dt if dt > 1e-6 else self.default_dt
            dt = dts[:, None, None]
            x_hat, dx_hat = self.filter.step(xy, x_prev, dx_prev, dt)
            use = (present & had)[..., None]
            new_x = np.where(use, x_hat, xy)
            new_dx = np.where(use, dx_hat, 0.0)
            out.keypoints[rows, :, :2] = new_x.astype(np.float32)
            for i, tid in enumerate(poses.track_ids[rows].tolist()):
                self._state[tid] = (new_x[i], new_dx[i], present[i].copy(), float(timestamp))
        return out

    def _expire(self, timestamp: float) -> None:
        """Drop the states unseen for more than ``max_age`` seconds or newer than ``timestamp`` (time went back):
        a track coming back after a gap starts afresh instead of being blended with where it was long ago."""
        stale = [tid for tid, st in self._state.items() if timestamp - st[3] > self.max_age or timestamp < st[3]]
        for tid in stale:
            del self._state[tid]
