"""COCO and CrowdPose keypoint training sets: image + annotations -> augmented crop + encoder targets.

``PoseDataset`` reads a COCO-style keypoint file (``eval.annotations``; CrowdPose's 14-keypoint files with
``crowdIndex`` and no segmentations included) and an image folder. Per sample it builds the ignore mask (crowd
regions' segmentation masks via pycocotools; people without keypoints by their segmentation, or their box when the
file has none), draws one affine warp (``train.augment``), and encodes the targets with ``core.encoder``. Targets
``heatmaps`` and ``person_scale`` are float16 (the trainer widens them on the device), keypoint-scale targets are
only produced for a contract with a scale head. Every random draw comes from a generator seeded by ``(seed, epoch,
index)``, so a sample is the same whatever worker makes it, and a run is reproducible given its seed and epoch.
Images that fail to decode are logged, counted (``sample["skipped"]``) and replaced by the next image.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.contract import PoseContract
from core.encoder import TargetEncoder
from core.errors import InputError
from eval.annotations import ImageAnnotations, KeypointDataset, load_keypoint_annotations
from train import augment
from train.config import AugmentationConfig

LOG = logging.getLogger(__name__)

TARGET_KEYS = ("heatmaps", "offsets", "offset_mask", "person_scale", "keypoint_scale", "keypoint_scale_mask",
               "ignore")
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


class PoseDataset(Dataset):
    """Augmented training samples with targets for ``contract`` from one annotation file and image folder."""

    def __init__(self, annotations: str | Path | KeypointDataset, images_dir: str | Path, contract: PoseContract,
                 input_size: int = 512, augmentation: AugmentationConfig | None = None,
                 encoder: TargetEncoder | None = None, seed: int = 0, image_ids: Sequence[int] | None = None,
                 min_keypoints: int = 1) -> None:
        self.contract = contract
        self.spec = contract.spec
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise InputError(f"image folder {self.images_dir} does not exist")
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
        self.images: list[ImageAnnotations] = []
        for img in data.images:
            if wanted is not None and img.id not in wanted:
                continue
            people = ~img.iscrowd & (img.num_keypoints >= max(min_keypoints, 1))
            if min_keypoints > 0 and not people.any():
                continue
            self.images.append(img)
        if not self.images:
            raise InputError(f"{self.source}: no training images left (min_keypoints={min_keypoints}, "
                             f"image_ids={sorted(wanted)[:5] if wanted else 'all'})")
        # segmentations of the regions to ignore only (crowds, people without keypoints), by annotation id
        needed = {int(a) for img in self.images for a, c, n in
                  zip(img.annotation_ids, img.iscrowd, img.num_keypoints) if c or n == 0}
        self._segmentations = {int(a["id"]): a.get("segmentation") for a in data.raw["annotations"]
                               if int(a.get("id", -1)) in needed}
        self.decode_failures = 0

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Samples depend on (seed, epoch, index); call before each epoch (workers are re-created per epoch)."""
        self.epoch = int(epoch)

    @property
    def image_ids(self) -> list[int]:
        return [img.id for img in self.images]

    # ------------------------------------------------------------------ pieces
    def load_image(self, img: ImageAnnotations) -> np.ndarray | None:
        """The BGR uint8 image, or None (logged) when it is missing or does not decode."""
        path = self.images_dir / img.file_name
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if image is None:
            LOG.warning("skipping image %s: missing or not decodable", path)
            return None
        if image.shape[:2] != (img.height, img.width):
            LOG.debug("image %s is %dx%d, annotations say %dx%d", path, image.shape[1], image.shape[0],
                      img.width, img.height)
        return image

    def ignore_mask(self, img: ImageAnnotations, height: int, width: int) -> np.ndarray | None:
        """Union of crowd regions and people without keypoints (segmentation, else box) in image pixels."""
        rows = np.flatnonzero(img.iscrowd | (img.num_keypoints == 0))
        if len(rows) == 0:
            return None
        mask = np.zeros((height, width), bool)
        for r in rows:
            seg = _seg_mask(self._segmentations.get(int(img.annotation_ids[r])), height, width)
            if seg is not None and seg.shape == mask.shape:
                mask |= seg
                continue
            x, y, w, h = img.bbox[r]
            if w > 0 and h > 0:  # box covers pixels whose centres lie inside [x, x + w)
                x0, y0 = max(int(np.ceil(x - 0.5)), 0), max(int(np.ceil(y - 0.5)), 0)
                x1, y1 = min(int(np.ceil(x + w - 0.5)), width), min(int(np.ceil(y + h - 0.5)), height)
                mask[y0:y1, x0:x1] = True
        return mask if mask.any() else None

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    # ------------------------------------------------------------------ sample
    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped = 0
        for attempt in range(len(self.images)):
            i = (int(index) + attempt) % len(self.images)
            img = self.images[i]
            image = self.load_image(img)
            if image is not None:
                sample = self.make_sample(i, img, image)
                sample["skipped"] = skipped
                return sample
            skipped += 1
            self.decode_failures += 1
        raise InputError(f"no image of {self.source} in {self.images_dir} could be decoded")

    def make_sample(self, index: int, img: ImageAnnotations, image: np.ndarray) -> dict[str, Any]:
        """Warp, jitter and encode one decoded image."""
        height, width = image.shape[:2]
        size = self.input_size
        rng = self.rng(index)
        params = augment.sample_params(rng, self.augmentation, width, height, size)
        transform = augment.params_transform(params, width, height, size)
        crop = augment.colour_jitter(augment.warp_image(image, transform), rng, self.augmentation)
        people = ~img.iscrowd & (img.num_keypoints > 0)
        kps = augment.warp_keypoints(img.keypoints[people], transform, self.spec.flip_permutation, params.flip)
        # person scale: sqrt(area) of the annotation, times the warp's linear scale
        linear = float(np.sqrt(abs(np.linalg.det(transform.matrix[:, :2]))))
        area = img.area[people]
        fallback = np.sqrt(np.maximum(img.bbox[people, 2] * img.bbox[people, 3], 1.0))
        scales = (np.where(area > 0, np.sqrt(np.maximum(area, 1.0)), fallback) * linear).astype(np.float32)
        mask = self.ignore_mask(img, height, width)
        crop_mask = augment.warp_mask(mask, transform) if mask is not None else None
        targets = self.encoder.encode(kps, (size, size), person_scales=scales, ignore_mask=crop_mask)
        sample: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(crop))}
        for key in TARGET_KEYS:
            if key.startswith("keypoint_scale") and not self.contract.with_scale:
                continue  # no scale head: do not ship its targets between processes
            value = getattr(targets, key)
            if key in HALF_KEYS:
                value = value.astype(np.float16)
            sample[key] = torch.from_numpy(np.ascontiguousarray(value))
        sample["image_id"] = int(img.id)
        sample["index"] = int(index)
        sample["n_people"] = int(np.count_nonzero((kps[:, :, 2] > 0).any(1))) if len(kps) else 0
        return sample


def build_dataset(dataset: str, annotations: str | Path, images_dir: str | Path, contract: PoseContract,
                  **kwargs: Any) -> PoseDataset:
    """A ``PoseDataset`` after checking that ``contract`` matches ``dataset`` (coco: 17, crowdpose: 14 keypoints)."""
    if contract.spec.name != dataset:
        raise InputError(f"dataset {dataset!r} needs the {dataset} keypoint spec, the model uses {contract.spec.name}")
    return PoseDataset(annotations, images_dir, contract, **kwargs)
