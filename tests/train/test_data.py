"""Augmentation geometry, ignore masks, CrowdPose loading, decode failures and loader determinism (real data)."""
from __future__ import annotations

import copy
import json
import shutil
import signal

import numpy as np
import pytest
import torch

from core.contract import PoseContract
from core.encoder import cell_centers
from core.errors import InputError
from core.keypoints import COCO, CROWDPOSE
from train import augment
from train.config import AugmentationConfig
from train.datasets import Piece, PoseDataset
from train.loader import ResumableSampler, make_loader, start_batches

COCO_C = PoseContract(COCO)


def _coco_mini(data_dir):
    root = data_dir / "coco" / "train2017_mini"
    return root / "annotations.json", root / "images"


@pytest.mark.parametrize("flip", [False, True])
def test_image_and_keypoints_share_one_warp(flip):
    """A smooth blob centred on a keypoint is centred, after the warp, exactly where the keypoint is mapped
    (a half-pixel convention slip would show as a 0.5 px shift)."""
    h, w, size = 90, 120, 64
    rng = np.random.default_rng(3)
    pts = np.array([[30, 20], [100, 70], [60, 45]], np.float32)
    checked = 0
    for _ in range(4):
        params = augment.WarpParams(center=(59.5 + rng.uniform(-5, 5), 44.5), scale=float(rng.uniform(0.6, 0.9)),
                                    rotation_deg=float(rng.uniform(-45, 45)), stretch=(1.1, 1 / 1.1), flip=flip)
        t = augment.params_transform(params, w, h, size)
        yy, xx = np.mgrid[:h, :w]
        for p in pts:
            q = t.apply(p[None])[0]
            if not (8 < q[0] < size - 8 and 8 < q[1] < size - 8):
                continue  # a blob cut by the crop border has a shifted centroid
            blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 4.0 ** 2)).astype(np.float32)
            out = augment.warp_image(np.repeat(blob[:, :, None], 3, 2), t)[:, :, 0].astype(np.float64)
            ys, xs = np.mgrid[:size, :size]
            centroid = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
            np.testing.assert_allclose(centroid, q, atol=0.05)
            checked += 1
    assert checked >= 6


def test_flip_swaps_left_and_right_and_mirrors_positions():
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, 5] = (10, 20, 2)   # left shoulder on the image's left
    kps[0, 6] = (30, 20, 2)   # right shoulder
    t = augment.params_transform(augment.WarpParams((19.5, 19.5), 1.0, 0.0, (1.0, 1.0), True), 40, 40, 40)
    out = augment.warp_keypoints(kps, t, COCO.flip_permutation, flip=True)
    np.testing.assert_allclose(out[0, 5], (39 - 30, 20, 2))   # "left" is now the mirrored right shoulder
    np.testing.assert_allclose(out[0, 6], (39 - 10, 20, 2))


def test_keypoints_leaving_the_crop_become_absent_without_moving():
    kps = np.array([[[5, 5, 2], [100, 5, 2], [20, 20, 0]]], np.float32)
    t = augment.params_transform(augment.WarpParams((19.5, 19.5), 1.0, 0.0, (1.0, 1.0), False), 40, 40, 40)
    out = augment.warp_keypoints(kps, t, None, flip=False)
    assert out[0, :, 2].tolist() == [2, 0, 0]
    np.testing.assert_allclose(out[0, 1, :2], (100, 5))  # absence is v=0, never x=0 / y=0


def test_mask_follows_the_image_warp():
    h, w = 80, 100
    mask = np.zeros((h, w), bool)
    mask[20:50, 30:70] = True
    t = augment.params_transform(augment.WarpParams((49.5, 39.5), 0.7, 30.0, (1.0, 1.0), True), w, h, 64)
    warped_mask = augment.warp_mask(mask, t)
    warped_img = augment.warp_image(np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, 2), t)[:, :, 0] > 127
    assert (warped_mask != warped_img).mean() < 0.01 and warped_mask.sum() > 100


def test_colour_jitter_changes_colours_not_geometry():
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out = augment.colour_jitter(img, np.random.default_rng(1), AugmentationConfig())
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert augment.colour_jitter(img, np.random.default_rng(1), AugmentationConfig(enabled=False)) is img


