"""The compact copy of a training set (``train.compact``): real LSPET and COCO images, annotations moved with them."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.contract import PoseContract
from core.keypoints import COCO
from train.compact import compact, main
from train.datasets import PoseDataset


def _subset(src: dict, ids: list[int], path) -> None:
    """Write the images ``ids`` of the annotations ``src`` (and their annotations) to ``path``."""
    keep = set(ids)
    path.write_text(json.dumps({**src, "images": [i for i in src["images"] if i["id"] in keep],
                                "annotations": [a for a in src["annotations"] if a["image_id"] in keep]}))


@pytest.fixture(scope="module")
def lspet(data_dir):
    root = data_dir / "lspet"
    return json.loads((root / "annotations.json").read_text()), root / "images"


def test_shrunk_images_keep_their_keypoints_on_the_same_body_parts(lspet, tmp_path):
    src, images = lspet
    suspect = {a["image_id"] for a in src["annotations"] if a.get("lr_suspect")}
    big = [i for i in src["images"]
           if max(i["width"], i["height"]) > 300 and i["split"] == "train" and i["id"] not in suspect][:3]
    val = next(i for i in src["images"] if i["split"] == "val")
    _subset(src, [i["id"] for i in big] + [val["id"]], tmp_path / "in.json")
    counts = compact(tmp_path / "in.json", images, tmp_path / "out", split="train", long_edge=200, quality=90)
    out = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert counts["images"] == 3 and [i["id"] for i in out["images"]] == [i["id"] for i in big]  # val dropped
    anns = {a["image_id"]: a for a in out["annotations"]}
    originals = {a["image_id"]: a for a in src["annotations"]}
    for before, after in zip(big, out["images"]):
        picture = cv2.imread(str(tmp_path / "out" / "images" / after["file_name"]))
        assert after["file_name"].endswith(".webp") and picture is not None
        assert max(picture.shape[:2]) == 200 and (after["width"], after["height"]) == picture.shape[1::-1]
        s = after["width"] / before["width"]
        old = np.array(originals[before["id"]]["keypoints"], float).reshape(-1, 3)
        new = np.array(anns[before["id"]]["keypoints"], float).reshape(-1, 3)
        seen = old[:, 2] > 0
        assert (new[:, 2] == old[:, 2]).all()
        np.testing.assert_allclose(new[seen, :2], s * (old[seen, :2] + 0.5) - 0.5, atol=0.01)
        x, y, w, h = before["supervised_region"]
        np.testing.assert_allclose(after["supervised_region"], [s * (x + 0.5) - 0.5, s * (y + 0.5) - 0.5, w * s, h * s],
                                   atol=0.01)
        assert anns[before["id"]]["area"] == pytest.approx(originals[before["id"]]["area"] * s * s, abs=0.01)
        assert anns[before["id"]]["unlabelled"] == originals[before["id"]]["unlabelled"]
    # the copy is a training set the project reads as it reads the original
    data = PoseDataset(tmp_path / "out" / "annotations.json", tmp_path / "out" / "images", PoseContract(COCO),
                       input_size=128)
    assert len(data) == 3 and data[0]["image"].shape[:2] == (128, 128)


def test_images_with_crowd_masks_are_copied_at_their_size(data_dir, tmp_path):
    root = data_dir / "coco" / "train2017_mini"
    src = json.loads((root / "annotations.json").read_text())
    rle = {a["image_id"] for a in src["annotations"] if isinstance(a.get("segmentation"), dict)}
    people = {a["image_id"] for a in src["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0}
    image = next(i for i in src["images"] if i["id"] in rle & people)
    _subset(src, [image["id"]], tmp_path / "in.json")
    compact(tmp_path / "in.json", root / "images", tmp_path / "out", long_edge=100)
    out = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (image["width"], image["height"])
    assert out["annotations"] == [a for a in src["annotations"] if a["image_id"] == image["id"]]


def test_a_missing_annotations_file_is_one_line_naming_it(tmp_path, capsys):
    assert main([str(tmp_path / "none.json"), str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "none.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
