"""The tracking benchmark: its id-switch proxies on hand-made tracks, and a smoke run on a real (random) checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.cli import main
from eval.bench_tracking import count_fragmentations, count_jumps, track_metrics


def _box(x: float, y: float, w: float = 40.0, h: float = 100.0) -> list[float]:
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def _frames(*people: list[tuple[int, float]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames from per-frame lists of (id, x) of 40 x 100 px people on one line."""
    return [(np.array([i for i, _ in p], np.int64), np.array([_box(x, 200) for _, x in p]).reshape(-1, 4))
            for p in people]


def test_clean_tracks_have_no_switches() -> None:
    frames = _frames(*[[(0, 100 + 5 * f), (1, 300 - 5 * f), (-1, 50)] for f in range(20)])
    m = track_metrics(frames)
    assert m["id_switches"] == 0 and m["ids"] == 2 and m["track_length_mean"] == 20.0
    assert m["people"] == 60 and m["tracked_share"] == round(40 / 60, 4)


def test_a_swap_is_a_jump() -> None:
    # two people 150 px apart exchange ids at frame 5: each id jumps onto the other's previous place
    frames = _frames(*[[(0, 100), (1, 250)] for _ in range(5)], *[[(1, 100), (0, 250)] for _ in range(5)])
    assert count_jumps(frames) == 2
    # the same motion without another person to take over from is not counted (a detection glitch, not a swap)
    alone = _frames(*[[(0, 100)] for _ in range(5)], *[[(0, 250)] for _ in range(5)])
    assert count_jumps(alone) == 0
    # nor is a move smaller than half the box size
    assert count_jumps(_frames([(0, 100), (1, 130)], [(1, 110), (0, 125)])) == 0


def test_fragmentation_is_an_end_followed_by_a_nearby_start() -> None:
    track = [[(0, 100 + 2 * f)] for f in range(10)]
    gap = [[] for _ in range(3)]
    assert count_fragmentations(_frames(*track, *gap, *[[(1, 130 + 2 * f)] for f in range(5)])) == 1
    assert count_fragmentations(_frames(*track, *gap, *[[(1, 400)] for _ in range(5)])) == 0  # elsewhere
    late = [[] for _ in range(12)]
    assert count_fragmentations(_frames(*track, *late, *[[(1, 120)] for _ in range(5)]), gap=10) == 0
    assert count_fragmentations(_frames(*track)) == 0  # ending with the video is no fragmentation
    # one new id continues at most one ended id
    two = [[(0, 100), (1, 110)] for _ in range(5)]
    assert count_fragmentations(_frames(*two, [], *[[(2, 105)] for _ in range(3)])) == 1


def test_bench_tracking_runs_and_ends_with_json(ped_video: Path, checkpoint: Path, capsys) -> None:
    rc = main(["bench", "tracking", "--video", str(ped_video), "--model", str(checkpoint), "--long-edge", "128",
               "--threshold", "1e-4", "--backend", "torch", "--frames", "8"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    result = json.loads(out[-1])
    assert result["frames"] == 8 and result["model"] == checkpoint.name
    for r in (result, result["legacy"]):
        assert r["tracks_created"] >= r["tracks_confirmed"] == r["ids"] > 0
        assert r["id_switches"] == r["jumps"] + r["fragmentations"] and r["track_length_mean"] > 0
    assert result["legacy"]["tracked_share"] == 1.0  # the first release tracked every person, fragments too
    assert any("ID switches" in line for line in out[:-1])


def test_bench_tracking_without_a_model_is_one_line(ped_video: Path, tmp_path: Path, capsys, monkeypatch,
                                                   without_builtin_model: Path) -> None:
    monkeypatch.setenv("GOPOSE_HOME", str(tmp_path / "home"))
    assert main(["bench", "tracking", "--video", str(ped_video)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gopose models add" in err
