"""The Poses result type: selection, boxes and COCO export on empty and partly absent people."""
from __future__ import annotations

import numpy as np

from core.poses import Poses


def _two_people() -> Poses:
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, 0] = [4.0, 6.0, 0.9]
    kp[1, 3] = [5.0, 6.0, 0.5]
    kp[1, 4] = [9.0, 2.0, 0.7]
    return Poses(kp, [0.8, 0.3], track_ids=[7, 8], meta={"frame": 1})


def test_select_single_integer_keeps_one_person() -> None:
    one = _two_people().select(1)
    assert len(one) == 1 and one.keypoints.shape == (1, 17, 3)
    assert one.track_ids.tolist() == [8] and one.scores.tolist() == [np.float32(0.3)] and one.meta == {"frame": 1}
    assert len(_two_people().select(np.int64(0))) == 1


def test_boxes_ignore_absent_keypoints_and_empty() -> None:
    poses = _two_people()
    np.testing.assert_array_equal(poses.boxes(), [[4, 6, 4, 6], [5, 2, 9, 6]])
    empty = Poses.empty(17)
    assert empty.boxes().shape == (0, 4) and empty.to_coco(1) == []
    assert len(empty.select(np.zeros(0, bool))) == 0
