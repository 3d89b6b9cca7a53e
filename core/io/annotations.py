"""COCO-style person-keypoint annotation files (COCO-17 or CrowdPose-14) as per-image arrays.

``load_keypoint_annotations(path, spec)`` validates the file once and gives, for every image, its size,
optional CrowdPose ``crowdIndex`` and its annotations as NumPy arrays (keypoints exactly as written in the
file, ``v > 0`` = annotated). The parsed JSON stays available as ``dataset.raw`` for the evaluators.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.errors import InputError
from core.keypoints import KeypointSpec


@dataclass
class ImageAnnotations:
    """One image and its annotations (``P`` rows, crowd regions included)."""

    id: int
    file_name: str
    width: int
    height: int
    crowd_index: float | None
    keypoints: np.ndarray  # (P, K, 3) float32, x, y, v (v > 0 = annotated)
    area: np.ndarray  # (P,) float64 (0 where the file gives none)
    bbox: np.ndarray  # (P, 4) float64 x, y, w, h (0 where the file gives none)
    iscrowd: np.ndarray  # (P,) bool
    num_keypoints: np.ndarray  # (P,) int64, the file's num_keypoints (else the count of v > 0)
    annotation_ids: np.ndarray  # (P,) int64

    @property
    def crowdIndex(self) -> float | None:  # noqa: N802 - the CrowdPose field name
        return self.crowd_index

    @property
    def is_person(self) -> np.ndarray:
        """``(P,)`` bool: rows that are people with at least one annotated keypoint (not crowd regions)."""
        return ~self.iscrowd & (self.num_keypoints > 0)

    @property
    def n_people(self) -> int:
        return int(np.count_nonzero(self.is_person))

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclass
class KeypointDataset:
    """All images of an annotation file, in file order, with the parsed JSON in ``raw``."""

    path: Path | None
    spec: KeypointSpec
    images: list[ImageAnnotations]
    raw: dict[str, Any] = field(repr=False)
    _by_id: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {img.id: i for i, img in enumerate(self.images)}

    @property
    def gt_path(self) -> Path | None:
        return self.path

    @property
    def image_ids(self) -> list[int]:
        return [img.id for img in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageAnnotations]:
        return iter(self.images)

    def __getitem__(self, index: int) -> ImageAnnotations:
        return self.images[index]

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._by_id

    def image(self, image_id: int) -> ImageAnnotations:
        """The image with COCO id ``image_id``."""
        try:
            return self.images[self._by_id[int(image_id)]]
        except KeyError:
            raise InputError(f"image id {image_id} is not in {self.describe()}") from None

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "the annotation dict"

    def subset_raw(self, image_ids: Sequence[int] | None) -> dict[str, Any]:
        """The raw JSON restricted to ``image_ids`` (all images when None), for evaluating part of a file."""
        if image_ids is None:
            return self.raw
        return subset_coco_dict(self.raw, image_ids)


def subset_coco_dict(raw: dict[str, Any], image_ids: Sequence[int]) -> dict[str, Any]:
    """A shallow copy of a COCO dict keeping only the images (and their annotations) in ``image_ids``."""
    keep = {int(i) for i in image_ids}
    out = dict(raw)
    out["images"] = [img for img in raw["images"] if int(img["id"]) in keep]
    out["annotations"] = [a for a in raw["annotations"] if int(a["image_id"]) in keep]
    return out


def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """Parse a JSON file with an ``InputError`` naming it when it is missing or malformed."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {p} does not exist")
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory, expected a JSON file")
    try:
        with p.open("rb") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {p} is not valid JSON: {exc}") from None


