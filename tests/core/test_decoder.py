import numpy as np
import pytest
import torch

from core.contract import PoseContract
from core.decoder import DecoderConfig, decode, keypoint_candidates, merge_flip
from core.encoder import TargetEncoder
from core.geometry import hflip_transform
from core.keypoints import COCO, CROWDPOSE

C = PoseContract(COCO)
SIZE = (256, 256)

# a standing person, about 120 px tall, in COCO order
BODY = np.array([
    [0, -50], [-4, -54], [4, -54], [-9, -52], [9, -52], [-18, -35], [18, -35], [-24, -12], [24, -12],
    [-27, 10], [27, 10], [-12, 10], [12, 10], [-13, 38], [13, 38], [-14, 66], [14, 66]], np.float32)


def make_person(cx: float, cy: float, keep=None, scale: float = 1.0) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = BODY * scale + (cx, cy)
    kp[:, 2] = 2
    if keep is not None:
        mask = np.zeros(17, bool)
        mask[list(keep)] = True
        kp[~mask] = 0
    return kp


def encode(people, contract=C, size=SIZE):
    t = TargetEncoder(contract).encode(np.asarray(people, np.float32), size)
    return torch.from_numpy(t.heatmaps[None]), torch.from_numpy(t.offsets[None])


def match(found: np.ndarray, truth: np.ndarray) -> float:
    """Max distance between truth's present keypoints and found's (which must be present)."""
    vis = truth[:, 2] > 0
    assert (found[vis, 2] > 0).all(), "a visible keypoint was lost"
    return float(np.abs(found[vis, :2] - truth[vis, :2]).max())


def test_single_person_is_exact_to_subpixel():
    gt = make_person(128.3, 120.7)
    poses = decode(*encode([gt]), C)[0]
    assert len(poses) == 1
    assert match(poses.keypoints[0], gt) < 0.25
    assert poses.scores[0] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("peak_mode", ["stride4", "upsample"])
def test_keypoint_candidates_are_what_the_grouping_starts_from(peak_mode):
    """Every decoded keypoint is one of ``keypoint_candidates``' (same position and score), and every candidate
    of the two people is decoded."""
    people = [make_person(90, 128), make_person(170, 120, scale=0.8)]
    hm, off = encode(people)
    cfg = DecoderConfig(peak_mode=peak_mode)
    (xy, score), = keypoint_candidates(hm, C, cfg)
    assert xy.shape == (17, cfg.topk, 2) and score.shape == (17, cfg.topk)
    poses = decode(hm, off, C, cfg)[0]
    assert len(poses) == 2 and (poses.keypoints[:, :, 2] > 0).all()
    for k in range(17):
        d = np.abs(xy[k][None] - poses.keypoints[:, k, None, :2]).max(-1)     # (people, candidates)
        nearest = d.argmin(1)
        assert d.min(1).max() < 1e-4
        np.testing.assert_array_equal(score[k, nearest], poses.keypoints[:, k, 2])
        assert (score[k] > 0).sum() == 2
    assert match(poses.keypoints[np.argmin(poses.keypoints[:, 0, 0])], people[0]) < 0.5


def test_two_crossing_people_are_kept_apart():
    a = make_person(100, 128)
    b = make_person(156, 128)
    b[:, 0] = 2 * 156 - b[:, 0]         # mirror b so its arms reach across a's
    b[[7, 9], 0] -= 30                    # b's left arm crosses into a's right arm region
    a[[8, 10], 0] += 28                   # a's right arm crosses into b
    poses = decode(*encode([a, b]), C)[0]
    assert len(poses) == 2
    order = np.argsort(poses.keypoints[:, 0, 0])
    assert match(poses.keypoints[order[0]], a) < 0.5
    assert match(poses.keypoints[order[1]], b) < 0.5


def test_border_keypoints_are_valid():
    gt = make_person(30, 70)
    gt[9, :2] = (0.0, 80.0)     # left wrist on the left border
    gt[1, :2] = (26.0, 0.0)     # left eye on the top border
    poses = decode(*encode([gt]), C)[0]
    assert len(poses) == 1
    kp = poses.keypoints[0]
    assert kp[9, 2] > 0 and kp[1, 2] > 0
    assert abs(kp[9, 0] - 0.0) < 0.6 and abs(kp[1, 1] - 0.0) < 0.6


def test_single_keypoint_person_is_not_lost():
    lone = np.zeros((17, 3), np.float32)
    lone[15] = (200.5, 210.5, 2)
    poses = decode(*encode([make_person(80, 100), lone]), C)[0]
    assert len(poses) == 2
    single = poses.keypoints[poses.visible.sum(1) == 1]
    assert len(single) == 1 and single[0, 15, 2] > 0
    assert abs(single[0, 15, 0] - 200.5) < 0.3
    assert poses.scores[1] < poses.scores[0]  # partial people rank below complete ones


