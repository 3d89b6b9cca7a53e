import numpy as np
import pytest

from core.contract import PoseContract
from core.geometry import (affine_crop_transform, compose, fixed_height_transform, hflip_transform,
                           long_edge_transform)
from core.keypoints import COCO, CROWDPOSE, KeypointSpec, get_spec


def test_specs_sizes_and_flip():
    assert COCO.n_keypoints == 17 and CROWDPOSE.n_keypoints == 14
    assert len(COCO.skeleton()) == 19 and len(COCO.skeleton("redundant")) == 31 and len(COCO.skeleton("dense")) == 44
    assert len(CROWDPOSE.skeleton()) == 15
    assert COCO.flip_permutation == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert CROWDPOSE.flip_permutation == (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13)
    assert CROWDPOSE.skeleton()[0] == (12, 13)  # head -> neck first
    assert COCO.skeleton()[:3] == ((0, 1), (0, 2), (1, 2))
    for spec in (COCO, CROWDPOSE):
        perm = np.array(spec.flip_permutation)
        assert (perm[perm] == np.arange(spec.n_keypoints)).all()
    with pytest.raises(KeyError, match="unknown keypoint spec"):
        get_spec("mpii")
    with pytest.raises(KeyError, match="no skeleton"):
        COCO.skeleton("nope")


def test_malformed_specs_are_refused_when_defined():
    """A repeated limb made ``limb_flip`` / ``limb_indices`` point at only one of its copies; a left keypoint
    without a right one failed later with "tuple.index(x): x not in tuple"."""
    names, sigmas = ("nose", "left_eye", "right_eye"), (0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match=r"repeats limb \(0, 1\)"):
        KeypointSpec("toy", names, sigmas, {"default": ((0, 1), (0, 2), (0, 1))})
    with pytest.raises(ValueError, match="'left_ear' has no 'right_ear'"):
        KeypointSpec("toy", names + ("left_ear",), sigmas + (0.1,), {"default": ((0, 1),)})
    with pytest.raises(ValueError, match=r"invalid limb \(0, 3\)"):
        KeypointSpec("toy", names, sigmas, {"default": ((0, 3),)})


def test_contract_channels_and_limb_flip():
    c = PoseContract(COCO)
    assert (c.heatmap_channels, c.offset_channels, c.scale_channels) == (17, 38, 0)
    assert PoseContract(COCO, with_scale=True).scale_channels == 17
    mirror, found = c.limb_flip
    limbs = c.skeleton
    # (0,1) nose->left eye mirrors to (0,2); shoulders (5,6) mirror only reversed -> not found
    assert limbs[mirror[limbs.index((0, 1))]] == (0, 2)
    assert not found[limbs.index((5, 6))]
    assert PoseContract.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("size", [(640, 427), (427, 640), (1, 1), (10000, 50), (50, 10000), (333, 333)])
def test_long_edge_round_trip(size):
    w, h = size
    t = long_edge_transform(w, h, 640)
    assert t.dst_size == (640, 640)
    pts = np.random.default_rng(0).uniform([-0.5, -0.5], [w - 0.5, h - 0.5], (50, 2))
    np.testing.assert_allclose(t.inverse(t.apply(pts)), pts, atol=1e-6 * max(w, h))
    # the image's outer edges land on the resized block, which is centred
    corners = t.apply(np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]]))
    assert corners.min() >= -0.5 - 1e-9 and corners.max() <= 639.5 + 1e-9
    left, right = corners[0, 0] + 0.5, 640 - (corners[1, 0] + 0.5)
    assert abs(left - right) <= 1.0


@pytest.mark.parametrize("size", [(640, 480), (10000, 50), (1, 1), (300, 900)])
def test_fixed_height_round_trip_and_padding(size):
    w, h = size
    t = fixed_height_transform(w, h, 640, multiple=128)
    assert t.dst_size[1] == 640 and t.dst_size[0] % 128 == 0
    assert t.apply(np.array([[-0.5, -0.5]]))[0].tolist() == pytest.approx([-0.5, -0.5])  # top-left anchored
    pts = np.random.default_rng(1).uniform(0, [w - 1, h - 1], (20, 2))
    np.testing.assert_allclose(t.inverse(t.apply(pts)), pts, atol=1e-6 * max(w, h))


def test_warp_matches_point_mapping():
    # a bright pixel moves where the transform says it goes (resize path and affine path)
    img = np.zeros((100, 160), np.float32)
    img[40, 70] = 1.0
    img = np.asarray(__import__("cv2").GaussianBlur(img, (0, 0), 3))
    for t in (long_edge_transform(160, 100, 320, multiple=32),
              affine_crop_transform((160, 100), (80, 50), 1.5, (128, 128), rotation_deg=30, flip=True),
              affine_crop_transform((160, 100), (70, 45), 0.5, (64, 64)),    # unrotated crops, sub-pixel offsets
              affine_crop_transform((160, 100), (75, 45), 1.3, (64, 64))):  # and larger than the canvas
        out = t.warp(img)
        y, x = np.unravel_index(np.argmax(out), out.shape)
        np.testing.assert_allclose([x, y], t.apply(np.array([70.0, 40.0])), atol=1.0)


def test_affine_crop_and_compose_round_trip():
    t = affine_crop_transform((640, 480), (300, 200), 0.8, (512, 512), rotation_deg=-37, stretch=(1.1, 0.9), flip=True)
    assert t.apply(np.array([300.0, 200.0])).tolist() == pytest.approx([255.5, 255.5])
    pts = np.random.default_rng(2).uniform(0, 400, (30, 2))
    np.testing.assert_allclose(t.inverse(t.apply(pts)), pts, atol=1e-9)
    both = compose(t, hflip_transform(512, 512))
    np.testing.assert_allclose(both.inverse(both.apply(pts)), pts, atol=1e-9)
    f = hflip_transform(512, 512)
    assert f.apply(np.array([0.0, 3.0])).tolist() == [511.0, 3.0]


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="at least 1x1"):
        long_edge_transform(0, 10)
    with pytest.raises(ValueError, match="expects"):
        long_edge_transform(10, 10, 64, 32).warp(np.zeros((5, 5), np.uint8))
