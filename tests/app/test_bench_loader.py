"""The training-data benchmark (``gopose bench loader``): what it times, and its option checks."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from app.cli import main


def _dataset(data_dir: Path):
    from eval.bench_loader import _dataset as make

    args = argparse.Namespace(annotations=data_dir / "coco/val2017_subset/annotations.json", images=None,
                              dataset="coco", input_size=64, no_augmentation=True)
    return make(args)


def test_loader_leaves_every_dataloader_start_untimed(data_dir: Path) -> None:
    from eval.bench_loader import loader_counts

    ds = _dataset(data_dir)
    per_epoch = len(ds) // 8  # 63 images with people: 7 batches of 8 per epoch
    # 12 timed batches need two DataLoaders; each one's first batch (its workers' start) is not timed
    counts, seconds = loader_counts(ds, workers=0, batches=12, batch_size=8, repeat=0)
    assert counts == [8 * (per_epoch - 1), 8 * (12 - (per_epoch - 1))] and seconds > 0


def test_loader_batch_larger_than_the_images_is_one_line(data_dir: Path, capsys) -> None:
    # one epoch gives no batch at all: this looped for ever
    rc = main(["bench", "loader", "--annotations", str(data_dir / "coco/val2017_subset/annotations.json"),
               "--workers", "0", "--batches", "1", "--repeats", "1", "--input-size", "64", "--batch-size", "64"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--batch-size 64" in err


@pytest.mark.parametrize("option", [["--repeats", "0"], ["--batches", "0"], ["--workers", "-1"],
                                    ["--batch-size", "0"], ["--steps", "0"]])
def test_bench_loader_rejects_impossible_counts_in_one_line(option: list[str], capsys) -> None:
    assert main(["bench", "loader", *option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option[0] in err


def test_bench_loader_runs_and_ends_with_json(data_dir: Path, capsys) -> None:
    rc = main(["bench", "loader", "--workers", "0", "--batches", "2", "--repeats", "1", "--input-size", "64",
               "--batch-size", "2", "--no-augmentation"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = result["rows"][0]
    assert rc == 0 and row["workers"] == 0 and row["samples_per_s"] > 0
    assert row["ms_per_sample"] == pytest.approx(1e3 / row["samples_per_s"], rel=1e-2)
