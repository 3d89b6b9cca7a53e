"""COCO, CrowdPose and LSPET keypoint training sets: images + annotations -> augmented crops + encoder targets.

``PoseDataset`` reads a COCO-style keypoint file (``core.io.annotations``; CrowdPose's 14-keypoint files with
``crowdIndex`` and no segmentations included) and an image folder; ``PoseDataset.merge`` mixes several such
sources (each repeated a number of times) into one. Per sample it builds the ignore mask (crowd regions'
segmentation masks via pycocotools; people without keypoints by their segmentation, or their box when the file has
none; everything outside an image's ``supervised_region`` when the file gives one, as LSPET does), draws one
affine warp (``train.augment``) or, with ``augmentation.mosaic_prob``, a 2x2 mosaic of four warped images,
covers part of a person with ``augmentation.occlusion_prob``, and encodes the targets with ``core.encoder``. A
person's ``unlabelled`` keypoints (presence unknown) have their heatmap channel ignored around that person instead
of being trained as absent. Targets
``heatmaps`` and ``person_scale`` are float16 (the trainer widens them on the device), keypoint-scale targets are
only produced for a contract with a scale head. Every random draw comes from a generator seeded by ``(seed, epoch,
index)``, so a sample is the same whatever worker makes it, and a run is reproducible given its seed and epoch.
Images that fail to decode are logged, counted (``sample["skipped"]``) and replaced by the next image.
"""
from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.contract import PoseContract
from core.encoder import TargetEncoder, Targets
from core.errors import InputError
from core.io.annotations import ImageAnnotations, KeypointDataset, load_keypoint_annotations
from train import augment
from train.config import AugmentationConfig

LOG = logging.getLogger(__name__)

TARGET_KEYS = ("heatmaps", "offsets", "offset_mask", "person_scale", "keypoint_scale", "keypoint_scale_mask",
               "ignore", "keypoint_ignore")
#: a person's unknown keypoints are ignored in the box of its labelled keypoints grown by this share of its side
UNKNOWN_MARGIN = 0.25
# Shipped as float16 to halve the bytes workers hand over (a 512 crop's targets are several MB): heatmaps lie in
# [0, 1] (float16 step <= 0.0005) and person scales only normalise offset errors. Offsets stay float32.
HALF_KEYS = ("heatmaps", "person_scale")


def _seg_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """A COCO segmentation (polygons, RLE or compressed RLE) as a bool ``(H, W)`` mask; None when empty."""
    from pycocotools import mask as mask_utils

    if not segmentation:
        return None
    if isinstance(segmentation, list):
        polys = [p for p in segmentation if len(p) >= 6]
        if not polys:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    with warnings.catch_warnings():  # pycocotools' NumPy 2 copy-keyword deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


@dataclass
class _Source:
    """What one annotation file adds to a dataset beyond its image records."""

    name: str
    images_dir: Path
    segmentations: dict[int, Any]                 # annotation id -> segmentation of a region to ignore
    regions: dict[int, tuple[float, ...]]         # image id -> supervised region (x, y, w, h)
    unknown: dict[int, list[int]]                 # annotation id -> keypoints whose presence is unknown


@dataclass
class Piece:
    """One decoded image with its people, in image pixels, before augmentation."""

    image: np.ndarray            # (H, W, 3) BGR uint8
    keypoints: np.ndarray        # (P, K, 3)
    unknown: np.ndarray          # (P, K) bool: presence unknown
    scales: np.ndarray           # (P,) person scale, sqrt(area)
    ignore: np.ndarray | None    # (H, W) bool, excluded from every loss