def test_person_in_two_pieces_keeps_both_pieces():
    gt = make_person(128, 128, keep=[0, 1, 2, 15, 16])  # head and ankles: no limb joins them
    poses = decode(*encode([gt]), C)[0]
    found = poses.visible.any(0)
    assert found[[0, 1, 2, 15, 16]].all()
    for kp in poses.keypoints:
        vis = kp[:, 2] > 0
        np.testing.assert_allclose(kp[vis, :2], gt[vis, :2], atol=0.5)


def test_merging_two_partial_people_keeps_each_keypoint_in_place():
    # limbs (1,3) and (5,6) start two partial people; (3,5) later joins them into one
    gt = make_person(128, 128, keep=[1, 3, 5, 6])
    poses = decode(*encode([gt]), C)[0]
    assert len(poses) == 1
    kp = poses.keypoints[0]
    assert (kp[:, 2] > 0).sum() == 4
    np.testing.assert_allclose(kp[[1, 3, 5, 6], :2], gt[[1, 3, 5, 6], :2], atol=0.5)


def test_many_people_and_integer_ids():
    people = [make_person(x, y, scale=0.6) for x in range(30, 240, 45) for y in range(40, 240, 95)]
    people = [p for p in people if p[:, :2].max() < 255]
    poses = decode(*encode(people, size=(256, 256)), C, DecoderConfig(topk=32))[0]
    assert len(poses) == len(people)
    for gt in people:
        d = [np.abs(p[:, :2] - gt[:, :2]).max() for p in poses.keypoints]
        assert min(d) < 0.5


def test_flip_merge_of_exact_maps_reproduces_the_maps():
    gt = make_person(121.3, 118.6)
    hm, off = encode([gt])
    mirrored = gt.copy()
    mirrored[:, :2] = hflip_transform(*SIZE).apply(gt[:, :2])
    mirrored = mirrored[list(COCO.flip_permutation)]
    fhm, foff = encode([mirrored])
    mh, mo, ms = merge_flip(hm, off, fhm, foff, C)
    assert ms is None
    np.testing.assert_allclose(mh, hm, atol=1e-5)
    np.testing.assert_allclose(mo, off, atol=1e-4)
    poses = decode(mh, mo, C)[0]
    assert match(poses.keypoints[0], gt) < 0.25


def test_flip_merge_averages_heatmaps_with_swapped_channels():
    hm = torch.zeros(1, 17, 8, 8)
    fhm = torch.zeros(1, 17, 8, 8)
    fhm[0, 2, 3, 0] = 1.0   # mirror's right eye at x=0 -> original's left eye at x=7
    off = torch.zeros(1, 38, 8, 8)
    mh, _, _ = merge_flip(hm, off, fhm, off.clone(), C)
    assert mh[0, 1, 3, 7] == pytest.approx(0.5) and mh.sum() == pytest.approx(0.5)


def test_crowdpose_with_scale_head():
    c = PoseContract(CROWDPOSE, with_scale=True)
    kp = np.zeros((1, 14, 3), np.float32)
    kp[0, :, :2] = np.random.default_rng(0).uniform(60, 190, (14, 2))
    kp[0, :, 2] = 2
    t = TargetEncoder(c).encode(kp, SIZE, person_scales=np.array([150.0]))
    poses = decode(torch.from_numpy(t.heatmaps[None]), torch.from_numpy(t.offsets[None]), c,
                   scales=torch.from_numpy(t.keypoint_scale[None]))[0]
    assert len(poses) >= 1
    best = poses.keypoints[0]
    assert (best[:, 2] > 0).sum() >= 10


def test_empty_maps_and_batches():
    hm, off = torch.zeros(3, 17, 16, 16), torch.zeros(3, 38, 16, 16)
    out = decode(hm, off, C)
    assert len(out) == 3 and all(len(p) == 0 for p in out)
    assert out[0].keypoints.shape == (0, 17, 3)


def test_an_empty_batch_decodes_to_no_images():
    assert decode(torch.zeros(0, 17, 8, 8), torch.zeros(0, 38, 8, 8), C) == []
    assert keypoint_candidates(torch.zeros(0, 17, 8, 8), C) == []


