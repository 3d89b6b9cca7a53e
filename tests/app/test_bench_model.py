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
