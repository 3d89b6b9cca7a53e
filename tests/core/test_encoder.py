import math

import numpy as np
import pytest

from core.contract import PoseContract
from core.encoder import TargetEncoder, cell_centers
from core.keypoints import COCO

C = PoseContract(COCO)
LIMBS = C.skeleton


def person(points: dict[int, tuple[float, float]]) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    for k, (x, y) in points.items():
        kp[k] = (x, y, 2)
    return kp


def test_cell_centres_follow_the_convention():
    assert cell_centers(3, 4).tolist() == [1.5, 5.5, 9.5]


def test_heatmap_values_at_known_points():
    enc = TargetEncoder(C)
    t = enc.encode(person({0: (41.5, 21.5)})[None], (128, 64))
    assert t.heatmaps.shape == (17, 16, 32)
    # keypoint exactly on the centre of cell (x=10, y=5): value 1 there
    assert t.heatmaps[0, 5, 10] == pytest.approx(1.0)
    # one cell right: distance 4 px, sigma 7
    assert t.heatmaps[0, 5, 11] == pytest.approx(math.exp(-16 / 98), rel=1e-6)
    assert t.heatmaps[0, 6, 11] == pytest.approx(math.exp(-32 / 98), rel=1e-6)
    # clipped below 0.01 (distance 24 px -> exp(-576/98) = 0.0028)
    assert t.heatmaps[0, 5, 16] == 0.0
    assert t.heatmaps[1:].max() == 0.0
    nonzero = t.heatmaps[0][t.heatmaps[0] > 0]
    assert nonzero.min() >= 0.01


def test_heatmaps_of_people_combine_by_maximum():
    enc = TargetEncoder(C)
    a, b = person({5: (41.5, 21.5)}), person({5: (49.5, 21.5)})
    both = enc.encode(np.stack([a, b]), (128, 64)).heatmaps[5]
    ha = enc.encode(a[None], (128, 64)).heatmaps[5]
    hb = enc.encode(b[None], (128, 64)).heatmaps[5]
    np.testing.assert_array_equal(both, np.maximum(ha, hb))


def test_offsets_window_values_and_mask():
    enc = TargetEncoder(C, window=7)
    kp = person({0: (41.5, 21.5), 1: (61.5, 9.5)})          # limb 0 = (0, 1): nose -> left eye
    t = enc.encode(kp[None], (128, 64), person_scales=np.array([50.0]))
    l0 = LIMBS.index((0, 1))
    mask = t.offset_mask[l0]
    assert mask.sum() == 49                                   # 7x7 window, all inside
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (7, 13, 2, 8)
    # at the start keypoint's own cell the offset is exactly the limb vector
    assert t.offsets[2 * l0, 5, 10] == pytest.approx(20.0) and t.offsets[2 * l0 + 1, 5, 10] == pytest.approx(-12.0)
    # anywhere in the window: end keypoint - cell centre
    assert t.offsets[2 * l0, 2, 7] == pytest.approx(61.5 - 29.5)
    assert t.offsets[2 * l0 + 1, 2, 7] == pytest.approx(9.5 - 9.5)
    assert (t.offsets[2 * l0][~mask] == 0).all()
    assert (t.person_scale[l0][mask] == 50.0).all() and (t.person_scale[l0][~mask] == 0).all()
    # limbs with a missing end keypoint get no target
    assert t.offset_mask[LIMBS.index((0, 2))].sum() == 0
    # keypoint scales: person scale x OKS sigma around each keypoint
    assert t.keypoint_scale[0, 5, 10] == pytest.approx(50.0 * COCO.sigmas[0])
    assert t.keypoint_scale_mask[0].sum() == 49 and t.keypoint_scale_mask[2].sum() == 0


