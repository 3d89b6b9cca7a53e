"""The threaded pipeline with a real (random) network on the shared videos: order, batching, live dropping,
errors, stop and cleanup, seeking. No timings are asserted (they live in ``gopose bench pipeline``): every
check follows events (frames read, frames delivered, resets), with generous waits only as hang guards."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from app.exports import export_video_annotations
from app.pipeline import Pipeline
from app.sinks import CocoJsonSink, JsonlSink
from app.smoothing import PoseSmoother
from app.sources import Frame, FrameSource, PacedSource, open_source
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
    # people of the first frame are tracked at once, except those with too few keypoints to track
    trackable = first.poses.visible.sum(1) >= Tracker(COCO).min_keypoints
    assert trackable.any() and (first.poses.track_ids[trackable] >= 0).all()
    assert (first.poses.track_ids[~trackable] == -1).all()
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


class _ReadLog(FrameSource):
    """A real source passed through, logging each frame it hands to the pipeline into a shared event log."""

    def __init__(self, inner: FrameSource, log: list) -> None:
        super().__init__()
        self.inner, self.log = inner, log
        self.name, self.fps, self.size = inner.name, inner.fps, inner.size
        self.frame_count, self.is_live, self.seekable = inner.frame_count, inner.is_live, inner.seekable
        self._cond = threading.Condition()
        self.reads = 0

    def _frames(self) -> Iterator[Frame]:
        for frame in self.inner:
            with self._cond:
                self.log.append(("read", frame.index))
                self.reads += 1
                self._cond.notify_all()
            yield frame

    def wait_reads(self, n: int, timeout: float = 60.0) -> bool:
        """Wait until ``n`` frames were read (the timeout is a hang guard only)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.reads >= n, timeout)

    def seek(self, seconds: float) -> None:
        self.inner.seek(seconds)

    def close(self) -> None:
        super().close()
        self.inner.close()


def _queued_behind(log: list) -> list[int]:
    """For each delivered frame: how many frames read before its delivery were delivered after it (the frames
    queued behind it; frames dropped in between do not count)."""
    delivered = {i for kind, i in log if kind == "deliver"}
    read, done, behind = [], set(), []
    for kind, i in log:
        if kind == "read" and i in delivered:
            read.append(i)
        elif kind == "deliver":
            done.add(i)
            behind.append(sum(1 for j in read if j not in done))
    return behind


def test_live_policy_drops_stale_frames_and_bounds_latency(ped_video: Path, estimator) -> None:
    # the camera (100 fps replay) is faster than the network; the first result is held until the camera has
    # delivered 20 more frames, so stale frames must be dropped. Latency stays bounded: however far behind the
    # network is, at most 3 frames (the newest-frame slot, the network, the result queue) wait behind the one
    # being delivered, never a growing queue.
    log: list = []
    src = _ReadLog(PacedSource(open_source(ped_video), speed=10.0), log)

    def on_result(frame, result) -> None:
        if not any(kind == "deliver" for kind, _ in log):
            assert src.wait_reads(21)
        log.append(("deliver", frame.index))

    stats = Pipeline(src, estimator, policy="live", max_frames=120, on_result=on_result).run()
    src.close()
    indices = [i for kind, i in log if kind == "deliver"]
    assert stats.dropped >= 20 - 3 and stats.frames + stats.dropped <= 120
    assert indices == sorted(indices) and len(indices) == stats.frames
    assert max(_queued_behind(log)) <= 3


def test_live_policy_delivers_the_last_frame(ped_video: Path, estimator) -> None:
    """The end of a live stream does not replace its newest frame: the last frame read is the last one shown
    (the network is slower than decoding here, so frames before it are dropped)."""
    seen: list[int] = []
    with open_source(ped_video) as src:
        stats = Pipeline(src, estimator, policy="live", max_frames=40,
                         on_result=lambda frame, result: seen.append(frame.index)).run()
    assert seen[-1] == 39 and len(seen) + stats.dropped == 40


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


class _FailingFinishSink(JsonlSink):
    """A real JSONL sink whose disk fills up when its last bytes are flushed at the end."""

    def finish(self) -> None:
        raise OSError(28, "No space left on device")


def test_sink_failing_at_the_end_stops_the_run_with_one_error(street_video: Path, estimator, tmp_path: Path,
                                                               caplog) -> None:
    """A sink that fails while closing is the run's one error (``on_error`` too, nothing logged besides), and the
    sinks not yet closed are discarded, as after any error."""
    errors = []
    sinks = [_FailingFinishSink(tmp_path / "a.jsonl"), CocoJsonSink(tmp_path / "a.coco.json")]
    with open_source(street_video) as src, caplog.at_level("WARNING"):
        p = Pipeline(src, estimator, sinks, on_error=errors.append)
        with pytest.raises(OSError, match="No space left"):
            p.run()
    assert len(errors) == 1 and errors[0] is p.error
    assert not [r for r in caplog.records if r.name == "app.pipeline"]
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


