"""The network benchmark (``gopose bench model``): a tiny real run's figures, and its option checks."""
from __future__ import annotations

import json

import pytest

from app.cli import main


def test_bench_model_counts_every_image_of_a_batch(capsys) -> None:
    rc = main(["bench", "model", "--size", "64", "--batch", "4", "--runs", "2", "--warmup", "1", "--frames", "0"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and result["batch"] == 4
    row = result["rows"][0]
    # one timed call runs 4 images: images/s = 4 x 1000 / ms per call
    assert row["images_per_s"] == pytest.approx(4 * 1000.0 / row["ms_median"], rel=1e-3)
    assert result["images_per_s"] == row["images_per_s"]


@pytest.mark.parametrize("option", [["--runs", "0"], ["--batch", "0"], ["--size", "0"], ["--warmup", "-1"],
                                    ["--frames", "-1"], ["--threads", "0"]])
def test_bench_model_rejects_impossible_counts_in_one_line(option: list[str], capsys) -> None:
    assert main(["bench", "model", *option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option[0] in err


@pytest.mark.parametrize("content", [None, b"not a video"])
def test_bench_model_with_a_video_it_cannot_read_is_one_line(content, tmp_path, capsys) -> None:
    """A --video that is missing or not a video names it in one line, exit 2 (before: a missing one was silently
    skipped and the run ended 0 without frames/s; an unreadable one ended in PyAV's traceback)."""
    video = tmp_path / "clip.mp4"
    if content is not None:
        video.write_bytes(content)
    assert main(["bench", "model", "--size", "32", "--runs", "1", "--warmup", "0", "--frames", "2",
                 "--video", str(video)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(video) in err and "Traceback" not in err


@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_bench_model_with_an_unknown_device_is_one_line(device, capsys) -> None:
    """An unknown --device names it in one line, exit 2 (before: torch's RuntimeError traceback)."""
    assert main(["bench", "model", "--size", "32", "--runs", "1", "--frames", "0", "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--device {device!r}" in err and "Traceback" not in err


def test_bench_model_ap_limit_below_one_names_the_option(capsys) -> None:
    """--ap-limit 0 is refused by the parser naming --ap-limit (before: the run built its rows, then stopped on
    'eval --limit must be at least 1', an option the command does not have)."""
    assert main(["bench", "model", "--ap-limit", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --ap-limit: must be at least 1, got 0" in err


def test_bench_model_of_a_crowdpose_checkpoint_skips_the_coco_ap(tmp_path, capsys) -> None:
    """A CrowdPose model benchmarked with its file (AP on by default) gets its timings and AP '-' with a warning
    (before: the run stopped with 'predicts crowdpose keypoints (14), but --dataset is coco', an option the
    command does not have, and no timings)."""
    ckpt = tmp_path / "cp.pt"
    assert main(["models", "init", "--arch", "realtime", "--spec", "crowdpose", "--out", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["bench", "model", "--model", str(ckpt), "--size", "32", "--runs", "1", "--warmup", "0",
                 "--frames", "0", "--ap-limit", "1"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["rows"][0]["ap"] is None and result["ms_median"] > 0
    assert "--dataset" not in out.err


def test_bench_model_takes_an_installed_model_name(tmp_path, monkeypatch, capsys) -> None:
    """--model NAME benchmarks an installed model, as --model of annotate, eval, gui and bench pipeline/tracking
    do (before: 'checkpoint NAME does not exist')."""
    monkeypatch.setenv("GOPOSE_HOME", str(tmp_path / "home"))
    ckpt = tmp_path / "rt.pt"
    assert main(["models", "init", "--arch", "realtime", "--spec", "coco", "--set", "channels=8",
                 "--out", str(ckpt)]) == 0
    assert main(["models", "add", str(ckpt), "--name", "tiny-rt"]) == 0
    capsys.readouterr()
    assert main(["bench", "model", "--model", "tiny-rt", "--size", "32", "--runs", "1", "--warmup", "0",
                 "--frames", "0", "--no-ap"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["ms_median"] > 0
    assert str(tmp_path / "home" / "models" / "tiny-rt.pt") in out