def test_overlapping_offsets_shorter_vector_wins():
    enc = TargetEncoder(C)
    l0 = LIMBS.index((0, 1))
    near = person({0: (41.5, 21.5), 1: (45.5, 21.5)})       # short limb
    far = person({0: (45.5, 21.5), 1: (85.5, 41.5)})        # long limb starting one cell right
    t = enc.encode(np.stack([far, near]), (128, 64))
    # at the near person's start cell both windows overlap; the near person's vector (4, 0) is shorter
    assert t.offsets[2 * l0, 5, 10] == pytest.approx(4.0) and t.offsets[2 * l0 + 1, 5, 10] == pytest.approx(0.0)
    # a cell covered only by the far person's window keeps the far vector
    assert t.offsets[2 * l0, 5, 14] == pytest.approx(85.5 - 57.5)
    # order of people does not matter
    t2 = enc.encode(np.stack([near, far]), (128, 64))
    np.testing.assert_array_equal(t.offsets, t2.offsets)


def test_border_and_outside_keypoints():
    enc = TargetEncoder(C)
    kp = person({0: (0.0, 0.0), 1: (127.4, 63.4), 2: (140.0, 10.0), 3: (-3.0, 5.0)})
    t = enc.encode(kp[None], (128, 64))
    assert t.heatmaps[0, 0, 0] > 0.9 and t.heatmaps[1, 15, 31] > 0.9   # keypoints on the border are valid
    assert t.heatmaps[2].max() == 0 and t.heatmaps[3].max() == 0       # outside the input: absent
    assert t.offset_mask[LIMBS.index((0, 1))].any()                     # border keypoints make limbs
    assert not t.offset_mask[LIMBS.index((0, 2))].any()


def test_a_keypoint_with_nan_or_inf_coordinates_is_absent_and_leaves_the_scales_finite():
    enc = TargetEncoder(C)
    clean = person({5: (20.0, 20.0), 6: (40.0, 20.0), 11: (22.0, 50.0), 12: (38.0, 50.0)})
    for bad in (np.nan, np.inf):
        kp = clean.copy()
        kp[0] = (bad, 10.0, 2)
        t, ref = enc.encode(kp[None], (64, 64)), enc.encode(clean[None], (64, 64))
        assert np.isfinite(t.person_scale).all() and np.isfinite(t.keypoint_scale).all()
        np.testing.assert_array_equal(t.person_scale, ref.person_scale)
        np.testing.assert_array_equal(t.heatmaps, ref.heatmaps)


def test_keypoints_of_another_spec_are_a_clear_error():
    """17 CrowdPose people (17 x 14 x 3 values) used to be reshaped silently into 14 COCO people."""
    enc = TargetEncoder(C)
    for shape in ((17, 14, 3), (1, 14, 3), (17, 2)):
        with pytest.raises(ValueError, match=r"keypoints must be \(persons, 17, 3\)"):
            enc.encode(np.ones(shape, np.float32), (64, 64))
    one = enc.encode(person({0: (20.0, 20.0)}), (64, 64))        # one person as (K, 3) stays accepted
    assert one.heatmaps[0].max() > 0.9


def test_no_people_and_people_without_keypoints():
    enc = TargetEncoder(C)
    for kps in (np.zeros((0, 17, 3)), np.zeros((3, 17, 3))):
        t = enc.encode(kps, (64, 64))
        assert t.heatmaps.shape == (17, 16, 16) and t.heatmaps.max() == 0 and not t.offset_mask.any()


def test_ignore_mask_and_boxes():
    enc = TargetEncoder(C)
    m = np.zeros((64, 128), bool)
    m[0:8, 0:8] = True          # 2x2 cells fully covered
    m[8:10, 0:4] = True         # half a cell: not ignored
    t = enc.encode(np.zeros((0, 17, 3)), (128, 64), ignore_mask=m, ignore_boxes=np.array([[40, 20, 60, 30]]))
    assert t.ignore[:2, :2].all() and not t.ignore[2, 0]
    assert t.ignore[5, 10] and t.ignore[7, 14] and not t.ignore[8, 10]
    with pytest.raises(ValueError, match="ignore mask"):
        enc.encode(np.zeros((0, 17, 3)), (128, 64), ignore_mask=np.zeros((10, 10), bool))


