"""The COCO and CrowdPose evaluators reproduce the known official numbers exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InputError
from eval.evaluate import (evaluate, evaluate_coco, evaluate_crowdpose, format_found_table, format_metrics_table,
                           people_found)

COCO_STATS = [0.5048844884488449, 0.7227722772277227, 0.6336633663366337, 0.46633663366336636, 0.7504950495049505,
              0.5181818181818182, 0.7272727272727273, 0.6363636363636364, 0.4666666666666666, 0.75]
CROWDPOSE = {"AP": 0.7877215935879303, "AP50": 0.9881188118811886, "AP75": 0.7314356435643564,
             "AR": 0.8222222222222223, "AR50": 1.0, "AR75": 0.7777777777777778,
             "AP_easy": 1.0, "AP_medium": 0.9802, "AP_hard": 0.4116}


@pytest.fixture(scope="module")
def ref(data_dir: Path) -> Path:
    return data_dir / "eval_reference"


def test_coco_reproduces_pycocotools_stats(ref: Path, capsys) -> None:
    dets = json.loads((ref / "dt_dataset.json").read_text())
    before = json.dumps(dets)
    metrics = evaluate_coco(ref / "gt_dataset.json", dets)
    assert metrics["stats"] == COCO_STATS
    assert metrics["AP"] == COCO_STATS[0] and metrics["ARl"] == COCO_STATS[9]
    assert json.dumps(dets) == before  # the caller's results are not modified
    assert capsys.readouterr().out == ""  # the evaluator's chatter does not reach stdout
    # the same from a parsed dict, twice, which the evaluation leaves unchanged
    gt = json.loads((ref / "gt_dataset.json").read_text())
    gt_before = json.dumps(gt)
    assert evaluate("coco", gt, dets)["stats"] == COCO_STATS
    assert evaluate("coco", gt, dets)["stats"] == COCO_STATS
    assert json.dumps(gt) == gt_before


def test_crowdpose_reproduces_official_protocol(ref: Path, capsys) -> None:
    preds = json.loads((ref / "example_crowdpose_preds.json").read_text())
    metrics = evaluate_crowdpose(ref / "example_crowdpose_val.json", preds)
    for name, value in CROWDPOSE.items():
        assert metrics[name] == value, name
    assert capsys.readouterr().out == ""
    table = format_metrics_table(metrics)
    assert "AP hard" in table and "0.4116" in table and "0.7877" in table


def test_subset_of_images_changes_the_result(ref: Path) -> None:
    preds = json.loads((ref / "example_crowdpose_preds.json").read_text())
    first = preds[0]["image_id"]
    sub = [p for p in preds if p["image_id"] == first]
    metrics = evaluate_crowdpose(ref / "example_crowdpose_val.json", sub, image_ids=[first])
    assert metrics["n_images"] == 1 and 0 < metrics["AP"] <= 1
    assert metrics["AP"] != CROWDPOSE["AP"]


def test_people_found_sums_to_pycocotools_ar50(ref: Path) -> None:
    dets = json.loads((ref / "dt_dataset.json").read_text())
    gt = json.loads((ref / "gt_dataset.json").read_text())
    rows = people_found(ref / "gt_dataset.json", dets)
    people = [a for a in gt["annotations"] if not a.get("iscrowd") and a["num_keypoints"] > 0]
    assert sum(r["people"] for r in rows) == len(people) == 11
    assert sum(r["found"] for r in rows) / len(people) == COCO_STATS[6]  # AR50, pycocotools' own matching
    assert sum(r["found"] for r in people_found(gt, dets, oks=0.75)) / len(people) == COCO_STATS[7]  # AR75


def _person(ann_id: int, x: float, y: float, height: float, labelled: int) -> dict:
    """A standing person of ``height`` px at ``(x, y)`` with its first ``labelled`` keypoints labelled."""
    kp = []
    for k in range(17):
        kp += [x + 3.0 * (k % 2), y + height * k / 16, 2] if k < labelled else [0, 0, 0]
    return {"id": ann_id, "image_id": 1, "category_id": 1, "iscrowd": 0, "keypoints": kp, "num_keypoints": labelled,
            "area": height * height / 3, "bbox": [x - 5, y, 20, height]}


def test_people_found_counts_each_kind_of_person() -> None:
    gt = {"images": [{"id": 1, "width": 900, "height": 900}],
          "annotations": [_person(1, 100, 50, 400, 17), _person(2, 300, 50, 400, 8), _person(3, 500, 50, 100, 17),
                          _person(4, 700, 50, 100, 5), dict(_person(5, 800, 50, 300, 0), iscrowd=1)]}
    found = {a["id"]: {"image_id": 1, "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
             for a in gt["annotations"]}
    rows = people_found(gt, [found[1], found[4]])
    assert {(r["size"], r["keypoints"]): (r["found"], r["people"]) for r in rows} == {
        ("large", "whole"): (1, 1), ("large", "partial"): (0, 1), ("medium", "whole"): (0, 1),
        ("medium", "partial"): (1, 1)}
    table = format_found_table(rows)
    assert "large   whole (12+)        1 / 1" in table and table.endswith("2 / 4")
    assert all(r["found"] == 0 for r in people_found(gt, []))  # nothing found, every person still counted
    assert sum(r["found"] for r in people_found(gt, list(found.values())[:4])) == 4
    with pytest.raises(InputError, match="OKS 0.52"):
        people_found(gt, [found[1]], oks=0.52)


def test_empty_results_score_zero(ref: Path) -> None:
    assert evaluate_coco(ref / "gt_dataset.json", [])["AP"] == 0.0
    m = evaluate_crowdpose(ref / "example_crowdpose_val.json", [])
    assert m["AP"] == 0.0 and m["AP_hard"] == 0.0 and m["n_results"] == 0


@pytest.mark.parametrize("dataset,file", [("coco", "coco/val2017_subset/annotations.json"),
                                          ("coco", "eval_reference/gt_dataset.json"),
                                          ("crowdpose", "crowdpose/mini/test_crowdpose.json")])
def test_no_results_are_n_a_exactly_where_the_evaluator_says_so(data_dir: Path, dataset: str, file: str) -> None:
    """No results score 0 for the groups of people the ground truth has and -1 (n/a) for the others (the 2-image
    CrowdPose mini set has only medium-crowd images), as the evaluator scores one result placed on no one."""
    gt = json.loads((data_dir / file).read_text())
    n = len(gt["annotations"][0]["keypoints"]) // 3
    nowhere = [{"image_id": gt["images"][0]["id"], "category_id": 1, "keypoints": [0.0, 0.0, 1.0] * n, "score": 1.0}]
    empty, placed = evaluate(dataset, gt, []), evaluate(dataset, gt, nowhere)
    assert [v < 0 for v in empty["stats"]] == [v < 0 for v in placed["stats"]]
    assert set(empty["stats"]) <= {0.0, -1.0}
    if dataset == "crowdpose":
        assert (empty["AP_easy"], empty["AP_medium"], empty["AP_hard"]) == (-1.0, 0.0, -1.0)


def test_bad_inputs(ref: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        evaluate_coco(tmp_path / "missing.json", [])
    dets = json.loads((ref / "dt_dataset.json").read_text())
    with pytest.raises(InputError, match="image 123"):
        evaluate_coco(ref / "gt_dataset.json", [dict(dets[0], image_id=123)])
    with pytest.raises(InputError, match="keypoints"):
        evaluate_coco(ref / "gt_dataset.json", [dict(dets[0], keypoints=[1, 2, 1])])
    with pytest.raises(InputError, match="crowdIndex"):
        evaluate_crowdpose({"images": [{"id": 1, "width": 4, "height": 4}], "annotations": []}, [])
    gt = json.loads((ref / "gt_dataset.json").read_text())
    del gt["annotations"][0]["area"]
    with pytest.raises(InputError, match="no 'area'"):
        evaluate_coco(gt, dets)
    with pytest.raises(InputError, match="unknown dataset"):
        evaluate("mpii", ref / "gt_dataset.json", [])


def _perfect(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
            for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]


def test_annotation_id_zero_is_matched_like_any_other(ref: Path) -> None:
    """pycocotools reads a match with ground-truth id 0 as no match: perfect results must still score 1."""
    gt = json.loads((ref / "gt_dataset.json").read_text())
    gt["annotations"][0]["id"] = 0  # a person with 11 labelled keypoints
    assert evaluate_coco(gt, _perfect(gt))["AP"] == 1.0
    cp = json.loads((ref / "example_crowdpose_val.json").read_text())
    cp["annotations"][0]["id"] = 0
    assert evaluate_crowdpose(cp, _perfect(cp))["AP"] == 1.0


def test_matched_people_carry_the_datasets_annotation_ids(ref: Path) -> None:
    """Without ids in the file the evaluator's matches are keyed as ``KeypointDataset`` numbers the annotations
    (their position in the file), whichever images are evaluated."""
    from core.io.annotations import load_keypoint_annotations
    from core.keypoints import COCO
    from eval.evaluate import evaluate_coco_with_found

    gt = json.loads((ref / "gt_dataset.json").read_text())
    for a in gt["annotations"]:
        del a["id"]
    ds = load_keypoint_annotations(gt, COCO)
    people = [int(i) for img in ds for i, p in zip(img.annotation_ids, img.is_person) if p]
    first = next(i for i, a in enumerate(gt["annotations"]) if not a["iscrowd"] and a["num_keypoints"] > 0)
    found = evaluate_coco_with_found(ds, _perfect(gt)[:1], image_ids=ds.image_ids).matched
    assert set(found) == set(people) and [i for i, m in found.items() if m] == [first]


def _drop(annotations: list[dict], field: str) -> None:
    """Remove ``field`` where the loader's default would stand for it: a crowd flag of 0, a person's category, the
    box of a person with labelled keypoints (COCO's OKS reads the box of the others)."""
    for a in annotations:
        if (field == "iscrowd" and a["iscrowd"]) or (field == "bbox" and not a["num_keypoints"]):
            continue
        del a[field]


@pytest.mark.parametrize("field", ["iscrowd", "category_id", "bbox"])
def test_annotations_without_optional_fields_evaluate_as_complete_ones(ref: Path, field: str) -> None:
    """Fields the annotation loader reads as optional do not crash the evaluators after a whole inference;
    CrowdPose's OKS scales by the box, so it asks for it by name."""
    dets = json.loads((ref / "dt_dataset.json").read_text())
    gt = json.loads((ref / "gt_dataset.json").read_text())
    _drop(gt["annotations"], field)
    assert evaluate_coco(gt, dets)["stats"] == COCO_STATS
    preds = json.loads((ref / "example_crowdpose_preds.json").read_text())
    cp = json.loads((ref / "example_crowdpose_val.json").read_text())
    _drop(cp["annotations"], field)
    if field == "bbox":
        with pytest.raises(InputError, match=r"annotation \d+ has no 'bbox'"):
            evaluate_crowdpose(cp, preds)
        return
    assert evaluate_crowdpose(cp, preds)["AP"] == CROWDPOSE["AP"]
