"""Person tracking across frames: optimal (Hungarian) matching of people to tracks by keypoint similarity.

Each frame:

1. **Gate**: only people with at least ``min_keypoints`` present keypoints and a score of at least
   ``min_score`` can match or create a track; the others (decoder leftovers such as single-keypoint "people")
   get ``track_id = -1``. A keypoint with a NaN or infinite coordinate counts as absent.
2. **Similarity**: the larger of the object keypoint similarity (OKS) and the box IoU between each person and
   each track's pose *predicted* for this frame (its last pose moved by its velocity, for up to
   ``predict_frames`` frames; people crossing each other then stay apart). The OKS is summed over the keypoints
   both poses share and divided by the *larger* of their keypoint counts, so a partial pose can reach at most
   its share of the other: a 1-keypoint fragment scores at most 1/n against an n-keypoint person and can never
   take that person's track. A track keeps the keypoints its person stops showing (occlusion) for
   ``keypoint_memory`` frames, moved along with the person, so the whole person is recognised when it reappears;
   these carried keypoints add to the sum but not to the track's count (the keypoints its person showed when
   last matched), so a person half hidden, or walking out of the image, still matches its own track.
3. **Assignment**: confirmed tracks first, then tentative ones, each by an optimal assignment
   (``scipy.optimize.linear_sum_assignment``) over the pairs above ``min_similarity``.
4. **Life cycle**: an unmatched person starts a *tentative* track. It is *confirmed* after ``min_hits``
   matches in consecutive frames and only then gets an id; until then its person shows ``track_id = -1``, and a
   tentative track missed once is dropped (a one-frame false detection never gets an id, and ids have no holes).
   The people of the first frame with any (gated) person after construction or :meth:`Tracker.reset` are
   confirmed at once: no identity exists yet that they could steal, and people seen from the start of a video
   get their id from its first frame. A confirmed track unmatched for more than ``max_lost`` frames is
   forgotten, and at most ``max_tracks`` tracks are kept (the stalest evicted first), so memory stays bounded.

:meth:`Tracker.legacy` builds the matching of the first release (mean OKS over shared keypoints, greedy,
no gates, no tentative state, no motion prediction) for before/after comparisons (``gopose bench tracking``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.keypoints import KeypointSpec
from core.poses import Poses, keypoint_box_areas, keypoint_boxes

OKS_NORMS = ("larger", "shared")
ASSIGNMENTS = ("hungarian", "greedy")


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


def pairwise_oks(a: np.ndarray, b: np.ndarray, sigmas: np.ndarray, norm: str = "larger",
                 counts_b: np.ndarray | None = None) -> np.ndarray:
    """OKS between ``(N, K, 3)`` and ``(M, K, 3)`` poses -> ``(N, M)``, summed over the keypoints present in both.

    ``norm="larger"`` divides by the larger of the two poses' keypoint counts (a partial pose scores at most
    its share of the other; ``counts_b``, when given, replaces ``b``'s counts); ``"shared"`` by the number of
    shared keypoints (a mean, with which a fragment matching one keypoint scores like a whole person). The
    scale is the larger keypoint-box area of the pair (as COCO uses the object area).
    """
    if norm not in OKS_NORMS:
        raise ValueError(f"norm must be one of {OKS_NORMS}, got {norm!r}")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    va, vb = a[:, :, 2] > 0, b[:, :, 2] > 0
    both = va[:, None, :] & vb[None, :, :]  # (N, M, K)
    dx = a[:, None, :, 0] - b[None, :, :, 0]
    dy = a[:, None, :, 1] - b[None, :, :, 1]
    area = np.maximum(keypoint_box_areas(a)[:, None], keypoint_box_areas(b)[None, :]).astype(np.float32)  # (N, M)
    inv = (1.0 / (2.0 * (2.0 * np.asarray(sigmas, np.float32)) ** 2)).astype(np.float32)  # 1 / (2 var)
    e = (dx * dx + dy * dy) * inv / area[..., None]
    sim = (np.exp(-e) * both).sum(-1)
    if norm == "larger":
        nb = vb.sum(1) if counts_b is None else np.asarray(counts_b)
        n = np.maximum(va.sum(1)[:, None], nb[None, :])
    else:
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


def optimal_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) above ``threshold`` maximising the total similarity (Hungarian assignment)."""
    if similarity.size == 0:
        return []
    weights = np.where(similarity > threshold, similarity, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    keep = weights[rows, cols] > 0
    return list(zip(rows[keep].tolist(), cols[keep].tolist()))


def _finite_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """``keypoints`` with those holding a NaN or infinite value made absent (all zero), as a copy when any do: one
    bad coordinate would otherwise make the person's every similarity NaN."""
    bad = ~np.isfinite(keypoints).all(-1)
    if not bad.any():
        return keypoints
    out = keypoints.copy()
    out[bad] = 0.0
    return out


@dataclass
class _Track:
    keypoints: np.ndarray  # (K, 3) last matched pose, plus keypoints it lacked carried along from earlier ones
    track_id: int = -1     # -1 while tentative
    hits: int = 1          # matches in consecutive frames (while tentative), then all matches
    lost: int = 0          # frames since the last match
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # pixels per frame
    unseen: np.ndarray | None = None  # (K,) frames since each keypoint was last observed

    def __post_init__(self) -> None:
        if self.unseen is None:
            self.unseen = np.zeros(len(self.keypoints), np.int64)

    @property
    def shown(self) -> int:
        """Keypoints the person showed when last matched (carried ones left out)."""
        return int(((self.keypoints[:, 2] > 0) & (self.unseen == 0)).sum())

    @property
    def confirmed(self) -> bool:
        return self.track_id >= 0

    def predicted(self, horizon: int) -> np.ndarray:
        """The last pose moved by the velocity for ``min(lost + 1, horizon)`` frames."""
        steps = min(self.lost + 1, horizon)
        if steps <= 0 or not self.velocity.any():
            return self.keypoints
        kp = self.keypoints.copy()
        kp[:, :2] += self.velocity * steps * (kp[:, 2:3] > 0)
        return kp

    def observe(self, keypoints: np.ndarray, memory: int) -> None:
        """Take a matched pose: update the velocity (median motion of the shared keypoints per frame, averaged
        with the previous estimate) and the pose. Keypoints the new pose lacks but that were observed within
        ``memory`` frames are kept, moved with the person, so a partly occluded person keeps its whole body."""
        present, had = keypoints[:, 2] > 0, self.keypoints[:, 2] > 0
        shared = present & had
        frames = self.lost + 1
        step = self.velocity
        if shared.any():
            step = np.median(keypoints[shared, :2] - self.keypoints[shared, :2], axis=0) / frames
            self.velocity = (step if self.hits < 2 else 0.5 * (self.velocity + step)).astype(np.float32)
        self.unseen = np.where(present, 0, self.unseen + frames)
        carry = had & ~present & (self.unseen <= memory)
        new = keypoints.copy()
        new[carry] = self.keypoints[carry]
        new[carry, :2] += step * frames
        self.keypoints = new
        self.lost = 0
        self.hits += 1


class Tracker:
    """Assigns stable ``track_ids`` to the people of consecutive frames (-1: not tracked, or not confirmed yet).

    ``min_similarity``: least similarity (max of OKS and box IoU) of a match; ``max_lost``: frames a confirmed
    track survives unmatched; ``max_tracks``: tracks remembered at most; ``min_keypoints`` / ``min_score``:
    gates a person must pass to match or create a track (``min_score`` is compared with ``Poses.scores``, whose
    scale depends on the model and the decoder's ``person_score``, hence 0 by default); ``min_hits``: matches
    in consecutive frames that confirm a track; ``predict_frames``: frames a track's pose is extrapolated
    with its velocity (0: matched where it was last seen); ``keypoint_memory``: frames a track keeps a
    keypoint its person no longer shows (occluded), moved along with the person; ``oks_norm`` and
    ``assignment``: see :func:`pairwise_oks`, :func:`optimal_match` and :func:`greedy_match`.
    """

    def __init__(self, spec: KeypointSpec, *, min_similarity: float = 0.3, max_lost: int = 30,
                 max_tracks: int = 256, min_keypoints: int = 3, min_score: float = 0.0, min_hits: int = 3,
                 predict_frames: int = 3, keypoint_memory: int = 30, oks_norm: str = "larger",
                 assignment: str = "hungarian") -> None:
        if oks_norm not in OKS_NORMS:
            raise ValueError(f"oks_norm must be one of {OKS_NORMS}, got {oks_norm!r}")
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}")
        self.sigmas = np.asarray(spec.sigmas, dtype=np.float64)
        self.min_similarity = float(min_similarity)
        self.max_lost = int(max_lost)
        self.max_tracks = max(1, int(max_tracks))
        self.min_keypoints = max(1, int(min_keypoints))
        self.min_score = float(min_score)
        self.min_hits = max(1, int(min_hits))
        self.predict_frames = max(0, int(predict_frames))
        self.keypoint_memory = max(0, int(keypoint_memory))
        self.oks_norm = oks_norm
        self._match = optimal_match if assignment == "hungarian" else greedy_match
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._started = False  # a frame with people was seen since construction or reset
        self.tracks_created = 0  # cumulative, tentative ones included
        self.tracks_confirmed = 0

    @classmethod
    def legacy(cls, spec: KeypointSpec, **kwargs) -> "Tracker":
        """The first release's matching: mean OKS over shared keypoints, greedy, every person tracked at once."""
        opts = dict(min_keypoints=1, min_score=0.0, min_hits=1, predict_frames=0, keypoint_memory=0,
                    oks_norm="shared", assignment="greedy")
        opts.update(kwargs)
        return cls(spec, **opts)

    @property
    def active_tracks(self) -> int:
        """Tracks remembered now (confirmed and tentative)."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track (after a seek, for example); ids keep counting up."""
        self._tracks = []
        self._started = False

    def restart(self) -> None:
        """Return to the state of a new tracker (a new input): no tracks, ids from 0 again, counters at 0."""
        self._tracks = []
        self._started = False
        self._next_id = 0
        self.tracks_created = 0
        self.tracks_confirmed = 0

    def _similarity(self, keypoints: np.ndarray, tracks: list[_Track]) -> np.ndarray:
        """``(people, tracks)`` similarity: the larger of the OKS and the keypoint-box IoU with each track's
        predicted pose."""
        prev = np.stack([t.predicted(self.predict_frames) for t in tracks]) if tracks else np.zeros((0, 1, 3))
        if len(keypoints) == 0 or len(prev) == 0:
            return np.zeros((len(keypoints), len(prev)))
        shown = np.array([t.shown for t in tracks])  # carried keypoints help a match but never outweigh one
        oks = pairwise_oks(keypoints, prev, self.sigmas, self.oks_norm, shown)
        return np.maximum(oks, box_iou(keypoint_boxes(keypoints), keypoint_boxes(prev)))

    def _eligible(self, keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Indices of the people that pass the keypoint-count and score gates."""
        n_vis = (keypoints[:, :, 2] > 0).sum(1)
        return np.flatnonzero((n_vis >= self.min_keypoints) & (scores >= self.min_score))

    def _assign(self, sim: np.ndarray, rows: np.ndarray, cols: list[int]) -> list[tuple[int, int]]:
        """Matches between people ``rows`` and tracks ``cols`` as (person, track) indices of ``sim``."""
        if len(rows) == 0 or not cols:
            return []
        pairs = self._match(sim[np.ix_(rows, cols)], self.min_similarity)
        return [(int(rows[r]), cols[c]) for r, c in pairs]

    def _confirm(self, track: _Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1
        self.tracks_confirmed += 1

    def _cascade(self, keypoints: np.ndarray, eligible: np.ndarray) -> list[tuple[int, int]]:
        """(person, track) matches: confirmed tracks first, then tentative ones with the people left."""
        sim = self._similarity(keypoints, self._tracks)
        confirmed = [i for i, t in enumerate(self._tracks) if t.confirmed]
        tentative = [i for i, t in enumerate(self._tracks) if not t.confirmed]
        pairs = self._assign(sim, eligible, confirmed)
        taken = {p for p, _ in pairs}
        rest = np.array([p for p in eligible.tolist() if p not in taken], np.int64)
        return pairs + self._assign(sim, rest, tentative)

    def update(self, poses: Poses) -> Poses:
        """Match ``poses`` to the tracks and return them with ``track_ids`` set (the input is not modified)."""
        ids = np.full(len(poses), -1, dtype=np.int64)
        keypoints = _finite_keypoints(poses.keypoints)
        eligible = self._eligible(keypoints, poses.scores)
        pairs = self._cascade(keypoints, eligible)
        seen: dict[int, int] = {}  # id(track) -> the person it holds in this frame
        for person, ti in pairs:
            self._tracks[ti].observe(keypoints[person], self.keypoint_memory)
            seen[id(self._tracks[ti])] = person
        kept = []
        for track in self._tracks:
            if id(track) not in seen:
                track.lost += 1
            if track.lost == 0 or (track.confirmed and track.lost <= self.max_lost):
                kept.append(track)  # a tentative track missed once is dropped
        taken = {p for p, _ in pairs}
        new: set[int] = set()
        for person in eligible.tolist():
            if person not in taken:
                track = _Track(keypoints[person].copy())
                self.tracks_created += 1
                seen[id(track)] = person
                new.add(id(track))
                kept.append(track)
        if len(kept) > self.max_tracks:  # evict the stalest first, then tentative, then the least matched
            kept.sort(key=lambda t: (t.lost, not t.confirmed, -t.hits))
            kept = kept[: self.max_tracks]
        for track in kept:  # ids only for the tracks that stay: an evicted one never shows its id
            person = seen.get(id(track))
            if person is None:
                continue
            first_frame = id(track) in new and not self._started
            if not track.confirmed and (track.hits >= self.min_hits or first_frame):
                self._confirm(track)
            ids[person] = track.track_id
        self._tracks = kept
        self._started = self._started or len(eligible) > 0
        return Poses(poses.keypoints, poses.scores, ids, dict(poses.meta))