def test_degenerate_input_sizes():
    enc = TargetEncoder(C)
    with pytest.raises(ValueError, match="smaller than the stride"):
        enc.encode(np.zeros((0, 17, 3)), (1, 1))
    t = enc.encode(person({0: (5000.0, 10.0)})[None], (10000, 52))
    assert t.heatmaps.shape == (17, 13, 2500) and t.heatmaps[0].max() > 0.9


def test_matches_a_per_person_reference_loop():
    """The vectorised encoder equals a straightforward loop over people and cells (a cell's offset comes from the
    limb start nearest to it, then the shorter vector)."""
    rng = np.random.default_rng(0)
    kps = np.zeros((4, 17, 3), np.float32)
    kps[:, :, :2] = rng.uniform(0, 127, (4, 17, 2))
    kps[:, :, 2] = rng.uniform(size=(4, 17)) > 0.3
    enc = TargetEncoder(C)
    t = enc.encode(kps, (128, 128))
    xs = cell_centers(32, 4)
    ref = np.zeros((17, 32, 32))
    best = np.full((len(LIMBS), 32, 32), np.inf)
    ref_off = np.zeros((len(LIMBS), 2, 32, 32))
    best_key: dict = {}
    for p in range(4):
        for k in range(17):
            if kps[p, k, 2] > 0:
                g = np.exp(-((xs[None, :] - kps[p, k, 0]) ** 2 + (xs[:, None] - kps[p, k, 1]) ** 2) / 98)
                ref[k] = np.maximum(ref[k], np.where(g >= 0.01, g, 0))
        for li, (a, b) in enumerate(LIMBS):
            if kps[p, a, 2] > 0 and kps[p, b, 2] > 0:
                cx, cy = int((kps[p, a, 0] + 0.5) // 4), int((kps[p, a, 1] + 0.5) // 4)
                for y in range(max(cy - 3, 0), min(cy + 4, 32)):
                    for x in range(max(cx - 3, 0), min(cx + 4, 32)):
                        v = kps[p, b, :2] - (xs[x], xs[y])
                        key = (np.hypot(*(kps[p, a, :2] - (xs[x], xs[y]))), np.hypot(*v))  # nearest start first
                        if key < best_key.get((li, y, x), (np.inf, np.inf)):
                            best_key[(li, y, x)] = key
                            best[li, y, x] = 0.0
                            ref_off[li, :, y, x] = v
    np.testing.assert_allclose(t.heatmaps, ref, atol=1e-5)
    np.testing.assert_allclose(t.offsets.reshape(len(LIMBS), 2, 32, 32), ref_off, atol=1e-4)
    np.testing.assert_array_equal(t.offset_mask, np.isfinite(best))


def test_one_encoder_is_safe_to_share_between_threads():
    """4 threads encoding different people with one encoder give exactly the serial results (a shared scratch
    buffer gave a few wrong encodes per thousand)."""
    from concurrent.futures import ThreadPoolExecutor

    from core.contract import PoseContract
    from core.encoder import TargetEncoder
    from core.keypoints import COCO

    enc = TargetEncoder(PoseContract(COCO, "redundant"))
    rng = np.random.default_rng(3)
    jobs = []
    for _ in range(800):
        kps = np.concatenate([rng.uniform(0, 128, (3, 17, 2)), np.full((3, 17, 1), 2.0)], -1).astype(np.float32)
        jobs.append(kps)
    serial = [enc.encode(k, (128, 128)) for k in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda k: enc.encode(k, (128, 128)), jobs))
    wrong = sum(not (np.array_equal(a.offsets, b.offsets) and np.array_equal(a.offset_mask, b.offset_mask))
                for a, b in zip(serial, threaded))
    assert wrong == 0
