"""Every benchmark reports an impossible option as one line naming it, exit 2, before measuring anything (these
ended in tracebacks after minutes of work, printed NaN as JSON, or measured nothing and exited 0)."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main

CASES = [
    ("decoder", ["--repeats", "0"]),          # IndexError after encoding every image
    ("decoder", ["--paper-images", "0"]),     # IndexError
    ("encoder", ["--repeats", "0"]),          # IndexError
    ("pipeline", ["--frames", "0"]),          # ZeroDivisionError
    ("pipeline", ["--live-frames", "0"]),
    ("pipeline", ["--batch-size", "0"]),
    ("pipeline", ["--threshold", "0"]),       # ValueError traceback from the decoder, after loading the model
    ("gui", ["--repeats", "0"]),              # StatisticsError
    ("tracking", ["--gap", "0"]),
    ("tracking", ["--threshold", "0"]),       # ValueError traceback from the decoder, after loading the model
    ("faults", ["--runs", "0"]),              # StatisticsError after the calibration run
]


@pytest.mark.parametrize("bench,option", CASES, ids=[f"{b}{o[0]}" for b, o in CASES])
def test_bench_rejects_impossible_counts_in_one_line(bench: str, option: list[str], capsys) -> None:
    assert main(["bench", bench, *option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option[0] in err


@pytest.mark.parametrize("option,named", [(["--mode", "thruput"], "--mode"), (["--mode", ","], "--mode"),
                                          (["--live-speed", "0"], "--live-speed")])
def test_bench_pipeline_rejects_unknown_modes_and_speeds(ped_video: Path, option: list[str], named: str,
                                                         capsys) -> None:
    # an unknown mode measured nothing and exited 0; speed 0 divided by zero
    assert main(["bench", "pipeline", "--video", str(ped_video), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_bench_tracking_rejects_a_radius_of_zero(ped_video: Path, capsys) -> None:
    assert main(["bench", "tracking", "--video", str(ped_video), "--radius", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--radius" in err


@pytest.mark.parametrize("mix", ["sigkill=x", "sigkill=0,sigterm=0", "sigkill=-1", "nofault=1"])
def test_bench_faults_rejects_a_bad_mix_in_one_line(mix: str, capsys) -> None:
    assert main(["bench", "faults", "--mix", mix]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--mix" in err
