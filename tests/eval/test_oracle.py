import json

import pytest

from core.keypoints import COCO
from core.io.annotations import load_keypoint_annotations
from eval.oracle import run_oracle
from main import main


@pytest.fixture(scope="module")
def coco_data(coco_538):
    return load_keypoint_annotations(coco_538, COCO)


@pytest.mark.slow  # the paper's 19 limbs; the shipped dense skeleton's bound runs by default
def test_upper_bound_default_skeleton_meets_target(coco_data):
    m = run_oracle(coco_data, "coco", 640)
    assert m["images"] == 538 and m["limbs"] == 19
    assert m["AP"] >= 0.87, m["AP"]


def test_upper_bound_dense_skeleton_meets_target(coco_data):
    m = run_oracle(coco_data, "coco", 640, skeleton="dense")
    assert m["limbs"] == 44
    assert m["AP"] >= 0.92, m["AP"]


def test_oracle_cli_crowdpose_prints_table_and_json_last(data_dir, capsys):
    rc = main(["oracle", "--annotations", str(data_dir / "crowdpose/mini/test_crowdpose.json"),
               "--dataset", "crowdpose"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    summary = json.loads(out[-1])
    assert summary["AP"] > 0.9 and "decode_ms_median" in summary and "AP_hard" in summary
    assert any("AP @[.50:.95]" in line for line in out)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("not json {", "not valid JSON"),
    ('{"images": []}', "no 'annotations'"),
    ('{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [{"image_id": 1, "bbox": [0,0,1,1]}]}',
     "no 'keypoints'"),
])
def test_oracle_cli_bad_annotation_files(tmp_path, capsys, content, message):
    path = tmp_path / "ann.json"
    if content is not None:
        path.write_text(content)
    rc = main(["oracle", "--annotations", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0] and str(path) in err[0]


def test_oracle_images_without_people_and_degenerate_sizes(tmp_path):
    kp = [0.0] * 51
    kp[0:3] = [0.0, 0.0, 2]            # a keypoint at the image corner (valid)
    kp[15:18] = [5.0, 3.0, 2]
    ann = {"images": [{"id": 1, "width": 1, "height": 1, "file_name": "a.jpg"},
                      {"id": 2, "width": 10000, "height": 50, "file_name": "b.jpg"},
                      {"id": 3, "width": 64, "height": 64, "file_name": "c.jpg"}],
           "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 400.0,
                            "bbox": [0, 0, 20, 20], "num_keypoints": 2, "keypoints": kp},
                           {"id": 2, "image_id": 3, "category_id": 1, "iscrowd": 0, "area": 100.0,
                            "bbox": [0, 0, 10, 10], "num_keypoints": 0, "keypoints": [0.0] * 51}],
           "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    m = run_oracle(path, "coco", 640)
    assert m["images"] == 3 and 0.0 <= m["AP"] <= 1.0


def test_oracle_checks_what_the_evaluation_needs_before_encoding_any_image(tmp_path, monkeypatch):
    """A COCO file without 'area' is refused before the (long, on a full file) encode/decode loop, not after it."""
    from core.encoder import TargetEncoder
    from core.errors import InputError

    kp = [0.0] * 51
    kp[15:18] = [5.0, 3.0, 2]
    ann = {"images": [{"id": 1, "width": 64, "height": 64, "file_name": "a.jpg"}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 10, 10],
                            "num_keypoints": 1, "keypoints": kp}],
           "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    encoded = []
    real = TargetEncoder.encode
    monkeypatch.setattr(TargetEncoder, "encode", lambda self, *a, **k: encoded.append(1) or real(self, *a, **k))
    with pytest.raises(InputError, match="annotation 7 has no 'area'"):
        run_oracle(path, "coco", 640)
    assert encoded == []