@pytest.mark.parametrize("field, value", [("max_people", -1), ("nms_kernel", -1), ("topk", "32"), ("topk", 2.5),
                                          ("threshold", None), ("threshold", float("nan")), ("refine", "no"),
                                          ("single_keypoints", 1), ("person_score", 1),
                                          ("threshold", 2.0), ("nms_kernel", 2), ("dist_max", 0.0)])
def test_invalid_decoder_settings_name_the_setting(field, value):
    """``max_people=-1`` used to keep all but the last person; a string ``refine='no'`` was truthy; ``topk='32'``
    was a TypeError naming nothing."""
    with pytest.raises(ValueError, match=field):
        DecoderConfig().with_(**{field: value})


def test_integral_float_settings_decode_like_integers():
    """``topk=32.0`` (a YAML or spin-box value) used to reach torch's topk as a float and fail there."""
    cfg = DecoderConfig(topk=32.0, max_people=5.0)
    assert (cfg.topk, cfg.max_people) == (32, 5) and type(cfg.topk) is int
    assert len(decode(*encode([make_person(128, 128)]), C, cfg)[0]) == 1


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="channels"):
        decode(torch.zeros(1, 14, 8, 8), torch.zeros(1, 38, 8, 8), C)
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        decode(torch.zeros(17, 8, 8), torch.zeros(38, 8, 8), C)
    with pytest.raises(ValueError):
        DecoderConfig(threshold=0)


def test_numpy_input_and_upsample_mode_agree_on_clean_maps():
    gt = make_person(100.2, 130.9)
    hm, off = encode([gt])
    a = decode(hm.numpy(), off.numpy(), C)[0]
    b = decode(hm, off, C, DecoderConfig(peak_mode="upsample"))[0]
    assert match(a.keypoints[0], gt) < 0.25 and match(b.keypoints[0], gt) < 1.0


@pytest.mark.slow  # ~7 s: ours against the paper's upsampling decoder on damaged real maps
def test_not_less_accurate_than_upsampling_on_damaged_real_maps(coco_538):
    """On encoded COCO ground truth damaged like a network's output (blur, lower peaks, noise), the stride-4
    decoder is at least as accurate as the paper's upsample-then-peaks way."""
    from eval.oracle import PAPER_DECODER, run_oracle

    ids = None
    from core.io.annotations import load_keypoint_annotations
    data = load_keypoint_annotations(coco_538, COCO)
    ids = data.image_ids[:20]  # 20 images: ours 0.934, the paper's 0.929 (40: 0.901 / 0.893)
    damage = {"noise": 0.02, "blur": 0.8, "peak_scale": 0.7, "offset_noise": 2.0}
    ours = run_oracle(data, image_ids=ids, decoder=PAPER_DECODER, damage=damage)["AP"]
    paper = run_oracle(data, image_ids=ids, decoder=PAPER_DECODER.with_(peak_mode="upsample"), damage=damage)["AP"]
    assert ours >= paper - 0.01, (ours, paper)


def test_plateaus_give_one_candidate_and_no_duplicate_single_people():
    """A saturated (flat-topped) peak, as fp16 or a saturated head gives, is one keypoint, not several: no
    single-keypoint person appears beside a grouped keypoint of the same type."""
    gt = make_person(128, 128)
    hm, off = encode([gt])
    hm = hm.clone()
    plateau = hm[0, 5] >= 0.8 * hm[0, 5].max()
    assert plateau.sum() >= 2  # several cells share the maximum after saturation
    hm[0, 5][plateau] = hm[0, 5].max()
    poses = decode(hm, off, C)[0]
    assert len(poses) == 1 and (poses.keypoints[0][:, 2] > 0).all()


@pytest.mark.slow  # ~5 s: the limb-score normalisation study on real annotations
def test_limb_score_does_not_reward_distant_ends_at_realistic_offset_noise(data_dir):
    """On the 60 most crowded COCO images with 6 px offset noise, dividing d by the predicted limb length beats
    dividing it by the distance between the candidates (which favours far, wrong ends) by a clear margin."""
    from core.io.annotations import load_keypoint_annotations
    from core.keypoints import COCO
    from eval.oracle import PAPER_DECODER, run_oracle

    data = load_keypoint_annotations(data_dir / "coco" / "person_keypoints_val2017_538img.json", COCO)
    crowded = sorted(data.image_ids, key=lambda i: -data.image(i).n_people)[:60]
    damage = {"offset_noise": 6.0}
    ours = run_oracle(data, image_ids=crowded, decoder=PAPER_DECODER, damage=damage)["AP"]
    by_distance = run_oracle(data, image_ids=crowded, decoder=PAPER_DECODER.with_(limb_norm="distance"),
                             damage=damage)["AP"]
    assert ours >= by_distance + 0.02, (ours, by_distance)
