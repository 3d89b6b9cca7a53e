"""``gopose eval --draw-misses``: one picture per image with an annotated person the results miss."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from core.io.annotations import load_keypoint_annotations
from core.keypoints import COCO
from core.poses import Poses
from eval.evaluate import evaluate_coco_with_found
from eval.misses import MISSED, draw_misses


def _person(ann_id: int, image_id: int, x: float) -> dict:
    kp = []
    for k in range(17):
        kp += [x + (6.0 if k % 2 else -6.0) * (k >= 5), 30.0 + 12.0 * k, 2]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "keypoints": kp,
            "num_keypoints": 17, "area": 120.0 * 240.0, "bbox": [x - 20, 30, 40, 200]}


@pytest.fixture()
def scene(tmp_path: Path) -> tuple[dict, Path]:
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2):
        cv2.imwrite(str(images / f"{i}.jpg"), np.full((260, 320, 3), 128, np.uint8))
    gt = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 260} for i in (1, 2)],
          "annotations": [_person(1, 1, 80), _person(2, 1, 240), _person(3, 2, 160)]}
    return gt, images


def test_only_images_with_a_missed_person_get_a_picture_with_it_in_red(scene, tmp_path: Path) -> None:
    gt, images = scene
    found = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
             for a in gt["annotations"] if a["id"] in (1, 3)]          # person 2 of image 1 is missed
    coco = evaluate_coco_with_found(gt, found)
    assert coco.matched == {1: True, 2: False, 3: True}
    written = draw_misses(load_keypoint_annotations(gt, COCO), found, coco.matched, images, tmp_path / "out")
    assert written == [tmp_path / "out" / "1.jpg"]
    picture = cv2.imread(str(written[0])).astype(int)
    missed_hip = np.asarray(gt["annotations"][1]["keypoints"]).reshape(17, 3)[11, :2].round().astype(int)
    b, g, r = picture[missed_hip[1], missed_hip[0]]
    assert r > 180 and g < 90 and b < 90                               # the missed person's joint is red
    found_hip = np.asarray(gt["annotations"][0]["keypoints"]).reshape(17, 3)[11, :2].round().astype(int)
    b, g, r = picture[found_hip[1], found_hip[0]]
    assert not (r > 180 and g < 90 and b < 90) and abs(r - 128) + abs(g - 128) + abs(b - 128) > 60  # drawn, not red
    assert MISSED == (0, 0, 255)


def test_pictures_keep_the_stored_orientation_the_annotations_use(scene, tmp_path: Path, oriented_jpeg) -> None:
    """An image whose EXIF says to turn it is drawn as stored, as the evaluation reads it: the annotations'
    coordinates are in that frame."""
    gt, images = scene
    (images / "1.jpg").write_bytes(oriented_jpeg(np.full((260, 320, 3), 128, np.uint8), 6))
    assert cv2.imread(str(images / "1.jpg")).shape[:2] == (320, 260)  # a viewer would turn it
    found = [{"image_id": 2, "category_id": 1, "keypoints": gt["annotations"][2]["keypoints"], "score": 0.9}]
    coco = evaluate_coco_with_found(gt, found)
    written = draw_misses(load_keypoint_annotations(gt, COCO), found, coco.matched, images, tmp_path / "out")
    picture = cv2.imread(str(written[0]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION).astype(int)
    assert picture.shape[:2] == (260, 320)
    hip = np.asarray(gt["annotations"][1]["keypoints"]).reshape(17, 3)[11, :2].round().astype(int)
    b, g, r = picture[hip[1], hip[0]]
    assert r > 180 and g < 90 and b < 90


def test_results_round_trip_through_coco_dicts() -> None:
    kp = np.random.default_rng(0).uniform(1, 100, (3, 17, 3)).astype(np.float32)
    kp[1, 4] = 0
    poses = Poses(kp, np.array([0.9, 0.5, 0.7], np.float32))
    back = Poses.from_coco(poses.to_coco(7), 17)
    np.testing.assert_allclose(back.keypoints, kp[[0, 2, 1]], atol=0.006)
    np.testing.assert_array_equal(back.scores, poses.scores[[0, 2, 1]])
    assert len(Poses.from_coco([], 17)) == 0
    with pytest.raises(ValueError, match="1 track ids for 3 people"):
        Poses(kp, poses.scores, np.array([1]))
    faint = kp.copy()
    faint[:, :, 2] = np.where(faint[:, :, 2] > 0, 0.004, 0.0)  # present, with a score below COCO's 2 decimals
    back = Poses.from_coco(Poses(faint, poses.scores).to_coco(7), 17)
    assert ((back.keypoints[:, :, 2] > 0) == (faint[[0, 2, 1], :, 2] > 0)).all()


def test_cli_draws_the_misses_of_the_default_model(data_dir: Path, tmp_path: Path, capsys) -> None:
    mini = data_dir / "coco" / "train2017_mini"
    out = tmp_path / "misses"
    assert main(["eval", "--annotations", str(mini / "annotations.json"), "--images", str(mini / "images"),
                 "--limit", "30", "--draw-misses", str(out), "--workers", "0", "--no-progress",
                 "--out", str(tmp_path / "ev")]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    files = sorted(out.iterdir())
    missed = sum(r["people"] - r["found"] for r in summary["found"])
    assert 0 < summary["misses_drawn"] == len(files) <= missed
    raw = json.loads((mini / "annotations.json").read_text())
    sizes = {img["id"]: (img["height"], img["width"]) for img in raw["images"][:30]}
    for f in files:
        assert cv2.imread(str(f)).shape[:2] == sizes[int(f.stem)]
    assert f"pictures of the {len(files)} images with missed people in {out}" in capsys.readouterr().out


def test_a_file_without_annotation_ids_gets_the_missed_person_drawn(scene, tmp_path: Path) -> None:
    """The evaluator's matches and the dataset's annotation ids agree when the file has no ids."""
    gt, images = scene
    for a in gt["annotations"]:
        del a["id"]
    found = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
             for a in (gt["annotations"][0], gt["annotations"][2])]   # person 2 of image 1 is missed
    coco = evaluate_coco_with_found(gt, found)
    written = draw_misses(load_keypoint_annotations(gt, COCO), found, coco.matched, images, tmp_path / "out")
    assert written == [tmp_path / "out" / "1.jpg"]


def test_a_rerun_into_the_same_folder_leaves_only_its_own_pictures(scene, tmp_path: Path) -> None:
    """The pictures of an earlier run whose people this run finds are removed: the folder shows this run's misses
    (files that are not an image's picture are left alone)."""
    gt, images = scene
    out = tmp_path / "out"
    ds = load_keypoint_annotations(gt, COCO)
    first = [{"image_id": 1, "category_id": 1, "keypoints": gt["annotations"][0]["keypoints"], "score": 0.9}]
    assert len(draw_misses(ds, first, evaluate_coco_with_found(gt, first).matched, images, out)) == 2
    (out / "notes.txt").write_text("mine")
    better = first + [{"image_id": 2, "category_id": 1, "keypoints": gt["annotations"][2]["keypoints"], "score": 0.9}]
    assert draw_misses(ds, better, evaluate_coco_with_found(gt, better).matched, images, out) == [out / "1.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["1.jpg", "notes.txt"]
