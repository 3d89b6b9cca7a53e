"""Smoke test of the pipeline benchmark script (tiny settings; the numbers are not checked, only produced)."""
from __future__ import annotations

import json

from app.cli import main


def test_bench_pipeline_runs_and_ends_with_json(ped_video, capsys) -> None:
    rc = main(["bench", "pipeline", "--video", str(ped_video), "--long-edge", "128", "--threshold", "1e-4",
               "--backend", "torch", "--frames", "6", "--live-frames", "12", "--live-speed", "20",
               "--loop-frames", "50", "--rss-every", "24"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    result = json.loads(out[-1])
    assert result["frames"] == 6 and result["ratio"] > 0 and result["baseline_fps"] > 0
    assert result["rss_frames"] == 50 and len(result["rss_samples"]) == 2
    assert result["live_processed"] + result["live_dropped"] <= 12
    assert any("ratio" in line for line in out[:-1])


def test_bench_pipeline_rejects_a_zero_sample_interval(ped_video, capsys) -> None:
    assert main(["bench", "pipeline", "--video", str(ped_video), "--rss-every", "0"]) == 2
    assert "--rss-every must be at least 1 frame, got 0" in capsys.readouterr().err
