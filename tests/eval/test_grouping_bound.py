"""The perfect-grouping bound of ``gopose eval --grouping-bound``: the people the network's own keypoint candidates
could give, assembled per annotated person, next to the people the decoder found."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from core.io.annotations import load_keypoint_annotations
from core.keypoints import COCO
from eval.evaluate import people_found
from eval.grouping_bound import perfect_grouping


def _person(ann_id: int, x: float, labelled: int, crowd: int = 0) -> dict:
    kp = []
    for k in range(17):
        kp += [x + 4.0 * (k % 3), 40.0 + 20.0 * k, 2] if k < labelled else [0, 0, 0]
    return {"id": ann_id, "image_id": 1, "category_id": 1, "iscrowd": crowd, "keypoints": kp,
            "num_keypoints": labelled, "area": 200.0 * 200.0, "bbox": [x - 5, 40, 30, 340]}


def test_each_person_gets_the_nearest_candidate_of_each_labelled_type() -> None:
    gt = {"images": [{"id": 1, "width": 600, "height": 400}],
          "annotations": [_person(1, 100, 17), _person(2, 300, 10), _person(3, 500, 17, crowd=1)]}
    image = load_keypoint_annotations(gt, COCO).image(1)
    a, b = image.keypoints[0, :, :2], image.keypoints[1, :, :2]
    xy = np.zeros((17, 3, 2), np.float32)
    score = np.zeros((17, 3), np.float32)
    xy[:, 0], score[:, 0] = a, 0.9                        # exactly on person 1
    xy[:, 1], score[:, 1] = b + [3.0, 0.0], 0.5            # 3 px beside person 2
    xy[:, 2], score[:, 2] = b, 0.0                         # exactly on person 2, but no candidate (score 0)
    score[16] = 0.0                                        # no right-ankle candidate at all
    poses = perfect_grouping(xy, score, image)

    assert len(poses) == 2                                 # the crowd region gets no pose
    # sorted by closeness to their own person: person 2 is 3 px off, person 1 exact but one keypoint short
    assert poses.scores[0] > poses.scores[1]
    second, first = poses.keypoints
    np.testing.assert_allclose(first[:16, :2], a[:16])
    assert (first[:16, 2] == np.float32(0.9)).all() and (first[16] == 0).all()
    np.testing.assert_allclose(second[:10, :2], b[:10] + [3.0, 0.0])  # labelled: nearest real candidate
    assert (second[10:] == 0).all()                        # unlabelled keypoints stay absent
    rows = people_found(gt, poses.to_coco(1))
    assert sum(r["found"] for r in rows) == sum(r["people"] for r in rows) == 2


def test_an_image_without_people_or_candidates() -> None:
    gt = {"images": [{"id": 1, "width": 600, "height": 400}], "annotations": [_person(3, 500, 17, crowd=1)]}
    image = load_keypoint_annotations(gt, COCO).image(1)
    assert len(perfect_grouping(np.zeros((17, 4, 2)), np.zeros((17, 4)), image)) == 0
    gt["annotations"].append(_person(1, 100, 17))
    image = load_keypoint_annotations(gt, COCO).image(1)
    poses = perfect_grouping(np.zeros((17, 4, 2)), np.zeros((17, 4)), image)
    assert len(poses) == 1 and (poses.keypoints == 0).all()


def _eval(args: list[str], tmp_path: Path, capsys) -> tuple[list[dict], str]:
    assert main(["eval", *args, "--grouping-bound", "--workers", "0", "--no-progress", "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / "summary.json").read_text())["found"], capsys.readouterr().out


def test_oracle_candidates_give_every_person(data_dir: Path, tmp_path: Path, capsys) -> None:
    subset = data_dir / "coco" / "val2017_subset"
    rows, out = _eval(["--oracle-model", "--annotations", str(subset / "annotations.json"), "--images",
                       str(subset / "images"), "--limit", "8"], tmp_path, capsys)
    assert all(r["found_perfect_grouping"] == r["people"] for r in rows)
    assert "perfect grouping" in out


def test_the_default_models_bound_covers_what_it_decodes(data_dir: Path, tmp_path: Path, capsys) -> None:
    """On real COCO scenes the bound holds every person the decoder found and more (the grouping's share)."""
    mini = data_dir / "coco" / "train2017_mini"
    rows, out = _eval(["--annotations", str(mini / "annotations.json"), "--images", str(mini / "images"),
                       "--limit", "30"], tmp_path, capsys)
    assert all(r["found_perfect_grouping"] >= r["found"] for r in rows)
    assert sum(r["found_perfect_grouping"] for r in rows) > sum(r["found"] for r in rows)
    total = f"{sum(r['found'] for r in rows)} / {sum(r['people'] for r in rows)}"
    assert any(line.startswith("all") and total in line and line.endswith(
        str(sum(r["found_perfect_grouping"] for r in rows))) for line in out.splitlines())


@pytest.mark.parametrize("option", [["--grouping-bound"], ["--draw-misses", "pictures"]])
def test_the_diagnostics_need_coco_ground_truth(data_dir: Path, tmp_path: Path, capsys, option: list[str]) -> None:
    mini = data_dir / "crowdpose" / "mini"
    rc = main(["eval", "--oracle-model", "--dataset", "crowdpose", "--annotations", str(mini / "test_crowdpose.json"),
               "--images", str(mini), *option, "--workers", "0", "--out", str(tmp_path / "ev")])
    assert rc != 0 and f"{option[0]} needs COCO ground truth" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists() and not Path("pictures").exists()
