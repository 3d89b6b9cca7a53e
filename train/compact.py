"""A compact copy of a keypoint training set: the images a training run uses, re-encoded (WebP) and optionally
shrunk, with their annotations scaled to match. It is how the shipped default model's data travelled to a GPU
machine whose upload limit (64 MiB) is below LSPET's 188 MB; training reads the copy as it reads the original.

    python -m train.compact ../shared/data/lspet/annotations.json ../shared/data/lspet/images OUT/lspet \\
        --split train --long-edge 256 --quality 60

Kept: the images of ``--split`` (all without it) that hold a non-crowd person with a labelled keypoint, with all
their annotations (crowd regions too). A shrunk image's coordinates follow the project's pixel-centre convention
(``core.geometry``): points, boxes and ``supervised_region`` move as ``x -> s * (x + 0.5) - 0.5``, sizes scale by
``s``, areas by ``s**2``. An image whose annotations hold RLE masks is never shrunk (RLE does not scale).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.errors import InputError
from core.io.files import write_bytes_atomic, write_text_atomic

LOG = logging.getLogger(__name__)
SUFFIX = ".webp"


def _point(v: float, s: float) -> float:
    return round(s * (v + 0.5) - 0.5, 2)


def _scale_box(box: list[float], s: float) -> list[float]:
    """``[x, y, w, h]`` scaled about the pixel-centre origin."""
    x, y, w, h = box
    return [_point(x, s), _point(y, s), round(w * s, 2), round(h * s, 2)]


def scale_annotation(ann: dict[str, Any], s: float) -> dict[str, Any]:
    """A copy of ``ann`` for its image resized by ``s`` (keypoints, box, area, polygons)."""
    out = dict(ann)
    for key in ("keypoints", "lsp_extra"):  # x, y, v triplets (LSPET's extra neck and head-top points too)
        if key in ann:
            kp = np.asarray(ann[key], float).reshape(-1, 3)
            labelled = kp[:, 2] > 0
            kp[labelled, :2] = s * (kp[labelled, :2] + 0.5) - 0.5
            out[key] = [round(float(v), 2) if i % 3 < 2 else int(v) for i, v in enumerate(kp.ravel())]
    if "bbox" in ann:
        out["bbox"] = _scale_box(ann["bbox"], s)
    if "area" in ann:
        out["area"] = round(float(ann["area"]) * s * s, 2)
    if isinstance(ann.get("segmentation"), list):
        out["segmentation"] = [[_point(v, s) for v in poly] for poly in ann["segmentation"]]
    return out


def _has_rle(anns: list[dict[str, Any]]) -> bool:
    return any(isinstance(a.get("segmentation"), dict) for a in anns)


def _used(anns: list[dict[str, Any]]) -> bool:
    """Whether an image has a person a training run learns from (non-crowd, a labelled keypoint)."""
    return any(not a.get("iscrowd") and any(v > 0 for v in a.get("keypoints", [])[2::3]) for a in anns)


def compact(annotations: str | Path, images: str | Path, out: str | Path, split: str | None = None,
            long_edge: int = 0, quality: int = 60) -> dict[str, int]:
    """Write the compact copy to ``out`` (``annotations.json`` + ``images/``); returns counts and bytes."""
    annotations, images, out = Path(annotations), Path(images), Path(out)
    try:
        data = json.loads(annotations.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read annotations {annotations}: {exc}") from None
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in data.get("annotations", []):
        by_image.setdefault(a["image_id"], []).append(a)
    kept_images, kept_anns, written = [], [], 0
    (out / "images").mkdir(parents=True, exist_ok=True)
    for im in data.get("images", []):
        anns = by_image.get(im["id"], [])
        if (split is not None and im.get("split") != split) or not _used(anns):
            continue
        picture = cv2.imread(str(images / im["file_name"]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if picture is None:
            raise InputError(f"cannot read image {images / im['file_name']}")
        h, w = picture.shape[:2]
        s = long_edge / max(h, w) if long_edge and max(h, w) > long_edge and not _has_rle(anns) else 1.0
        entry = {**im, "file_name": Path(im["file_name"]).with_suffix(SUFFIX).name}
        if s != 1.0:
            picture = cv2.resize(picture, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            s = picture.shape[1] / w  # the exact factor of the rounded width
            entry["width"], entry["height"] = picture.shape[1], picture.shape[0]
            if im.get("supervised_region"):
                entry["supervised_region"] = _scale_box(im["supervised_region"], s)
            anns = [scale_annotation(a, s) for a in anns]
        ok, encoded = cv2.imencode(SUFFIX, picture, [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise InputError(f"cannot encode {im['file_name']} as WebP")
        write_bytes_atomic(out / "images" / entry["file_name"], encoded.tobytes())
        written += len(encoded)
        kept_images.append(entry)
        kept_anns.extend(anns)
    result = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    result.update(images=kept_images, annotations=kept_anns)
    write_text_atomic(out / "annotations.json", json.dumps(result, separators=(",", ":")))
    LOG.info("%s: %d images (%.1f MB), %d annotations -> %s", annotations, len(kept_images), written / 1e6,
             len(kept_anns), out)
    return {"images": len(kept_images), "annotations": len(kept_anns), "image_bytes": written}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.compact", description=__doc__.split("\n\n")[0])
    p.add_argument("annotations")
    p.add_argument("images")
    p.add_argument("out")
    p.add_argument("--split", default=None, help="keep images of this split only (LSPET: train)")
    p.add_argument("--long-edge", type=int, default=0, help="shrink larger images to this long edge (0: keep)")
    p.add_argument("--quality", type=int, default=60, help="WebP quality 1-100 (default 60)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = compact(args.annotations, args.images, args.out, args.split, args.long_edge, args.quality)
    except InputError as exc:
        print(f"python -m train.compact: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