def load_keypoint_annotations(path: str | Path | dict, spec: KeypointSpec,
                              require_annotations: bool = True) -> KeypointDataset:
    """Read a COCO-style person-keypoint file (path or already parsed dict) for ``spec``.

    ``require_annotations=False`` accepts an image-list file without ``annotations`` (COCO test-dev's
    ``image_info_test-dev2017.json``): every image then has no people.
    Raises ``InputError`` naming the file for a missing or non-JSON file, missing ``images`` /
    ``annotations`` / ``keypoints`` fields, keypoints of another length than ``spec`` expects, a repeated
    image or annotation id, or a field of the wrong type or a fractional id or count (the message names the image
    or annotation).
    """
    if isinstance(path, dict):
        raw, file = path, None
    else:
        file = Path(path)
        raw = read_json(file)
    name = str(file) if file is not None else "the annotation dict"
    if not isinstance(raw, dict):
        raise InputError(f"annotation file {name} must hold a JSON object with 'images' and 'annotations', "
                         f"got a {type(raw).__name__}")
    if not require_annotations and "annotations" not in raw:
        raw = dict(raw, annotations=[])
    for key in ("images", "annotations"):
        if key not in raw:
            raise InputError(f"annotation file {name} has no '{key}' field (not a COCO annotation file?)")
        if not isinstance(raw[key], list):
            raise InputError(f"annotation file {name}: '{key}' must be a list")
    images = _parse_images(raw["images"], name)
    groups = _parse_annotations(raw["annotations"], spec, name, {img["id"] for img in images})
    out = []
    k = spec.n_keypoints
    for img in images:
        g = groups.get(img["id"])
        if g is None:
            g = _empty_group(k)
        out.append(ImageAnnotations(id=img["id"], file_name=img["file_name"], width=img["width"],
                                    height=img["height"], crowd_index=img["crowd_index"], **g))
    return KeypointDataset(path=file, spec=spec, images=out, raw=raw)


def _parse_images(items: list, name: str) -> list[dict[str, Any]]:
    out = []
    seen: set[int] = set()
    for i, img in enumerate(items):
        if not isinstance(img, dict):
            raise InputError(f"annotation file {name}: images[{i}] is not an object")
        try:
            image_id = _integer(img["id"])
            width, height = _integer(img["width"]), _integer(img["height"])
        except KeyError as exc:
            raise InputError(f"annotation file {name}: images[{i}] has no {exc.args[0]!r} field") from None
        except (TypeError, ValueError):
            raise InputError(f"annotation file {name}: images[{i}] has a non-integer id, width or height") from None
        if image_id in seen:
            raise InputError(f"annotation file {name}: images[{i}] repeats image id {image_id}")
        seen.add(image_id)
        ci = img.get("crowdIndex")
        if ci is not None and not _is_number(ci):
            raise InputError(f"annotation file {name}: image {image_id} has a non-numeric crowdIndex {ci!r}")
        out.append({"id": image_id, "file_name": str(img.get("file_name", f"{image_id:012d}.jpg")),
                    "width": width, "height": height, "crowd_index": None if ci is None else float(ci)})
    return out


def _empty_group(k: int) -> dict[str, np.ndarray]:
    return {"keypoints": np.zeros((0, k, 3), np.float32), "area": np.zeros(0), "bbox": np.zeros((0, 4)),
            "iscrowd": np.zeros(0, bool), "num_keypoints": np.zeros(0, np.int64),
            "annotation_ids": np.zeros(0, np.int64)}