class PoseDataset(Dataset):
    """Augmented training samples with targets for ``contract`` from an annotation file and image folder.

    ``split`` keeps the images whose ``split`` field equals it (LSPET's train / val); ``repeat`` lists every image
    that many times (oversampling a small source in a mix); annotations flagged ``skip_flag`` (LSPET's
    ``lr_suspect``, probable left/right swaps) drop their whole image.
    """

    def __init__(self, annotations: str | Path | KeypointDataset, images_dir: str | Path, contract: PoseContract,
                 input_size: int = 512, augmentation: AugmentationConfig | None = None,
                 encoder: TargetEncoder | None = None, seed: int = 0, image_ids: Sequence[int] | None = None,
                 min_keypoints: int = 1, split: str | None = None, repeat: int = 1,
                 skip_flag: str = "lr_suspect") -> None:
        self.contract = contract
        self.spec = contract.spec
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise InputError(f"image folder {images_dir} does not exist")
        if repeat < 1:
            raise InputError(f"repeat must be >= 1, got {repeat}")
        data = annotations if isinstance(annotations, KeypointDataset) else \
            load_keypoint_annotations(annotations, self.spec)
        self.source = data.describe()
        self.input_size = int(input_size)
        self.augmentation = augmentation or AugmentationConfig()
        self.encoder = encoder or TargetEncoder(contract)
        self.seed = int(seed)
        self.epoch = 0
        wanted = None if not image_ids else {int(i) for i in image_ids}
        if wanted is not None:
            missing = wanted - set(data.image_ids)
            if missing:
                raise InputError(f"image ids {sorted(missing)[:5]} are not in {self.source}")
        raw_images = {int(r["id"]): r for r in data.raw["images"]}
        flagged = {int(a["image_id"]) for a in data.raw["annotations"] if a.get(skip_flag)}
        if split is not None and not any("split" in r for r in raw_images.values()):
            raise InputError(f"{self.source} has no 'split' field in its images; cannot select split {split!r}")
        images: list[ImageAnnotations] = []
        for img in data.images:
            if wanted is not None and img.id not in wanted:
                continue
            if split is not None and raw_images[img.id].get("split") != split:
                continue
            if img.id in flagged:
                continue
            people = ~img.iscrowd & (img.num_keypoints >= max(min_keypoints, 1))
            if min_keypoints > 0 and not people.any():
                continue
            images.append(img)
        if not images:
            raise InputError(f"{self.source}: no training images left (min_keypoints={min_keypoints}, "
                             f"split={split}, image_ids={sorted(wanted)[:5] if wanted else 'all'})")
        # segmentations of the regions to ignore only (crowds, people without keypoints), by annotation id
        needed = {int(a) for img in images for a, c, n in
                  zip(img.annotation_ids, img.iscrowd, img.num_keypoints) if c or n == 0}
        kept = {img.id for img in images}
        source = _Source(
            name=self.source, images_dir=images_dir,
            segmentations={int(a["id"]): a.get("segmentation") for a in data.raw["annotations"]
                           if int(a.get("id", -1)) in needed},
            regions={i: _region(raw_images[i]["supervised_region"], f"{self.source}: image {i}") for i in kept
                     if raw_images[i].get("supervised_region")},
            unknown={int(a["id"]): _keypoint_list(a["unlabelled"], self.spec.n_keypoints,
                                                  f"{self.source}: annotation {a['id']}")
                     for a in data.raw["annotations"] if a.get("unlabelled") is not None
                     and int(a["image_id"]) in kept})
        self.sources: list[_Source] = [source]
        self.records: list[tuple[int, ImageAnnotations]] = [(0, img) for img in images] * int(repeat)
        self.decode_failures = 0

    @classmethod
    def merge(cls, datasets: Sequence["PoseDataset"]) -> "PoseDataset":
        """One dataset holding the records of ``datasets`` in order (their repeats kept); augmentation, encoder,
        input size and seed come from the first. All must share the contract."""
        if not datasets:
            raise InputError("no datasets to merge")
        first = datasets[0]
        for ds in datasets[1:]:
            if ds.contract != first.contract:
                raise InputError(f"cannot mix {ds.source} ({ds.contract.spec.name}) with {first.source} "
                                 f"({first.contract.spec.name})")
        out = copy.copy(first)
        out.sources, out.records = [], []
        for ds in datasets:
            offset = len(out.sources)
            out.sources += ds.sources
            out.records += [(offset + s, img) for s, img in ds.records]
        out.source = " + ".join(s.name for s in out.sources)
        return out

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Samples depend on (seed, epoch, index); call before each epoch (workers are re-created per epoch)."""
        self.epoch = int(epoch)

    @property
    def images(self) -> list[ImageAnnotations]:
        return [img for _, img in self.records]

    @property
    def image_ids(self) -> list[int]:
        return [img.id for _, img in self.records]

    # ------------------------------------------------------------------ pieces
    def load_image(self, img: ImageAnnotations, source: int = 0) -> np.ndarray | None:
        """The BGR uint8 image, or None (logged) when it is missing or does not decode."""
        path = self.sources[source].images_dir / img.file_name
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if path.is_file() else None
        if image is None:
            LOG.warning("skipping image %s: missing or not decodable", path)
            return None
        if image.shape[:2] != (img.height, img.width):
            LOG.debug("image %s is %dx%d, annotations say %dx%d", path, image.shape[1], image.shape[0],
                      img.width, img.height)
        return image

    def ignore_mask(self, img: ImageAnnotations, height: int, width: int, source: int = 0) -> np.ndarray | None:
        """Union of crowd regions, people without keypoints (segmentation, else box) and everything outside the
        image's supervised region, in image pixels; None when nothing is ignored."""
        src = self.sources[source]
        mask = np.zeros((height, width), bool)
        for r in np.flatnonzero(img.iscrowd | (img.num_keypoints == 0)):
            seg = _seg_mask(src.segmentations.get(int(img.annotation_ids[r])), height, width)
            if seg is not None and seg.shape == mask.shape:
                mask |= seg
            else:
                _fill_box(mask, img.bbox[r], True)
        region = src.regions.get(img.id)
        if region is not None:
            inside = np.zeros_like(mask)
            _fill_box(inside, region, True)
            mask |= ~inside
        return mask if mask.any() else None

    def piece(self, index: int) -> Piece | None:
        """Record ``index`` decoded with its people (None when the image does not decode)."""
        source, img = self.records[index]
        image = self.load_image(img, source)
        if image is None:
            return None
        people = img.is_person
        unknown = np.zeros((int(people.sum()), self.spec.n_keypoints), bool)
        lists = self.sources[source].unknown
        for row, ann_id in enumerate(img.annotation_ids[people]):
            unknown[row, lists.get(int(ann_id), [])] = True
        area = img.area[people]
        fallback = np.sqrt(np.maximum(img.bbox[people, 2] * img.bbox[people, 3], 1.0))
        scales = np.where(area > 0, np.sqrt(np.maximum(area, 1.0)), fallback).astype(np.float32)
        height, width = image.shape[:2]
        return Piece(image, img.keypoints[people], unknown, scales, self.ignore_mask(img, height, width, source))

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    # ------------------------------------------------------------------ sample
    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        aug = self.augmentation
        mosaic = aug.enabled and aug.mosaic_prob > 0 and rng.random() < aug.mosaic_prob
        indices = [int(index)] + (rng.integers(0, len(self), 3).tolist() if mosaic else [])
        pieces, skipped = [], 0
        for first in indices:
            for attempt in range(len(self)):
                i = (first + attempt) % len(self)
                piece = self.piece(i)
                if piece is not None:
                    pieces.append((i, piece))
                    break
                skipped += 1
                self.decode_failures += 1
            else:
                raise InputError(f"no image of {self.source} could be decoded")
        sample = self.make_sample([p for _, p in pieces], rng)
        sample["skipped"] = skipped
        sample["image_id"] = int(self.records[pieces[0][0]][1].id)
        sample["index"] = int(pieces[0][0])
        return sample

    def make_sample(self, pieces: Sequence[Piece], rng: np.random.Generator) -> dict[str, Any]:
        """Warp, jitter and encode one image (one piece) or a 2x2 mosaic (four pieces, one per quadrant)."""
        size = self.input_size
        tile = size if len(pieces) == 1 else size // 2
        canvas = np.zeros((size, size, 3), np.uint8)
        kps_all, tiles = [], []
        for j, piece in enumerate(pieces):
            x0, y0 = (0, 0) if len(pieces) == 1 else ((j % 2) * tile, (j // 2) * tile)
            height, width = piece.image.shape[:2]
            params = augment.sample_params(rng, self.augmentation, width, height, tile)
            transform = augment.params_transform(params, width, height, tile)
            perm = self.spec.flip_permutation
            kps = augment.warp_keypoints(piece.keypoints, transform, perm, params.flip)
            image = augment.occlude(augment.warp_image(piece.image, transform), kps, rng, self.augmentation,
                                    source=piece.image, zoom=transform.zoom)
            canvas[y0:y0 + tile, x0:x0 + tile] = augment.colour_jitter(image, rng, self.augmentation)
            ignore = None if piece.ignore is None else augment.warp_mask(piece.ignore, transform)
            labelled, unknown = piece.keypoints[:, :, 2] > 0, piece.unknown
            if params.flip:
                labelled, unknown = labelled[:, list(perm)], unknown[:, list(perm)]
            # person scale: sqrt(area) of the annotation, times the warp's linear scale
            tiles.append((x0, y0, self.encoder.encode(kps, (tile, tile), person_scales=piece.scales * transform.zoom,
                                                      ignore_mask=ignore,
                                                      keypoint_ignore_boxes=_unknown_boxes(kps, labelled, unknown,
                                                                                           tile))))
            kps_all.append(kps)
        targets = _paste_tiles(tiles, size, self.contract.stride)
        kps = np.concatenate(kps_all) if kps_all else np.zeros((0, self.spec.n_keypoints, 3), np.float32)
        sample: dict[str, Any] = {"image": torch.from_numpy(canvas)}
        for key in TARGET_KEYS:
            if key.startswith("keypoint_scale") and not self.contract.with_scale:
                continue  # no scale head: do not ship its targets between processes
            value = targets[key]
            if key in HALF_KEYS:
                value = value.astype(np.float16)
            sample[key] = torch.from_numpy(np.ascontiguousarray(value))
        sample["n_people"] = int(np.count_nonzero((kps[:, :, 2] > 0).any(1))) if len(kps) else 0
        return sample


def _paste_tiles(tiles: Sequence[tuple[int, int, Targets]], size: int, stride: int) -> dict[str, np.ndarray]:
    """The maps of a ``size`` x ``size`` canvas from the targets of its tiles, each encoded on its own grid at input
    pixel ``(x0, y0)``: no target of one tile (a Gaussian's tail, an offset window) reaches into a neighbour, which
    shows another photo."""
    cells = size // stride
    maps: dict[str, np.ndarray] = {}
    for x0, y0, targets in tiles:
        if x0 % stride or y0 % stride:
            raise ValueError(f"tile origin ({x0}, {y0}) is not on the stride-{stride} grid")
        cx, cy = x0 // stride, y0 // stride
        for key, value in targets.as_dict().items():
            if key not in maps:
                maps[key] = np.zeros(value.shape[:-2] + (cells, cells), value.dtype)
            maps[key][..., cy:cy + value.shape[-2], cx:cx + value.shape[-1]] = value
    return maps


def _region(value: Any, where: str) -> tuple[float, float, float, float]:
    """An image's ``supervised_region`` ``[x, y, w, h]`` as floats; ``InputError`` naming ``where`` otherwise."""
    ok = isinstance(value, (list, tuple)) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
    if not ok:
        raise InputError(f"{where}: 'supervised_region' must be [x, y, w, h] (4 numbers), got {value!r}")
    return tuple(float(v) for v in value)


def _keypoint_list(value: Any, n_keypoints: int, where: str) -> list[int]:
    """A person's ``unlabelled`` keypoint indices (0-based); ``InputError`` naming ``where`` otherwise (a -1 would
    silently name the last keypoint)."""
    ok = isinstance(value, list) and all(
        isinstance(k, (int, float)) and not isinstance(k, bool) and float(k).is_integer() and 0 <= k < n_keypoints
        for k in value)
    if not ok:
        raise InputError(f"{where}: 'unlabelled' must be a list of keypoint indices 0..{n_keypoints - 1}, "
                         f"got {value!r}")
    return [int(k) for k in value]


def _fill_box(mask: np.ndarray, box: Sequence[float], value: bool) -> None:
    """Set the pixels whose centres lie inside the COCO box ``[x, y, w, h)`` (pixel centres at integers)."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        return
    height, width = mask.shape
    x0, y0 = max(int(np.ceil(x - 0.5)), 0), max(int(np.ceil(y - 0.5)), 0)
    x1, y1 = min(int(np.ceil(x + w - 0.5)), width), min(int(np.ceil(y + h - 0.5)), height)
    mask[y0:y1, x0:x1] = value


def _unknown_boxes(keypoints: np.ndarray, labelled: np.ndarray, unknown: np.ndarray, size: int) -> np.ndarray:
    """``(M, 5)`` rows ``(k, x0, y0, x1, y1)``: for every unknown keypoint k of a person, the box of that person's
    labelled keypoints (warped ``keypoints``, also those that left the crop) grown by ``UNKNOWN_MARGIN`` of its
    longer side plus 8 px (a heatmap Gaussian's reach), clipped to the ``size`` x ``size`` crop."""
    rows = []
    for kps, lab, unk in zip(keypoints, labelled, unknown):
        ks = np.flatnonzero(unk)
        if not len(ks) or not lab.any():
            continue
        xy = kps[lab, :2]
        lo, hi = xy.min(0), xy.max(0)
        grow = UNKNOWN_MARGIN * float((hi - lo).max()) + 8.0
        x0, y0 = np.clip(lo - grow, 0, size - 1)
        x1, y1 = np.clip(hi + grow, 0, size - 1)
        rows += [(k, x0, y0, x1, y1) for k in ks]
    return np.asarray(rows, np.float32).reshape(-1, 5)


def build_dataset(dataset: str, annotations: str | Path, images_dir: str | Path, contract: PoseContract,
                  **kwargs: Any) -> PoseDataset:
    """A ``PoseDataset`` after checking that ``contract`` matches ``dataset`` (coco: 17, crowdpose: 14 keypoints)."""
    if contract.spec.name != dataset:
        raise InputError(f"dataset {dataset!r} needs the {dataset} keypoint spec, the model uses {contract.spec.name}")
    return PoseDataset(annotations, images_dir, contract, **kwargs)