def test_a_signal_while_the_threads_start_stops_cleanly(ped_video: Path, estimator, tmp_path: Path,
                                                        monkeypatch) -> None:
    """Ctrl-C / SIGTERM landing in start() between creating a stage thread and starting it: the interrupt
    propagates (not "cannot join thread before it is started"), the started stages stop and can be joined, and
    the sinks, which nothing wrote to yet, are discarded."""
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name == "gopose-infer":
            raise KeyboardInterrupt
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    src = open_source(ped_video)
    p = Pipeline(src, estimator, [JsonlSink(tmp_path / "out.jsonl")])
    with pytest.raises(KeyboardInterrupt):
        p.run()
    assert p.join(30) and not p.running
    src.close()
    assert list(tmp_path.iterdir()) == []                  # the opened sink was discarded, no temporary left


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

    res = export_video_annotations(ped_video, tmp_path, estimator, progress=on_progress, cancel=cancel)
    assert res.cancelled and res.outputs == {} and list(tmp_path.iterdir()) == []
    assert progress == [(1, 795), (2, 795), (3, 795)]  # nothing is delivered after the cancel

    res = export_video_annotations(street_video, tmp_path, estimator, formats="jsonl,csv")
    assert res.frames == 5 and sorted(p.name for p in tmp_path.iterdir()) == [
        "street_5frames_960x540.csv", "street_5frames_960x540.jsonl"]
    again = export_video_annotations(street_video, tmp_path, estimator, formats="jsonl,csv", skip_existing=True)
    assert again.skipped and again.frames == 0


def test_an_export_cancelled_before_it_starts_lists_no_outputs(street_video: Path, estimator,
                                                               tmp_path: Path) -> None:
    """Cancel pressed while the export still opened its input: no file, and the result lists none (before: it
    listed the four outputs it never wrote)."""
    cancel = threading.Event()
    cancel.set()
    res = export_video_annotations(street_video, tmp_path / "out", estimator, cancel=cancel)
    assert res.cancelled and res.outputs == {} and res.frames == 0
    assert list((tmp_path / "out").iterdir()) == []


def test_export_meta_matches_stream(street_video: Path, estimator, tmp_path: Path) -> None:
    res = export_video_annotations(street_video, tmp_path, estimator, formats=["coco"], track=False)
    data = json.loads(res.outputs["coco"].read_text())
    assert data["info"]["fps"] == pytest.approx(5.0) and data["info"]["width"] == 960
    assert all(a["track_id"] == -1 for a in data["annotations"])


def test_annotated_video_of_an_anamorphic_input_keeps_its_shape(estimator, tmp_path: Path) -> None:
    """DV, DVD and some broadcast or phone videos store 720x480 pixels that are shown wider (sample aspect ratio
    32:27, a 16:9 picture): the annotated video keeps that ratio, so it plays as wide as the input instead of
    squeezed; the keypoints stay in the stored pixels, like the frames."""
    from fractions import Fraction

    import av

    path = tmp_path / "dv.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 72, 48, "yuv420p"
        s.codec_context.sample_aspect_ratio = Fraction(32, 27)
        for i in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 72, 3), 60 * i, np.uint8), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    res = export_video_annotations(path, tmp_path / "out", estimator, formats=["video"], track=False)
    with av.open(str(res.outputs["video"])) as c:
        stream = c.streams.video[0]
        assert (stream.width, stream.height) == (72, 48)
        assert stream.sample_aspect_ratio == Fraction(32, 27)


class _LoggedTracker(Tracker):
    """The real tracker, logging its resets and updates into a shared event log."""

    def __init__(self, log: list) -> None:
        super().__init__(COCO)
        self.log = log

    def reset(self) -> None:
        self.log.append(("reset", None))
        super().reset()

    def update(self, poses):
        self.log.append(("update", None))
        return super().update(poses)