def test_colour_jitter_keeps_dark_pixels_dark_and_the_order_of_grey_levels():
    """Raised contrast pushes dark pixels below 0: they clip to black instead of coming back up mirrored."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(4, axis=0)
    cfg = AugmentationConfig(brightness=0.0, contrast=0.5, saturation=0.0, hue_deg=0.0)
    raised = 0
    for seed in range(8):
        out = augment.colour_jitter(ramp, np.random.default_rng(seed), cfg)[0, :, 0].astype(int)
        assert (np.diff(out) >= 0).all(), f"seed {seed}: grey levels out of order {out[:12]}"
        raised += out[0] == 0 and out[-1] == 255  # contrast > 1: both ends saturate
    assert raised >= 2


@pytest.mark.parametrize("key", ["brightness", "contrast"])
def test_colour_jitter_amplitudes_above_one_never_black_out_or_invert_the_image(key):
    """An amplitude a > 1 draws factors in [0, 1 + a] (as torchvision's ColorJitter): 1 - a < 0 would make a
    brightness factor below 0 (an all-black image) or a contrast factor below 0 (the photo's negative)."""
    ramp = np.repeat(np.arange(40, 216, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(4, axis=0)
    cfg = AugmentationConfig(**{"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue_deg": 0.0, key: 1.5})
    for seed in range(64):
        out = augment.colour_jitter(ramp, np.random.default_rng(seed), cfg)[0, :, 0].astype(int)
        assert out.max() > 0, f"seed {seed}: {key} jitter turned the image black"
        assert (np.diff(out) >= 0).all(), f"seed {seed}: {key} jitter inverted the grey levels {out[:8]}"


def test_training_images_are_read_as_stored_like_their_annotations(tmp_path, oriented_jpeg):
    """COCO's keypoints are in the stored pixels, whatever a photo's EXIF orientation says (COCO train2017 has
    such photos): the loader must not turn the image away from its annotations."""
    (tmp_path / "1.jpg").write_bytes(oriented_jpeg(np.full((60, 80, 3), 90, np.uint8), 6))
    gt = {"images": [{"id": 1, "file_name": "1.jpg", "width": 80, "height": 60}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 1,
                           "keypoints": [70.0, 10.0, 2] + [0.0, 0.0, 0] * 16, "area": 400.0,
                           "bbox": [60, 0, 20, 20]}]}
    ds = PoseDataset(gt, tmp_path, COCO_C, input_size=64)
    assert ds.load_image(ds.images[0]).shape[:2] == (60, 80)


def test_mosaic_tile_targets_stay_inside_their_tile(data_dir):
    """A person at the corner of the first tile: its Gaussians and offset windows are cut at the tile's border
    (the neighbouring tiles show other photos), and its tile's maps are those of that tile encoded alone."""
    ann, images = _coco_mini(data_dir)
    ds = PoseDataset(ann, images, COCO_C, input_size=128, augmentation=AugmentationConfig(enabled=False))
    grey = np.full((64, 64, 3), 128, np.uint8)
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 0], kps[0, :, 1], kps[0, :, 2] = np.linspace(40, 63, 17), np.linspace(63, 40, 17), 2
    person = Piece(grey, kps, np.zeros((1, 17), bool), np.array([30.0], np.float32), None)
    empty = Piece(grey, np.zeros((0, 17, 3), np.float32), np.zeros((0, 17), bool), np.zeros(0, np.float32), None)
    sample = ds.make_sample([person, empty, empty, empty], np.random.default_rng(0))
    heat, offsets = sample["heatmaps"].float().numpy(), sample["offsets"].numpy()
    assert heat[:, :16, :16].max() > 0.9
    for maps in (heat, offsets, sample["offset_mask"].numpy()):
        assert not maps[:, 16:, :].any() and not maps[:, :, 16:].any()
    t = augment.params_transform(augment.fit_params(64, 64, 64), 64, 64, 64)
    alone = ds.encoder.encode(augment.warp_keypoints(kps, t, None, False), (64, 64), person_scales=[30.0])
    np.testing.assert_array_equal(heat[:, :16, :16], alone.heatmaps.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(offsets[:, :16, :16], alone.offsets)


def _one_person(xy0=(20.0, 20.0), side=30.0):
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 0] = np.linspace(xy0[0], xy0[0] + side, 17)
    kps[0, :, 1] = np.linspace(xy0[1], xy0[1] + side, 17)
    kps[0, :, 2] = 2
    return kps


def test_occlusion_copies_a_window_of_the_photo_over_one_persons_keypoint():
    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    photo = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    kps = _one_person()
    before = img.copy()
    cfg = AugmentationConfig(occlusion_prob=1.0, occlusion_size=0.6)
    for seed in range(20):
        out = augment.occlude(img, kps, np.random.default_rng(seed), cfg, source=photo)
        ys, xs = np.nonzero((out != img).any(-1))
        assert len(ys), seed
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert 2 <= max(y1 - y0, x1 - x0) <= 0.6 * 30 * 2 ** 0.5 + 1     # within the drawn size and aspect
        covered = (kps[0, :, 0] >= x0 - 1) & (kps[0, :, 0] <= x1) & (kps[0, :, 1] >= y0 - 1) & (kps[0, :, 1] <= y1)
        assert covered.any(), seed                                     # centred on one of the person's keypoints
        patch = out[y0:y1, x0:x1]                                      # the content is a region of the input
        windows = np.lib.stride_tricks.sliding_window_view(photo, patch.shape)[..., 0, :, :, :]
        assert (windows == patch).all(axis=(-3, -2, -1)).any(), seed  # a window of the photo
    assert np.array_equal(img, before)                                 # the input is not changed
    columns = np.broadcast_to(np.arange(80, dtype=np.uint8)[None, :, None], (64, 80, 3)).copy()
    out = augment.occlude(img, kps, np.random.default_rng(0), cfg, source=columns, zoom=2.0)
    rows = np.nonzero((out != img).any(-1).any(1))[0]
    strip = out[rows[len(rows) // 2], :, 0][(out != img).any(-1)[rows[len(rows) // 2]]]
    assert np.all(np.diff(strip.astype(int)) >= 0) and np.ptp(strip) <= len(strip) / 2 + 1  # the photo at 2x
    tiny = np.full((3, 3, 3), 7, np.uint8)                             # a photo smaller than the occluder: resized
    out = augment.occlude(img, kps, np.random.default_rng(0), cfg, source=tiny)
    changed = (out != img).any(-1)
    assert changed.any() and (out[changed] == 7).all()


def test_occlusion_off_draws_nothing_and_skips_people_without_two_keypoints():
    img = np.zeros((32, 32, 3), np.uint8)
    rng = np.random.default_rng(3)
    assert augment.occlude(img, _one_person(), rng, AugmentationConfig()) is img
    assert rng.random() == np.random.default_rng(3).random()                      # no draw when disabled
    lone = _one_person()
    lone[0, 1:, 2] = 0
    assert augment.occlude(img, lone, rng, AugmentationConfig(occlusion_prob=1.0)) is img
    on = AugmentationConfig(enabled=False, occlusion_prob=1.0)
    assert augment.occlude(img, _one_person(), rng, on) is img


def test_occluded_samples_keep_their_targets(data_dir):
    ann, images = _coco_mini(data_dir)
    plain = PoseDataset(ann, images, COCO_C, input_size=128, seed=5)
    covered = PoseDataset(ann, images, COCO_C, input_size=128, seed=5,
                          augmentation=AugmentationConfig(occlusion_prob=1.0))
    i = plain.image_ids.index(535506)  # one large person
    a, b = plain[i], covered[i]
    assert torch.equal(a["heatmaps"], b["heatmaps"]) and torch.equal(a["offsets"], b["offsets"])
    assert not torch.equal(a["image"], b["image"])


def test_crowd_and_keypointless_people_are_ignored(data_dir):
    ann, images = _coco_mini(data_dir)
    ds = PoseDataset(ann, images, COCO_C, input_size=256, augmentation=AugmentationConfig(enabled=False))
    crowd_img = next(img for img in ds.images if img.id == 129648)  # a crowd RLE plus people with keypoints
    mask = ds.ignore_mask(crowd_img, crowd_img.height, crowd_img.width)
    raw = json.loads(ann.read_text())
    crowd = next(a for a in raw["annotations"] if a["image_id"] == 129648 and a["iscrowd"])
    assert mask is not None and mask.sum() >= 0.9 * crowd["area"]
    sample = ds[ds.image_ids.index(129648)]
    assert sample["ignore"].any() and sample["ignore"].shape == (64, 64)
    # an image whose only extra rows are people without keypoints: their segmentations are masked
    none_kp = [a for a in raw["annotations"] if a["num_keypoints"] == 0 and not a["iscrowd"]]
    img_id = next(a["image_id"] for a in none_kp if a["image_id"] in ds.image_ids)
    rec = ds.images[ds.image_ids.index(img_id)]
    assert ds.ignore_mask(rec, rec.height, rec.width).any()


def test_samples_are_deterministic_per_seed_epoch_index(data_dir):
    ann, images = _coco_mini(data_dir)
    ds = PoseDataset(ann, images, COCO_C, input_size=128, seed=7)
    a, b = ds[3], ds[3]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["heatmaps"], b["heatmaps"])
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["image"], a["image"])
    assert a["heatmaps"].shape == (17, 32, 32) and a["offsets"].shape == (38, 32, 32)


def test_targets_match_the_warped_keypoints(data_dir):
    ann, images = _coco_mini(data_dir)
    ds = PoseDataset(ann, images, COCO_C, input_size=256, augmentation=AugmentationConfig(enabled=False))
    i = ds.image_ids.index(535506)  # one large person
    s = ds[i]
    rec = ds.images[i]
    t = augment.params_transform(augment.fit_params(rec.width, rec.height, 256), rec.width, rec.height, 256)
    kps = augment.warp_keypoints(rec.keypoints[rec.num_keypoints > 0], t, None, False)[0]
    nose = kps[0]
    assert nose[2] > 0
    peak = np.unravel_index(int(s["heatmaps"][0].argmax()), (64, 64))
    assert abs(peak[0] * 4 + 1.5 - nose[1]) <= 2.5 and abs(peak[1] * 4 + 1.5 - nose[0]) <= 2.5


def test_crowdpose_mini_loads_with_14_keypoints_and_box_masks(data_dir):
    root = data_dir / "crowdpose" / "mini"
    ds = PoseDataset(root / "test_crowdpose.json", root, PoseContract(CROWDPOSE), input_size=128,
                     min_keypoints=0)
    assert len(ds) == 2 and all(img.crowd_index is not None for img in ds.images)
    s = ds[0]
    assert s["heatmaps"].shape == (14, 32, 32) and s["offsets"].shape == (30, 32, 32)
    for img in ds.images:  # no segmentations in CrowdPose: keypoint-less people are masked by their boxes
        if ((img.num_keypoints == 0) | img.iscrowd).any():
            assert ds.ignore_mask(img, img.height, img.width).any()


def test_undecodable_images_are_logged_counted_and_skipped(data_dir, tmp_path, caplog):
    ann, images = _coco_mini(data_dir)
    ds0 = PoseDataset(ann, images, COCO_C, input_size=64)
    folder = tmp_path / "images"
    folder.mkdir()
    for img in ds0.images[:4]:
        shutil.copy(images / img.file_name, folder / img.file_name)
    (folder / ds0.images[1].file_name).write_bytes(b"not a jpeg")
    ds = PoseDataset(ann, folder, COCO_C, input_size=64, image_ids=ds0.image_ids[:4])
    with caplog.at_level("WARNING"):
        s = ds[1]
    assert s["skipped"] == 1 and s["image_id"] == ds.image_ids[2] and ds.decode_failures == 1
    assert ds0.images[1].file_name in caplog.text


def test_bad_inputs_name_the_input(data_dir, tmp_path):
    ann, images = _coco_mini(data_dir)
    with pytest.raises(InputError, match="does not exist"):
        PoseDataset(ann, tmp_path / "nope", COCO_C)
    with pytest.raises(InputError, match="123456789"):
        PoseDataset(ann, images, COCO_C, image_ids=[123456789])
    with pytest.raises(InputError, match="keypoints"):
        PoseDataset(ann, images, PoseContract(CROWDPOSE))


def test_resumable_sampler_skips_exactly_the_consumed_samples():
    data = list(range(23))
    full = ResumableSampler(data, num_replicas=2, rank=1, seed=5)
    full.set_position(3)
    tail = ResumableSampler(data, num_replicas=2, rank=1, seed=5)
    tail.set_position(3, start=4)
    assert list(tail) == list(full)[4:] and len(tail) == len(full) - 4


def test_loader_batches_do_not_depend_on_worker_count(data_dir):
    ann, images = _coco_mini(data_dir)
    ds = PoseDataset(ann, images, COCO_C, input_size=64, seed=1)
    batches = {}
    for workers in (0, 2):
        sampler = ResumableSampler(ds, seed=1)
        sampler.set_position(2)
        ds.set_epoch(2)
        batches[workers] = [b for _, b in zip(range(2), make_loader(ds, sampler, 4, workers, seed=1, epoch=2))]
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["offsets"], b["offsets"])


class _SignalInWorker(torch.utils.data.Dataset):
    """Four samples; loading the first sends ``signum`` (if any) to the worker process, as Ctrl-C in a terminal does to
    every process of the foreground group, and Slurm, systemd or ``kill -- -PGID`` do with SIGTERM (a training
    run's DataLoader workers too)."""

    def __init__(self, signum: int | None) -> None:
        self.signum = signum

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        import os

        if i == 0 and self.signum is not None:
            os.kill(os.getpid(), self.signum)
        return {"index": torch.tensor(i)}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_reaching_the_loader_workers_leaves_them_loading(signum):
    """The trainer stops after the current step on SIGINT / SIGTERM and writes a checkpoint; its workers, which
    get the same signal when it goes to the whole process group, must keep serving that step (before: they quit,
    and `gopose train` ended in 'DataLoader worker exited unexpectedly', exit 1, without its checkpoint)."""
    ds = _SignalInWorker(signum)
    sampler = ResumableSampler(ds, shuffle=False)
    loader = make_loader(ds, sampler, 2, 1, seed=0, epoch=0)  # not fork: it dead-locks after OpenCV ran here
    assert [b["index"].tolist() for b in loader] == [[0, 1], [2, 3]]


def test_workers_that_a_sigterm_reaches_while_they_start_keep_loading():
    """A SIGTERM sent to the whole job while an epoch's workers import torch (before their handler is set) killed
    them: ``start_batches`` starts them with SIGTERM held back, also in the first epoch, whose start launches
    multiprocessing's resource tracker (which unblocks SIGTERM after itself)."""
    import os

    ds = _SignalInWorker(None)
    batches = start_batches(make_loader(ds, ResumableSampler(ds, shuffle=False), 2, 2, seed=0, epoch=0))
    for worker in batches._workers:
        os.kill(worker.pid, signal.SIGTERM)
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2, 3]]


