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
