"""Pictures of whom a model misses (``gopose eval --draw-misses DIR``).

For every evaluated image with an annotated person the results do not find (pycocotools' matching at OKS 0.5, as
in the people-found table), one JPEG: the image with the model's people in their usual colours and each missed
person's annotated skeleton in red, labelled with its people-found row (size, whole or partial).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.overlay import draw_poses
from core.errors import InputError
from core.io.annotations import KeypointDataset
from core.io.files import write_bytes_atomic
from core.poses import Poses
from eval.evaluate import person_kind

LOG = logging.getLogger(__name__)

MISSED = (0, 0, 255)  # BGR


def draw_misses(dataset: KeypointDataset, results: list[dict[str, Any]], matched: dict[int, bool], images: Path,
                out: Path) -> list[Path]:
    """Write ``out/<image id>.jpg`` for each image of ``dataset`` holding a person whose annotation id ``matched``
    marks False and remove the picture an earlier run left of any other image of ``dataset``, so that ``out`` shows
    this run's misses; returns the files written, in the dataset's image order."""
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_image[int(r["image_id"])].append(r)
    k = dataset.spec.n_keypoints
    written, stale = [], 0
    for image in dataset.images:
        missed = [i for i, a in enumerate(image.annotation_ids) if matched.get(int(a)) is False]
        if not missed:
            stale += _remove(out / f"{image.id}.jpg")
            continue
        frame = cv2.imread(str(images / image.file_name), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if frame is None:
            raise InputError(f"image {images / image.file_name} does not decode")
        picture = draw_poses(frame, Poses.from_coco(by_image[image.id], k), dataset.spec)
        gt = image.keypoints[missed].astype(np.float32)
        gt[:, :, 2] = (gt[:, :, 2] > 0).astype(np.float32)
        thick = max(2, round(max(frame.shape[:2]) / 300))
        draw_poses(picture, Poses(gt, np.ones(len(missed), np.float32)), dataset.spec, color=MISSED,
                   thickness=thick, copy=False)
        for i, person in zip(missed, gt):
            size, kind = person_kind(float(image.area[i]), int(person[:, 2].sum()))
            xy = person[person[:, 2] > 0, :2]
            x, y = int(xy[:, 0].min()), int(max(xy[:, 1].min() - 6, 12))
            for color, width in (((0, 0, 0), 3), (MISSED, 1)):  # outlined, readable on any background
                cv2.putText(picture, f"missed: {size}, {kind}", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, width,
                            cv2.LINE_AA)
        path = out / f"{image.id}.jpg"
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise InputError(f"could not encode the picture of image {image.id}")
        write_bytes_atomic(path, data.tobytes())
        written.append(path)
    LOG.info("drew the missed people of %d images into %s (removed %d earlier pictures)", len(written), out, stale)
    return written


def _remove(picture: Path) -> int:
    """Remove an earlier run's ``picture``; 1 when there was one."""
    try:
        picture.unlink()
    except FileNotFoundError:
        return 0
    return 1