# ---------------------------------------------------------------------------------------------- LSPET ignore rules
LSPET_IDS = [3, 5, 6]  # train images whose people have unlabelled keypoints (3: [0, 2, 3, 4, 6, 8, 10])


@pytest.fixture(scope="module")
def lspet_train(data_dir):
    root = data_dir / "lspet"
    return PoseDataset(root / "annotations.json", root / "images", COCO_C, input_size=128, split="train",
                       image_ids=LSPET_IDS, seed=2)


def _with_augmentation(ds: PoseDataset, cfg: AugmentationConfig) -> PoseDataset:
    out = copy.copy(ds)
    out.augmentation = cfg
    return out


def _cells_in_source(ds: PoseDataset, i: int, cfg: AugmentationConfig):
    """The sample's warp and the source-image coordinates of its output-cell centres."""
    rec = ds.images[i]
    params = augment.sample_params(ds.rng(i), cfg, rec.width, rec.height, ds.input_size)
    t = augment.params_transform(params, rec.width, rec.height, ds.input_size)
    c = cell_centers(ds.input_size // 4, 4).astype(np.float64)
    return params, t, t.inverse(np.stack(np.meshgrid(c, c), -1))


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_lspet_losses_are_ignored_outside_the_supervised_region_only(lspet_train, flip):
    """Bystanders are not annotated: the cells that show the photo outside its supervised region are ignored,
    those inside are trained, whatever the warp (rotation, scale, flip)."""
    cfg = AugmentationConfig(flip_prob=flip)
    ds = _with_augmentation(lspet_train, cfg)
    for i, rec in enumerate(ds.images):
        params, _, src = _cells_in_source(ds, i, cfg)
        assert params.flip == bool(flip)
        x, y, w, h = ds.sources[0].regions[rec.id]
        in_image = (src[..., 0] >= -0.5) & (src[..., 0] < rec.width - 0.5) \
            & (src[..., 1] >= -0.5) & (src[..., 1] < rec.height - 0.5)
        in_region = (src[..., 0] >= x) & (src[..., 0] < x + w) & (src[..., 1] >= y) & (src[..., 1] < y + h)
        ignore = ds[i]["ignore"].numpy()
        assert (ignore & in_region).sum() <= 3, rec.id                       # a cell on the edge at most
        outside = in_image & ~in_region
        assert outside.sum() > 50 and (ignore[outside]).mean() > 0.97, rec.id


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_lspet_unlabelled_keypoints_are_ignored_in_their_channel_near_their_person(lspet_train, flip):
    """Unknown is not absent: a person's unlabelled keypoints have their heatmap channel (after a flip the mirrored
    channel) ignored around that person, not in the other channels and not over the whole crop."""
    cfg = AugmentationConfig(flip_prob=flip)
    ds = _with_augmentation(lspet_train, cfg)
    perm = COCO.flip_permutation
    for i, rec in enumerate(ds.images):
        params, t, _ = _cells_in_source(ds, i, cfg)
        unknown = ds.piece(i).unknown[0]
        expected = unknown[list(perm)] if params.flip else unknown
        sample = ds[i]
        kig = sample["keypoint_ignore"].numpy()
        assert np.array_equal(kig.any((1, 2)), expected), rec.id
        kps = rec.keypoints[rec.is_person][0]
        xy = t.apply(kps[kps[:, 2] > 0, :2].astype(np.float64))
        lo, hi = xy.min(0), xy.max(0)
        reach = 0.25 * (hi - lo).max() + 8.0 + 4.0
        c = cell_centers(ds.input_size // 4, 4)
        gx, gy = np.meshgrid(c, c)
        far = (gx < lo[0] - reach) | (gx > hi[0] + reach) | (gy < lo[1] - reach) | (gy > hi[1] + reach)
        assert not kig[:, far].any(), rec.id
        assert kig[expected].any((1, 2)).all()


@pytest.mark.parametrize("image_field, ann_field, problem", [
    ({}, {"unlabelled": [17]}, "unlabelled"), ({}, {"unlabelled": [-1]}, "unlabelled"),
    ({}, {"unlabelled": ["nose"]}, "unlabelled"), ({}, {"unlabelled": 3}, "unlabelled"),
    ({"supervised_region": [1, 2, 3]}, {}, "supervised_region"),
    ({"supervised_region": "all"}, {}, "supervised_region")])
def test_malformed_ignore_fields_are_reported_when_loading(tmp_path, image_field, ann_field, problem):
    """A broken ``unlabelled`` list or ``supervised_region`` stops the dataset at once with the file, the record and
    the field named, instead of a traceback from a DataLoader worker mid-epoch (or, for -1, ignoring the wrong
    keypoint in silence)."""
    import cv2

    cv2.imwrite(str(tmp_path / "1.jpg"), np.zeros((60, 80, 3), np.uint8))
    gt = {"images": [{"id": 1, "file_name": "1.jpg", "width": 80, "height": 60, **image_field}],
          "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 1,
                           "keypoints": [70.0, 10.0, 2] + [0.0, 0.0, 0] * 16, "area": 400.0,
                           "bbox": [60, 0, 20, 20], **ann_field}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(InputError, match=rf"ann\.json.*(image 1|annotation 7).*{problem}"):
        PoseDataset(path, tmp_path, COCO_C, input_size=64)
