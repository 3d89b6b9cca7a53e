"""The keypoint annotation loader on the real shared files and on malformed ones."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError
from core.keypoints import COCO, CROWDPOSE
from core.io.annotations import load_keypoint_annotations


def test_coco_538_counts_and_values(coco_538: Path) -> None:
    ds = load_keypoint_annotations(coco_538, COCO)
    raw = json.loads(coco_538.read_text())
    assert len(ds) == 538 == len(raw["images"])
    assert sum(img.n_people for img in ds) == 1354
    assert sum(int(img.iscrowd.sum()) for img in ds) == 49
    assert sum(len(img) for img in ds) == 2213
    # one annotation compared field by field with the JSON
    ann = raw["annotations"][0]
    img = ds.image(ann["image_id"])
    row = int(np.flatnonzero(img.annotation_ids == ann["id"])[0])
    assert img.keypoints.dtype == np.float32 and img.keypoints.shape[1:] == (17, 3)
    np.testing.assert_array_equal(img.keypoints[row].reshape(-1), np.asarray(ann["keypoints"], np.float32))
    assert img.area[row] == pytest.approx(ann["area"])
    np.testing.assert_allclose(img.bbox[row], ann["bbox"])
    assert img.num_keypoints[row] == ann["num_keypoints"]
    meta = next(m for m in raw["images"] if m["id"] == ann["image_id"])
    assert (img.width, img.height, img.file_name) == (meta["width"], meta["height"], meta["file_name"])
    assert img.crowd_index is None
    assert ds.gt_path == coco_538 and ds.raw["images"][0]["id"] == ds.image_ids[0]


def test_crowdpose_crowd_index(data_dir: Path) -> None:
    ds = load_keypoint_annotations(data_dir / "eval_reference" / "example_crowdpose_val.json", CROWDPOSE)
    assert len(ds) == 4
    assert ds[0].crowdIndex == pytest.approx(0.76)
    assert all(img.keypoints.shape[1:] == (14, 3) for img in ds)


def test_image_without_annotations_and_subset(tmp_path: Path) -> None:
    raw = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 20},
                      {"id": 2, "file_name": "b.jpg", "width": 30, "height": 40}],
           "annotations": [{"id": 5, "image_id": 2, "keypoints": [0, 0, 2] + [0] * 48, "area": 4.0,
                            "bbox": [0, 0, 2, 2], "iscrowd": 0}]}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(raw))
    ds = load_keypoint_annotations(p, COCO)
    assert len(ds[0]) == 0 and ds[0].keypoints.shape == (0, 17, 3) and ds[0].n_people == 0
    # a keypoint at (0, 0) with v=2 is annotated (num_keypoints counted when the file omits it)
    assert ds.image(2).num_keypoints.tolist() == [1] and ds.image(2).n_people == 1
    sub = ds.subset_raw([2])
    assert [i["id"] for i in sub["images"]] == [2] and len(sub["annotations"]) == 1
    with pytest.raises(InputError, match="image id 7"):
        ds.image(7)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"annotations": []}', "no 'images' field"),
    ('{"images": []}', "no 'annotations' field"),
    ('{"images": [{"id": 1, "width": 5, "height": 5}], "annotations": [{"id": 9, "image_id": 1, "bbox": [0,0,1,1]}]}',
     "no 'keypoints' field"),
    ('{"images": [{"id": 1, "width": 5}], "annotations": []}', "no 'height' field"),
    ('{"images": [{"id": 1, "width": 5, "height": 5}], "annotations": [{"id": 9, "image_id": 3, "keypoints": '
     + json.dumps([0] * 51) + "}]}", "not in 'images'"),
])
def test_bad_files_name_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    p = tmp_path / "bad.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_keypoint_annotations(p, COCO)
    assert str(p) in str(info.value)


def test_wrong_keypoint_count_for_spec(data_dir: Path) -> None:
    path = data_dir / "eval_reference" / "example_crowdpose_val.json"
    with pytest.raises(InputError, match="14 keypoints, the coco spec needs 17") as info:
        load_keypoint_annotations(path, COCO)
    assert str(path) in str(info.value)


_IMG = {"id": 1, "width": 5, "height": 5}
_KP = [1, 1, 2] * 17


@pytest.mark.parametrize("images, ann, message", [
    ([_IMG, dict(_IMG)], {}, "images\\[1\\] repeats image id 1"),
    ([dict(_IMG, crowdIndex="x")], {}, "image 1 has a non-numeric crowdIndex"),
    ([_IMG], {"keypoints": 5}, "annotation 9: 'keypoints' must be a list of 51 numbers"),
    ([_IMG], {"keypoints": ["a"] + _KP[1:]}, "annotation 9: 'keypoints' must hold only numbers"),
    ([_IMG], {"num_keypoints": "x"}, "annotation 9: 'num_keypoints' must be an integer"),
    ([_IMG], {"iscrowd": None}, "annotation 9: 'iscrowd' must be an integer"),
    ([_IMG], {"id": "x"}, "annotation x: 'id' must be an integer"),
    ([_IMG], {"bbox": [1, 2, 3]}, "annotation 9: 'bbox' must be a list of 4 numbers"),
    ([_IMG], {"area": "big"}, "annotation 9: 'area' must be a number"),
    ([_IMG], {"image_id": None}, "annotation 9: 'image_id' must be an integer"),
    ([_IMG], {"image_id": 1.5}, "annotation 9: 'image_id' must be an integer, got 1.5"),
    ([_IMG], {"id": 9.5}, "annotation 9.5: 'id' must be an integer"),
    ([_IMG], {"num_keypoints": 2.5}, "annotation 9: 'num_keypoints' must be an integer"),
    ([_IMG], {"id": 8}, "annotation id 8 is repeated"),
    ([_IMG], {"area": float("inf")}, "annotation 9: 'area' must hold finite numbers"),
    ([_IMG], {"bbox": [0, 0, float("nan"), 1]}, "annotation 9: 'bbox' must hold finite numbers"),
    ([_IMG], {"keypoints": [float("inf")] + _KP[1:]}, "annotation 9: 'keypoints' must hold finite numbers"),
    ([dict(_IMG, id=1.5)], {}, "images\\[0\\] has a non-integer id, width or height"),
    ([dict(_IMG, width=5.5)], {}, "images\\[0\\] has a non-integer id, width or height"),
    # numbers written as strings: NumPy would parse them, but pycocotools (evaluation) reads the raw file, where an
    # iscrowd "0" is a crowd, keypoints "1" a string and an image id "1" another image than 1
    ([_IMG], {"iscrowd": "0"}, "annotation 9: 'iscrowd' must be an integer, got '0'"),
    ([_IMG], {"keypoints": ["1"] + _KP[1:]}, "annotation 9: 'keypoints' must hold only numbers"),
    ([_IMG], {"image_id": "1"}, "annotation 9: 'image_id' must be an integer, got '1'"),
    ([_IMG], {"area": "5"}, "annotation 9: 'area' must be a number"),
    ([_IMG], {"bbox": ["0", 0, 1, 1]}, "annotation 9: 'bbox' must be a list of 4 numbers"),
    ([dict(_IMG, id="1")], {}, "images\\[0\\] has a non-integer id, width or height"),
    ([dict(_IMG, width="5")], {}, "images\\[0\\] has a non-integer id, width or height"),
])
def test_malformed_fields_name_file_and_annotation(tmp_path: Path, images: list, ann: dict, message: str) -> None:
    anns = [{"id": 8, "image_id": 1, "keypoints": _KP}, dict({"id": 9, "image_id": 1, "keypoints": _KP}, **ann)]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"images": images, "annotations": anns}))
    with pytest.raises(InputError, match=message) as info:
        load_keypoint_annotations(p, COCO)
    assert str(p) in str(info.value)


def test_boolean_iscrowd_is_read() -> None:
    raw = {"images": [_IMG], "annotations": [{"id": 9, "image_id": 1, "keypoints": _KP, "iscrowd": False},
                                             {"id": 8, "image_id": 1, "keypoints": _KP, "iscrowd": True}]}
    assert load_keypoint_annotations(raw, COCO)[0].iscrowd.tolist() == [False, True]