class _LoggedSmoother(PoseSmoother):
    """The real smoother, logging its resets."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def reset(self) -> None:
        self.log.append(("smoother reset", None))
        super().reset()


def _run_with_seek(video: Path, estimator, seconds: float, frames: int) -> tuple[list, list]:
    """Run ``frames`` frames; once 3 frames are read (so pre-seek frames are queued) the first result seeks to
    ``seconds``. Returns the event log and ``(index, track_ids)`` per delivered frame."""
    log: list = []
    src = _ReadLog(open_source(video), log)
    seen: list[tuple[int, np.ndarray]] = []

    def on_result(frame, result) -> None:
        if not seen:
            assert src.wait_reads(3)
            p.seek(seconds)
        log.append(("deliver", frame.index))
        seen.append((frame.index, result.poses.track_ids.copy()))

    p = Pipeline(src, estimator, tracker=_LoggedTracker(log), smoother=_LoggedSmoother(log), on_result=on_result,
                 max_frames=frames, queue_size=2)
    p.run()
    src.close()
    return log, seen


def _check_restart_at(log: list, seen: list, target: int) -> None:
    indices = [i for i, _ in seen]
    assert indices[0] == 0 and target in indices
    k = indices.index(target)
    assert k >= 3 and indices[:k] == list(range(k))  # frames read before the seek still arrive, in order
    assert indices[k:] == list(range(target, target + len(indices) - k))
    # tracking and smoothing restart exactly once, right before the first frame after the seek
    events = [kind for kind, _ in log if kind != "read"]
    events = events[events.index("update"):]  # the fresh start of the run itself is not a restart
    resets = [n for n, kind in enumerate(events) if kind == "reset"]
    assert len(resets) == 1 and events.count("smoother reset") == 1
    assert events[resets[0] + 1: resets[0] + 4] == ["smoother reset", "update", "deliver"]
    assert [i for kind, i in log if kind == "deliver"].index(target) == events[: resets[0]].count("deliver")
    before = np.concatenate([ids for _, ids in seen[:k]])
    after = seen[k][1]
    assert (after[after >= 0] > before.max()).all()  # no track survives a jump in time


def test_seek_while_running_restarts_tracks(ped_video: Path, estimator) -> None:
    log, seen = _run_with_seek(ped_video, estimator, 20.0, 14)  # 10 fps: frame 200
    _check_restart_at(log, seen, 200)


def test_short_forward_seek_restarts_tracks_at_the_first_frame_after_it(ped_video: Path, estimator) -> None:
    # +3 s (below the 5 s gap that also resets): only the seek epoch tells the frames apart. Before it, the
    # tracker reset at the next delivered frame (frame 1, read before the seek) and frame 30 was matched
    # against the tracks of the frames before the seek.
    log, seen = _run_with_seek(ped_video, estimator, 3.0, 10)
    _check_restart_at(log, seen, 30)


def _tracked_run(video: Path, estimator, tracker: Tracker, smoother: PoseSmoother, frames: int) -> list:
    """``(index, track_ids, keypoints)`` of the first ``frames`` frames of ``video`` through one pipeline."""
    out: list = []
    with open_source(video) as src:
        Pipeline(src, estimator, tracker=tracker, smoother=smoother, max_frames=frames,
                 on_result=lambda f, r: out.append((f.index, r.poses.track_ids.copy(),
                                                    r.poses.keypoints.copy()))).run()
    return out


def test_a_tracker_reused_for_another_input_starts_afresh(street_video: Path, ped_video: Path, estimator) -> None:
    """One tracker and smoother given to the pipelines of two inputs (a program annotating several files): the
    second input gets the ids and smoothing of a new tracker. Before, its first frame was matched against the
    tracks of the first input's last frame (ids went on from there, or stayed -1 as tentative) and its keypoints
    were blended with that frame's people (both start at time 0, so the smoother kept their state)."""
    fresh = _tracked_run(ped_video, estimator, Tracker(COCO), PoseSmoother(), 3)
    tracker, smoother = Tracker(COCO), PoseSmoother()
    _tracked_run(street_video, estimator, tracker, smoother, 1)
    assert tracker.active_tracks > 0 and smoother.n_states > 0
    reused = _tracked_run(ped_video, estimator, tracker, smoother, 3)
    assert [i for i, _, _ in reused] == [0, 1, 2]
    assert (fresh[0][1] >= 0).any()
    for (_, ids, kp), (_, ids_fresh, kp_fresh) in zip(reused, fresh):
        np.testing.assert_array_equal(ids, ids_fresh)
        np.testing.assert_allclose(kp, kp_fresh, atol=1e-3)
    assert tracker.tracks_confirmed == len({int(i) for _, ids, _ in reused for i in ids if i >= 0})


def test_seek_on_a_live_source_is_refused(ped_video: Path, estimator) -> None:
    src = PacedSource(open_source(ped_video))
    with pytest.raises(InputError, match="not seekable"):
        Pipeline(src, estimator).seek(1.0)
    src.close()


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


class _SlowSink(JsonlSink):
    """A sink on a slow disk: each write takes at least 50 ms."""

    def write(self, frame, result) -> None:
        time.sleep(0.05)
        super().write(frame, result)


def test_stage_busy_time_shows_the_stage_that_limits_the_run(ped_video: Path, estimator, tmp_path: Path) -> None:
    """Each stage thread's working time (not its waits) is counted, so a run can tell which stage limits it (a GPU
    run slower than its stages alone is diagnosed so): here the output stage, held up by a slow sink."""
    src = open_source(ped_video)
    stats = Pipeline(src, estimator, [_SlowSink(tmp_path / "out.jsonl")], max_frames=8).run()
    src.close()
    share = stats.busy_share()
    assert set(stats.busy) == {"source", "network", "output"} and stats.frames == 8
    assert stats.busy["output"] >= 8 * 0.05 and stats.busy["source"] > 0 and stats.busy["network"] > 0
    assert all(0 < v <= 1.0 for v in share.values()) and stats.as_dict()["busy_share"] == share