def _parse_annotations(anns: list, spec: KeypointSpec, name: str, image_ids: set[int]) -> dict[int, dict]:
    """Group annotations by image as arrays (vectorised: one NumPy conversion for the whole file)."""
    k = spec.n_keypoints
    if not anns:
        return {}
    kps, img_ids, ann_ids, areas, bboxes, crowd, nk = [], [], [], [], [], [], []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise InputError(f"annotation file {name}: annotations[{i}] is not an object")
        kp = a.get("keypoints")
        if kp is None:
            raise InputError(f"annotation file {name}: annotation {a.get('id', i)} has no 'keypoints' field "
                             "(not a person-keypoints file?)")
        if not isinstance(kp, list):
            raise InputError(f"annotation file {name}: annotation {a.get('id', i)}: 'keypoints' must be a list of "
                             f"{3 * k} numbers, got a {type(kp).__name__}")
        if len(kp) != 3 * k:
            raise InputError(
                f"annotation file {name}: annotation {a.get('id', i)} has {len(kp) // 3} keypoints, the {spec.name} "
                f"spec needs {k} (wrong --dataset?)")
        if "image_id" not in a:
            raise InputError(f"annotation file {name}: annotation {a.get('id', i)} has no 'image_id' field")
        kps.append(kp)
        img_ids.append(a["image_id"])
        ann_ids.append(a.get("id", i))
        areas.append(a.get("area", 0.0))
        bb = a.get("bbox") or (0.0, 0.0, 0.0, 0.0)
        bboxes.append(bb)
        crowd.append(a.get("iscrowd", 0))
        nk.append(a.get("num_keypoints", -1))
    try:
        kp_arr = _numbers(kps, np.float32).reshape(-1, k, 3)
        bbox_arr = _numbers(bboxes, np.float64).reshape(-1, 4)
        area_arr = _numbers(areas, np.float64)
        img_arr = _int_array(img_ids)
        nk_arr = _int_array(nk)
        ann_arr = _int_array(ann_ids)
        crowd_arr = _int_array(crowd).astype(bool)
    except (TypeError, ValueError) as exc:
        _raise_malformed(anns, name)
        raise InputError(f"annotation file {name}: malformed numbers in the annotations ({exc})") from None
    per_field = (("keypoints", kp_arr.reshape(len(kp_arr), -1)), ("bbox", bbox_arr), ("area", area_arr[:, None]))
    for field, values in per_field:
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():  # JSON's Infinity / NaN (Python writes them): an infinite area breaks OKS silently
            bad = int(np.argmin(finite))
            raise InputError(f"annotation file {name}: annotation {ann_arr[bad]}: {field!r} must hold finite "
                             "numbers")
    ids, counts = np.unique(ann_arr, return_counts=True)
    if np.any(counts > 1):  # pycocotools indexes annotations by id: one would silently replace the other
        raise InputError(f"annotation file {name}: annotation id {int(ids[np.argmax(counts > 1)])} is repeated "
                         "(annotation ids must be unique)")
    unknown = set(np.unique(img_arr).tolist()) - image_ids
    if unknown:
        raise InputError(f"annotation file {name}: annotations refer to image ids not in 'images' "
                         f"(e.g. {sorted(unknown)[:3]})")
    # the file's num_keypoints where given (pycocotools ignores rows with 0), else counted from v > 0
    nkp = np.where(nk_arr < 0, np.count_nonzero(kp_arr[:, :, 2] > 0, axis=1), nk_arr)
    order = np.argsort(img_arr, kind="stable")
    sorted_ids = img_arr[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    groups = {}
    for s, e in zip(starts, ends):
        idx = order[s:e]
        groups[int(sorted_ids[s])] = {"keypoints": kp_arr[idx], "area": area_arr[idx], "bbox": bbox_arr[idx],
                                      "iscrowd": crowd_arr[idx], "num_keypoints": nkp[idx],
                                      "annotation_ids": ann_arr[idx]}
    return groups


def _integer(value: Any) -> int:
    """``int(value)``, but a ``ValueError`` for a fractional number (``int(1.5)`` would silently give 1) or a string
    (``int("1")`` is 1, but pycocotools keeps the string: another image id than 1)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{value!r} is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _numbers(values: list, dtype: Any) -> np.ndarray:
    """``values`` (numbers, or nested lists of them) as a ``dtype`` array; a ``ValueError`` when one is not a number:
    NumPy would parse the string ``"0"``, but pycocotools reads the raw file, where an ``iscrowd`` ``"0"`` is a
    crowd and a keypoint ``"1"`` no number."""
    raw = np.asarray(values)
    if raw.dtype.kind not in "biuf":
        raise ValueError("a value that is not a number")
    return raw.astype(dtype)


def _int_array(values: list) -> np.ndarray:
    """``values`` as int64, with a ``ValueError`` when one is fractional (NumPy would truncate it) or no number."""
    exact = _numbers(values, np.float64)
    if not np.array_equal(exact, np.trunc(exact)):
        raise ValueError("a fractional number where an integer is expected")
    return np.asarray(values, dtype=np.int64)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _field_problem(a: dict) -> str | None:
    """What is wrong with one annotation's numeric fields (None when they all convert)."""
    if not _is_integer(a["image_id"]):
        return f"'image_id' must be an integer, got {a['image_id']!r}"
    for key in ("id", "num_keypoints", "iscrowd"):
        if key in a and not _is_integer(a[key]):
            return f"{key!r} must be an integer, got {a[key]!r}"
    if "area" in a and not _is_number(a["area"]):
        return f"'area' must be a number, got {a['area']!r}"
    if a.get("bbox") and not (isinstance(a["bbox"], list) and len(a["bbox"]) == 4
                              and all(_is_number(v) for v in a["bbox"])):
        return f"'bbox' must be a list of 4 numbers, got {a['bbox']!r}"
    if not all(_is_number(v) for v in a["keypoints"]):
        return "'keypoints' must hold only numbers"
    return None


def _raise_malformed(anns: list, name: str) -> None:
    """Raise an ``InputError`` naming the first annotation whose numbers do not convert."""
    for i, a in enumerate(anns):
        problem = _field_problem(a)
        if problem is not None:
            raise InputError(f"annotation file {name}: annotation {a.get('id', i)}: {problem}")
