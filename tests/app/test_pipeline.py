"""The threaded pipeline with a real (random) network on the shared videos: order, batching, live dropping,
errors, stop and cleanup."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.exports import export_video_annotations
from app.pipeline import Pipeline
from app.sinks import CocoJsonSink, JsonlSink
from app.sources import PacedSource, open_source
from app.tracking import Tracker
from core.errors import InputError
from core.keypoints import COCO


def test_exhaustive_every_frame_in_order(street_video: Path, estimator) -> None:
    seen = []
    src = open_source(street_video)
    stats = Pipeline(src, estimator, tracker=Tracker(COCO), on_result=lambda f, r: seen.append((f.index, r))).run()
    src.close()
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4] and stats.frames == 5 and stats.dropped == 0
    first = seen[0][1]
    assert len(first.poses) > 0 and first.frame_size == (960, 540)
    assert set(first.timings) == {"preprocess", "network", "decode", "total"}
    assert (first.poses.track_ids >= 0).all()
    # keypoints are in frame coordinates (the canvas is 256 px: frame coordinates reach far beyond it)
    vis = first.poses.keypoints[:, :, 2] > 0
    xs = first.poses.keypoints[:, :, 0][vis]
    assert xs.min() >= -2 and xs.max() <= 962 and xs.max() > 300
    assert stats.latency_median_ms > 0 and stats.recent_fps > 0


def test_batched_equals_unbatched(ped_video: Path, estimator) -> None:
    def run(batch: int) -> list:
        out = []
        src = open_source(ped_video)
        Pipeline(src, estimator, batch_size=batch, max_frames=8,
                 on_result=lambda f, r: out.append((f.index, r.poses.keypoints.copy()))).run()
        src.close()
        return out

    one, four = run(1), run(4)
    assert [i for i, _ in four] == list(range(8))
    for (_, a), (_, b) in zip(one, four):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-2)


def test_live_policy_drops_stale_frames_and_bounds_latency(ped_video: Path, estimator) -> None:
    # the camera (100 fps replay) is much faster than the network: most frames must be dropped, and the
    # frames that are processed must be recent ones
    src = PacedSource(open_source(ped_video), speed=10.0)
    indices = []
    p = Pipeline(src, estimator, policy="live", max_frames=120, on_result=lambda f, r: indices.append(f.index))
    stats = p.run()
    src.close()
    assert stats.dropped > 0 and stats.frames + stats.dropped <= 120
    assert indices == sorted(indices) and len(indices) == stats.frames
    per_frame = 1000 / max(stats.fps, 1e-3)
    assert stats.latency_p95_ms < 4 * per_frame + 200  # bounded: about one inference, never a growing queue


class _FailingSink(JsonlSink):
    """A real JSONL sink whose disk 'fills up' at the third frame."""

    def write(self, frame, result) -> None:
        if frame.index == 2:
            raise OSError(28, "No space left on device")
        super().write(frame, result)


def test_sink_error_stops_everything_and_leaves_no_files(street_video: Path, estimator, tmp_path: Path) -> None:
    errors = []
    sinks = [CocoJsonSink(tmp_path / "a.coco.json"), _FailingSink(tmp_path / "a.jsonl")]
    src = open_source(street_video)
    p = Pipeline(src, estimator, sinks, on_error=errors.append)
    with pytest.raises(OSError, match="No space left"):
        p.run()
    src.close()
    assert len(errors) == 1 and not p.running
    assert list(tmp_path.iterdir()) == []


def test_stop_finalises_sinks(ped_video: Path, estimator, tmp_path: Path) -> None:
    out = tmp_path / "p.coco.json"
    src = open_source(ped_video)
    got = threading.Event()
    p = Pipeline(src, estimator, [CocoJsonSink(out)], on_result=lambda f, r: got.set() if f.index >= 3 else None)
    p.start()
    assert got.wait(60)
    p.stop()
    assert p.join(30)
    src.close()
    data = json.loads(out.read_text())  # complete and valid JSON
    assert 4 <= len(data["images"]) == p.stats.frames < 795


def test_sinks_opened_before_threads_start(street_video: Path, estimator, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    src = open_source(street_video)
    p = Pipeline(src, estimator, [JsonlSink(tmp_path / "ok.jsonl"), JsonlSink(blocker / "x.jsonl")])
    with pytest.raises(InputError, match="cannot write"):
        p.start()
    src.close()
    assert not p.running and sorted(x.name for x in tmp_path.iterdir()) == ["file"]


def test_export_cancel_and_skip_existing(ped_video: Path, street_video: Path, estimator, tmp_path: Path) -> None:
    cancel = threading.Event()
    progress = []

    def on_progress(done: int, total: int | None) -> None:
        progress.append((done, total))
        if done == 3:
            cancel.set()

    t0 = time.monotonic()
    res = export_video_annotations(ped_video, tmp_path, estimator, progress=on_progress, cancel=cancel)
    assert res.cancelled and res.outputs == {} and list(tmp_path.iterdir()) == []
    assert progress[0] == (1, 795) and time.monotonic() - t0 < 60

    res = export_video_annotations(street_video, tmp_path, estimator, formats="jsonl,csv")
    assert res.frames == 5 and sorted(p.name for p in tmp_path.iterdir()) == [
        "street_5frames_960x540.csv", "street_5frames_960x540.jsonl"]
    again = export_video_annotations(street_video, tmp_path, estimator, formats="jsonl,csv", skip_existing=True)
    assert again.skipped and again.frames == 0


def test_export_meta_matches_stream(street_video: Path, estimator, tmp_path: Path) -> None:
    res = export_video_annotations(street_video, tmp_path, estimator, formats=["coco"], track=False)
    data = json.loads(res.outputs["coco"].read_text())
    assert data["info"]["fps"] == pytest.approx(5.0) and data["info"]["width"] == 960
    assert all(a["track_id"] == -1 for a in data["annotations"])


def test_seek_while_running_restarts_tracks(ped_video: Path, estimator) -> None:
    seen: list[tuple[int, np.ndarray]] = []
    src = open_source(ped_video)

    def on_result(frame, result) -> None:
        if not seen:
            p.seek(20.0)
        seen.append((frame.index, result.poses.track_ids.copy()))

    p = Pipeline(src, estimator, tracker=Tracker(COCO), on_result=on_result, max_frames=14, queue_size=2)
    p.run()
    src.close()
    indices = [i for i, _ in seen]
    assert indices[0] == 0 and 200 in indices
    k = indices.index(200)
    assert indices[:k] == list(range(k))  # frames already decoded before the seek still arrive, in order
    assert indices[k:] == list(range(200, 200 + len(indices) - k))
    before = np.concatenate([ids for _, ids in seen[:k]])
    after = seen[k][1]
    assert len(after) and after.min() > before.max()  # no track survives a jump in time


def test_export_image_folder_of_mixed_sizes(data_dir: Path, estimator, tmp_path: Path) -> None:
    import av

    folder = tmp_path / "imgs"
    folder.mkdir()
    imgs = sorted((data_dir / "coco" / "val2017_subset" / "images").glob("*.jpg"))[:4]
    for p in imgs:
        (folder / p.name).write_bytes(p.read_bytes())
    res = export_video_annotations(folder, tmp_path / "out", estimator)
    assert res.frames == 4
    data = json.loads(res.outputs["coco"].read_text())
    sizes = {(i["width"], i["height"]) for i in data["images"]}
    assert [i["file_name"] for i in data["images"]] == [p.name for p in imgs] and len(sizes) > 1
    with av.open(str(res.outputs["video"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
