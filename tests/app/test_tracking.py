"""Tracker and One-Euro smoother on real COCO people moved across synthetic frames."""
from __future__ import annotations

import numpy as np

from app.smoothing import OneEuroFilter, PoseSmoother
from app.tracking import Tracker, box_iou, greedy_match, pairwise_oks
from core.keypoints import COCO
from core.poses import Poses


def _crowd(coco_people: list[Poses], n: int = 4) -> Poses:
    return max(coco_people, key=len).select(np.arange(n))


def _moved(poses: Poses, t: int, rng, order=None) -> Poses:
    kp = poses.keypoints.copy()
    kp[:, :, 0] += 3.0 * t + rng.normal(0, 0.5, kp.shape[:2])
    kp[:, :, 1] += 2.0 * t + rng.normal(0, 0.5, kp.shape[:2])
    kp[:, :, :2] *= (kp[:, :, 2:3] > 0)
    p = Poses(kp, poses.scores)
    return p.select(order) if order is not None else p


def test_oks_and_iou_basics(coco_people) -> None:
    p = _crowd(coco_people)
    oks = pairwise_oks(p.keypoints, p.keypoints, np.asarray(COCO.sigmas))
    np.testing.assert_allclose(np.diag(oks), 1.0)
    assert (oks[~np.eye(len(p), dtype=bool)] < 0.9).all()
    b = p.boxes()
    np.testing.assert_allclose(np.diag(box_iou(b, b)), 1.0)
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.3) == [(0, 0)]  # then (1, 1) is below threshold
    assert sorted(greedy_match(np.array([[0.9, 0.8], [0.85, 0.4]]), 0.3)) == [(0, 0), (1, 1)]


def test_ids_are_stable_under_motion_and_reordering(coco_people) -> None:
    base = _crowd(coco_people)
    rng = np.random.default_rng(0)
    tracker = Tracker(COCO)
    first = tracker.update(_moved(base, 0, rng))
    ids = first.track_ids.copy()
    assert len(set(ids.tolist())) == len(base) and (ids >= 0).all()
    for t in range(1, 15):
        order = rng.permutation(len(base))
        out = tracker.update(_moved(base, t, rng, order))
        np.testing.assert_array_equal(out.track_ids, ids[order])


def test_lost_track_memory_is_bounded(coco_people) -> None:
    base = _crowd(coco_people, 3)
    rng = np.random.default_rng(1)
    tracker = Tracker(COCO, max_lost=5)
    ids = tracker.update(_moved(base, 0, rng)).track_ids.copy()
    for t in range(1, 5):  # person 0 hidden for 4 frames: remembered
        tracker.update(_moved(base, 0, rng).select(np.array([1, 2])))
    back = tracker.update(_moved(base, 0, rng))
    np.testing.assert_array_equal(back.track_ids, ids)
    for t in range(7):  # hidden longer than max_lost: forgotten, a new id when it returns
        tracker.update(_moved(base, 0, rng).select(np.array([1, 2])))
    again = tracker.update(_moved(base, 0, rng))
    assert again.track_ids[0] not in ids and (again.track_ids[1:] == ids[1:]).all()
    # endless new people never grow the memory beyond max_lost frames' worth / max_tracks
    small = Tracker(COCO, max_lost=2, max_tracks=8)
    for t in range(200):
        p = _moved(base, 0, rng)
        p.keypoints[:, :, :2] += 1000.0 * (t + 1) * (p.keypoints[:, :, 2:3] > 0)
        small.update(p)
        assert small.active_tracks <= 8


def test_empty_frames_and_inputs_untouched(coco_people) -> None:
    tracker = Tracker(COCO)
    assert len(tracker.update(Poses.empty(17))) == 0
    p = _crowd(coco_people)
    out = tracker.update(p)
    assert (p.track_ids == -1).all() and (out.track_ids >= 0).all()


def test_one_euro_removes_jitter_but_follows_motion() -> None:
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.01)
    dt = 1 / 30
    # still point with 2 px noise
    x_hat, dx = np.zeros(2), np.zeros(2)
    raw, smooth = [], []
    for _ in range(300):
        x = rng.normal(0, 2.0, 2)
        x_hat, dx = f.step(x, x_hat, dx, dt)
        raw.append(x)
        smooth.append(x_hat)
    assert np.std(smooth[50:]) < 0.4 * np.std(raw[50:])
    # fast motion (600 px/s): the speed-adaptive cut-off keeps the lag small
    x_hat, dx = np.zeros(1), np.zeros(1)
    for i in range(1, 90):
        x_hat, dx = f.step(np.array([600.0 * i * dt]), x_hat, dx, dt)
    assert abs(600.0 * 89 * dt - x_hat[0]) < 20.0


def test_pose_smoother_per_track(coco_people) -> None:
    base = _crowd(coco_people, 2)
    rng = np.random.default_rng(0)
    sm = PoseSmoother(max_age=1.0)
    first = Poses(base.keypoints, base.scores, np.array([7, -1]))
    out = sm.update(first, 0.0)
    np.testing.assert_array_equal(out.keypoints, first.keypoints)  # first observation passes unchanged
    jitter_raw, jitter_out = [], []
    for i in range(1, 60):
        kp = base.keypoints.copy()
        kp[:, :, :2] += rng.normal(0, 2.0, kp[:, :, :2].shape) * (kp[:, :, 2:3] > 0)
        kp[0, 0, 2] = 0.0 if i % 2 else kp[0, 0, 2]  # a keypoint that flickers
        p = Poses(kp, base.scores, np.array([7, -1]))
        out = sm.update(p, i / 30)
        np.testing.assert_array_equal(out.keypoints[1], p.keypoints[1])  # untracked: untouched
        np.testing.assert_array_equal(out.keypoints[:, :, 2], p.keypoints[:, :, 2])  # scores/absence untouched
        vis = p.keypoints[0, :, 2] > 0
        jitter_raw.append(np.abs(p.keypoints[0, vis, :2] - base.keypoints[0, vis, :2]).mean())
        jitter_out.append(np.abs(out.keypoints[0, vis, :2] - base.keypoints[0, vis, :2]).mean())
    assert np.mean(jitter_out[10:]) < 0.6 * np.mean(jitter_raw[10:])
    assert sm.n_states == 1
    sm.update(Poses.empty(17), 10.0)  # long after: state of track 7 expired
    assert sm.n_states == 0
