"""The ``gopose eval`` pipeline: batching, the ground-truth oracle model, flip, test-dev and bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from core.contract import PoseContract
from core.errors import InputError
from core.geometry import long_edge_transform
from core.keypoints import COCO
from core.io.annotations import load_keypoint_annotations
from eval.oracle_model import OracleModel
from eval.runner import EvalOptions, canvas_batches, run_evaluation, write_json_atomic


@pytest.fixture(scope="module")
def subset(data_dir: Path) -> Path:
    return data_dir / "coco" / "val2017_subset"


def _opts(subset: Path, out: Path, **kw) -> EvalOptions:
    kw.setdefault("oracle_model", True)
    kw.setdefault("workers", 0)
    return EvalOptions(annotations=subset / "annotations.json", images=subset / "images", out=out, **kw)


def test_canvas_batches_group_equal_sizes() -> None:
    sizes = [(640, 640), (768, 640), (640, 640), (768, 640), (640, 640), (896, 640)]
    batches = canvas_batches(sizes, 2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) <= 2 and len({sizes[i] for i in b}) == 1
    assert batches[0] == [0, 2]


def test_oracle_model_maps_people_and_mirrors(subset: Path) -> None:
    ds = load_keypoint_annotations(subset / "annotations.json", COCO)
    img = max(ds, key=lambda i: i.n_people)
    oracle = OracleModel(ds, PoseContract(COCO))
    t = long_edge_transform(img.width, img.height, 640)
    kps, scales = oracle.people(img.id, t)
    assert len(kps) == img.n_people
    keep = ~img.iscrowd & (img.num_keypoints > 0)
    np.testing.assert_allclose(kps[:, :, :2], t.apply(img.keypoints[keep][:, :, :2]), atol=1e-3)
    np.testing.assert_allclose(scales, np.sqrt(img.area[keep] * t.matrix[0, 0] * t.matrix[1, 1]), rtol=1e-5)
    fk, _ = oracle.people(img.id, t, flipped=True)
    perm = list(COCO.flip_permutation)
    # mirrored x, and the mirrored left shoulder is reported as a right shoulder
    np.testing.assert_allclose(fk[:, perm, 0], 639 - kps[:, :, 0], atol=1e-3)
    np.testing.assert_array_equal(fk[:, perm, 2], kps[:, :, 2])


def test_oracle_pipeline_matches_gopose_oracle(subset: Path, tmp_path: Path) -> None:
    """The whole eval chain (loader workers, batching, padding, decoding, inverse transform, evaluation) on
    encoded ground truth reaches the AP of the lead's ``run_oracle`` on the same images."""
    from eval.oracle import run_oracle

    res = run_evaluation(_opts(subset, tmp_path, batch_size=4, workers=2))
    ours = res.summary["metrics"]["AP"]
    ref = run_oracle(subset / "annotations.json", dataset="coco", long_edge=640, image_ids=res.image_ids)["AP"]
    assert res.summary["n_images"] == 111
    assert abs(ours - ref) <= 0.005, (ours, ref)
    assert ours > 0.8
    results = json.loads((tmp_path / "results.json").read_text())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(results) == res.summary["n_results"] > 150
    assert summary["metrics"]["AP"] == ours and summary["settings"]["oracle_model"] is True
    # no --long-edge given: the size that ran (the oracle's 640) is recorded, not only the option's None
    assert summary["settings"]["long_edge"] is None
    assert summary["input"] == {"long_edge": 640, "fixed_height": None, "multiple": 128, "flip": False}
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_batching_and_fixed_height_do_not_change_results(subset: Path, tmp_path: Path) -> None:
    one = run_evaluation(_opts(subset, tmp_path / "a", fixed_height=True, limit=24, batch_size=1))
    three = run_evaluation(_opts(subset, tmp_path / "b", fixed_height=True, limit=24, batch_size=3, workers=2))
    key = lambda r: (r["image_id"], -r["score"])  # noqa: E731
    assert sorted(one.results, key=key) == sorted(three.results, key=key)
    assert one.summary["metrics"]["AP"] > 0.7


