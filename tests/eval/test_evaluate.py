"""The COCO and CrowdPose evaluators reproduce the known official numbers exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InputError
from eval.evaluate import evaluate, evaluate_coco, evaluate_crowdpose, format_metrics_table

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


def test_empty_results_score_zero(ref: Path) -> None:
    assert evaluate_coco(ref / "gt_dataset.json", [])["AP"] == 0.0
    m = evaluate_crowdpose(ref / "example_crowdpose_val.json", [])
    assert m["AP"] == 0.0 and m["AP_hard"] == 0.0 and m["n_results"] == 0


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
