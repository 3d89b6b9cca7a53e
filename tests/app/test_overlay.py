"""The OpenCV skeleton overlay: known poses on a blank image."""
from __future__ import annotations

import numpy as np

from app.overlay import draw_poses, track_color
from core.contract import PoseContract
from core.keypoints import COCO, CROWDPOSE
from core.poses import Poses


def _pose(dx: float = 0.0) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[5] = (60 + dx, 40, 0.9)   # left shoulder
    kp[7] = (60 + dx, 120, 0.8)  # left elbow
    kp[6] = (20 + dx, 40, 0.9)   # right shoulder; right elbow (8) absent
    return kp


def test_limbs_between_present_keypoints_in_track_colours() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    poses = Poses(np.stack([_pose(), _pose(150)]), np.array([0.9, 0.8]), np.array([3, 11]))
    out = draw_poses(img, poses, PoseContract(COCO), thickness=3)
    assert img.sum() == 0  # the input is left alone
    # middle of the shoulder->elbow limb of each person carries that person's track colour
    assert tuple(out[80, 60]) == track_color(3)
    assert tuple(out[80, 210]) == track_color(11)
    assert track_color(3) != track_color(11) and track_color(3) == track_color(3)
    # the right arm is absent: nothing drawn below the right shoulder
    assert out[70:110, 15:25].sum() == 0
    # shoulder -> shoulder limb (5, 6) drawn
    assert out[40, 40].any()


def test_untracked_people_get_distinct_colours_and_boxes() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    poses = Poses(np.stack([_pose(), _pose(150)]), np.array([0.9, 0.8]))
    out = draw_poses(img, poses, COCO, draw_boxes=True)
    assert tuple(out[80, 60]) != tuple(out[80, 210])
    assert out[40:121, 20].any()  # left edge of the first box


def test_in_place_empty_and_other_spec() -> None:
    img = np.zeros((50, 50, 3), np.uint8)
    assert draw_poses(img, Poses.empty(17), COCO) is not img
    kp = np.zeros((1, 14, 3), np.float32)
    kp[0, 12] = (10, 10, 1.0)  # head
    kp[0, 13] = (10, 40, 1.0)  # neck
    out = draw_poses(img, Poses(kp, np.ones(1), np.array([0])), CROWDPOSE, copy=False)
    assert out is img and img[25, 10].any()


def test_nan_and_far_off_keypoints_are_not_drawn() -> None:
    """A keypoint with a score but no finite (or no drawable) position is left out, and so are its limbs: no stray
    line to a corner, no crash drawing the box."""
    img = np.zeros((200, 300, 3), np.uint8)
    expected = draw_poses(img, Poses(_pose()[None], np.ones(1), np.array([0])), COCO, draw_boxes=True)
    for bad in (np.nan, np.inf, 1e9):
        kp = _pose()
        kp[9] = (bad, 100, 0.9)   # left wrist: present, position unusable
        kp[8] = (20, bad, 0.9)    # right elbow
        out = draw_poses(img, Poses(kp[None], np.ones(1), np.array([0])), COCO, draw_boxes=True)
        np.testing.assert_array_equal(out, expected)


def test_keypoints_on_the_border_are_drawn() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    kp = np.zeros((17, 3), np.float32)
    kp[5], kp[7] = (0, 0, 0.9), (119, 99, 0.9)  # left shoulder, left elbow: opposite corners
    out = draw_poses(img, Poses(kp[None], np.ones(1), np.array([2])), COCO)
    assert out[0, 0].any() and out[99, 119].any() and out[50, 60].any()