def test_flip_merge_of_a_perfect_network_keeps_ap(subset: Path, tmp_path: Path) -> None:
    plain = run_evaluation(_opts(subset, tmp_path / "a", limit=24))
    flip = run_evaluation(_opts(subset, tmp_path / "b", limit=24, flip=True))
    assert abs(plain.summary["metrics"]["AP"] - flip.summary["metrics"]["AP"]) < 0.01
    assert flip.summary["settings"]["flip"] is True


def test_crowdpose_oracle_run(data_dir: Path, tmp_path: Path, capsys) -> None:
    mini = data_dir / "crowdpose" / "mini"
    rc = main(["eval", "--oracle-model", "--dataset", "crowdpose", "--annotations", str(mini / "test_crowdpose.json"),
               "--images", str(mini), "--workers", "0", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    metrics = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert metrics["AP"] > 0.9 and metrics["AP_medium"] > 0.9  # both images have crowdIndex 0.1-0.8
    assert metrics["AP_easy"] == -1.0 and "AP easy        n/a" in out


def test_cli_prints_table_and_final_json_line(subset: Path, tmp_path: Path, capsys) -> None:
    rc = main(["eval", "--oracle-model", "--annotations", str(subset / "annotations.json"), "--images",
               str(subset / "images"), "--dataset", "coco", "--limit", "6", "--workers", "0", "--no-progress",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    line = json.loads(out[-1])
    assert 0 < line["AP"] <= 1 and line["n_images"] == 6
    for k in ("preprocess_ms_median", "network_ms_median", "decode_ms_median", "total_ms_median", "images_per_s"):
        assert line[k] >= 0
    text = "\n".join(out)
    assert "AP @[.50:.95]" in text and "images/s" in text and "decode" in text
    found = json.loads((tmp_path / "summary.json").read_text())["found"]
    assert "people found (OKS >= 0.5)" in text
    assert f"{sum(r['found'] for r in found)} / {sum(r['people'] for r in found)}" in text


def test_test_dev_writes_results_without_ground_truth(subset: Path, tmp_path: Path) -> None:
    raw = json.loads((subset / "annotations.json").read_text())
    image_list = tmp_path / "image_info_test-dev.json"
    image_list.write_text(json.dumps({"images": raw["images"][:3], "categories": raw["categories"]}))
    from models.factory import build_model, make_config

    model = build_model(make_config("realtime", "coco"))
    opts = EvalOptions(annotations=image_list, images=subset / "images", out=tmp_path / "out", test_dev=True,
                       long_edge=256, threshold=1e-4, workers=0)
    res = run_evaluation(opts, model=model)
    assert res.summary["metrics"] is None
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["image_id"] for r in results} <= {img["id"] for img in raw["images"][:3]}


@pytest.fixture(scope="module")
def realtime_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Randomly initialised real-time networks written by ``gopose models init`` (COCO and CrowdPose)."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for spec in ("coco", "crowdpose"):
        out[spec] = folder / f"realtime_{spec}.pt"
        assert main(["models", "init", "--arch", "realtime", "--spec", spec, "--out", str(out[spec])]) == 0
    return out


def test_realtime_network_run_writes_valid_files(subset: Path, tmp_path: Path, realtime_checkpoints, capsys) -> None:
    """A randomly initialised real-time network over a few real images (checkpoint -> workers -> batches ->
    flip -> decode -> inverse transform): the run completes and writes valid COCO results with keypoints
    inside (or at the border of) their images."""
    rc = main(["eval", "--checkpoint", str(realtime_checkpoints["coco"]), "--annotations",
               str(subset / "annotations.json"), "--images", str(subset / "images"), "--dataset", "coco",
               "--long-edge", "256", "--limit", "6", "--batch-size", "2", "--workers", "2", "--threshold", "1e-4",
               "--flip", "--no-progress", "--out", str(tmp_path)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and line["n_images"] == 6 and 0.0 <= line["AP"] <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    assert summary["checkpoint"]["arch"] == "realtime"
    assert summary["checkpoint"]["path"] == str(realtime_checkpoints["coco"])
    assert summary["settings"]["long_edge"] == 256 and summary["decoder"]["threshold"] == 1e-4
    assert len(results) == summary["n_results"] > 0
    ds = load_keypoint_annotations(subset / "annotations.json", COCO)
    for r in results:
        kp = np.asarray(r["keypoints"]).reshape(17, 3)
        img = ds.image(r["image_id"])
        vis = kp[:, 2] > 0
        assert np.all(kp[vis, 0] > -4) and np.all(kp[vis, 0] < img.width + 4)
        assert np.all(kp[vis, 1] > -4) and np.all(kp[vis, 1] < img.height + 4)


def test_checkpoint_for_another_keypoint_spec(subset: Path, tmp_path: Path, realtime_checkpoints, capsys) -> None:
    ckpt = realtime_checkpoints["crowdpose"]
    err = _cli_error(["--checkpoint", str(ckpt), "--annotations", str(subset / "annotations.json"),
                      "--images", str(subset / "images"), "--dataset", "coco", "--out", str(tmp_path / "o")], capsys)
    assert str(ckpt) in err and "crowdpose keypoints (14)" in err and "coco (17 keypoints)" in err


def test_missing_checkpoint(subset: Path, tmp_path: Path, capsys) -> None:
    err = _cli_error(["--checkpoint", str(tmp_path / "none.pt"), "--annotations", str(subset / "annotations.json"),
                      "--images", str(subset / "images"), "--out", str(tmp_path / "o")], capsys)
    assert "none.pt" in err and ("does not exist" in err or "not found" in err)


def _cli_error(args: list[str], capsys) -> str:
    rc = main(["eval", "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("gopose eval: model ")]  # the model it runs, then
    assert len(lines) == 1, err                                                           # one error line
    return lines[0]


def test_missing_image_folder(subset: Path, tmp_path: Path, capsys) -> None:
    err = _cli_error(["--oracle-model", "--annotations", str(subset / "annotations.json"), "--images",
                      str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert "image folder" in err and "nope" in err and "does not exist" in err


def test_missing_images_in_folder(subset: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "imgs").mkdir()
    err = _cli_error(["--oracle-model", "--annotations", str(subset / "annotations.json"), "--images",
                      str(tmp_path / "imgs"), "--out", str(tmp_path / "o")], capsys)
    assert "111 of 111 images" in err and "missing" in err


def test_annotation_file_without_keypoints(subset: Path, tmp_path: Path, capsys) -> None:
    raw = json.loads((subset / "annotations.json").read_text())
    for a in raw["annotations"]:
        a.pop("keypoints")
    bad = tmp_path / "instances.json"
    write_json_atomic(bad, raw)
    err = _cli_error(["--oracle-model", "--annotations", str(bad), "--images", str(subset / "images"),
                      "--out", str(tmp_path / "o")], capsys)
    assert str(bad) in err and "'keypoints'" in err


def test_wrong_dataset_for_annotations(subset: Path, tmp_path: Path, capsys) -> None:
    err = _cli_error(["--oracle-model", "--dataset", "crowdpose", "--annotations", str(subset / "annotations.json"),
                      "--images", str(subset / "images"), "--out", str(tmp_path / "o")], capsys)
    assert "17 keypoints" in err and "crowdpose" in err


def _one_image_file(subset: Path, tmp_path: Path, **image_fields) -> tuple[Path, Path]:
    raw = json.loads((subset / "annotations.json").read_text())
    img = dict(raw["images"][0], **image_fields)
    raw = {"images": [img], "annotations": [a for a in raw["annotations"] if a["image_id"] == img["id"]],
           "categories": raw["categories"]}
    ann = tmp_path / "one.json"
    ann.write_text(json.dumps(raw))
    folder = tmp_path / "imgs"
    folder.mkdir()
    return ann, folder


def test_corrupt_image(subset: Path, tmp_path: Path, capsys) -> None:
    ann, folder = _one_image_file(subset, tmp_path, file_name="broken.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    err = _cli_error(["--oracle-model", "--annotations", str(ann), "--images", str(folder), "--workers", "1",
                      "--out", str(tmp_path / "o")], capsys)
    assert "broken.jpg" in err and "cannot be decoded" in err


def test_image_size_differs_from_annotation(subset: Path, tmp_path: Path, capsys) -> None:
    raw = json.loads((subset / "annotations.json").read_text())
    first = raw["images"][0]
    ann, folder = _one_image_file(subset, tmp_path, width=first["width"] + 10)
    (folder / first["file_name"]).write_bytes((subset / "images" / first["file_name"]).read_bytes())
    err = _cli_error(["--oracle-model", "--annotations", str(ann), "--images", str(folder), "--workers", "0",
                      "--out", str(tmp_path / "o")], capsys)
    assert first["file_name"] in err and "the annotation file says" in err


@pytest.mark.parametrize("option, message", [(["--long-edge", "0"], "--long-edge"), (["--topk", "0"], "--topk"),
                                             (["--batch-size", "0"], "--batch-size"), (["--limit", "0"], "--limit"),
                                             (["--multiple", "6"], "multiple of the network's stride (4), got 6"),
                                             (["--multiple", "-8"], "multiple of the network's stride (4), got -8"),
                                             (["--multiple", "0"], "multiple of the network's stride (4), got 0"),
                                             (["--height", "320"], "--height 320 needs --fixed-height"),
                                             (["--fixed-height", "--long-edge", "320"],
                                              "--long-edge 320 has no effect with --fixed-height")])
def test_bad_options(subset: Path, tmp_path: Path, capsys, option: list[str], message: str) -> None:
    err = _cli_error(["--oracle-model", "--annotations", str(subset / "annotations.json"), "--images",
                      str(subset / "images"), "--out", str(tmp_path / "o"), *option], capsys)
    assert message in err


def test_an_unknown_split_is_named_with_the_splits_the_file_has(subset: Path, tmp_path: Path, capsys) -> None:
    raw = json.loads((subset / "annotations.json").read_text())
    for i, img in enumerate(raw["images"]):
        img["split"] = "val" if i % 2 else "train"
    ann = tmp_path / "split.json"
    write_json_atomic(ann, raw)
    err = _cli_error(["--oracle-model", "--annotations", str(ann), "--images", str(subset / "images"),
                      "--split", "vall", "--out", str(tmp_path / "o")], capsys)
    assert "--split vall" in err and "train, val" in err and str(ann) in err


def test_annotations_without_ids_or_counts_are_completed_and_without_area_refused_first(subset: Path,
                                                                                        tmp_path: Path) -> None:
    """A file whose annotations lack ``id`` and ``num_keypoints`` (both derivable) evaluates as the complete file
    does; one without ``area`` is refused before any image is read, with no output folder made."""
    raw = json.loads((subset / "annotations.json").read_text())
    for a in raw["annotations"]:
        del a["id"], a["num_keypoints"]
    bare = tmp_path / "bare.json"
    write_json_atomic(bare, raw)
    full = run_evaluation(_opts(subset, tmp_path / "full", limit=8))
    got = run_evaluation(EvalOptions(annotations=bare, images=subset / "images", out=tmp_path / "bare", limit=8,
                                     oracle_model=True, workers=0))
    assert got.summary["metrics"]["stats"] == full.summary["metrics"]["stats"]
    del raw["annotations"][0]["area"]
    write_json_atomic(bare, raw)
    with pytest.raises(InputError, match="has no 'area'"):
        run_evaluation(EvalOptions(annotations=bare, images=tmp_path / "no images here", out=tmp_path / "none",
                                   oracle_model=True, workers=0))
    assert not (tmp_path / "none").exists()


def test_throughput_counts_every_image_processed_after_the_first_batch_arrived():
    from eval.runner import _throughput

    # 3 s of worker start-up, then two batches of 5 images processed in 1 s each: 5 images/s, not 2.5
    assert _throughput(10, wall=5.0, startup=3.0) == 5.0
    assert _throughput(4, wall=2.0, startup=0.0) == 2.0


def test_cuda_index_beyond_the_machines_gpus_is_refused_naming_the_gpu_count(monkeypatch) -> None:
    """``--device cuda:N`` past the last GPU passed and failed inside torch's first operation with a CUDA traceback
    (the GPU count is the one thing faked here: this machine may have none)."""
    import torch

    from eval.runner import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(InputError, match=r"--device cuda:1 requested but this machine has 1 CUDA device \(cuda:0"):
        resolve_device("cuda:1")


def test_help_tells_where_decoder_defaults_and_skeleton_come_from(capsys) -> None:
    """The help said the decoder defaults were ``DecoderConfig``'s and that a checkpoint fixes its own skeleton,
    while a model file's codec sets them (the default model: threshold 0.2) and ``--skeleton`` decodes a
    checkpoint through a part of its skeleton."""
    try:
        main(["eval", "--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert "defaults: the model's codec" in out
    assert "a part of a checkpoint's" in out
