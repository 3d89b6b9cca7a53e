"""Seeking in the window restarts tracking and smoothing at the first frame after the seek: a short seek (+2 s,
below the 5 s gap after which the pipeline restarts tracks anyway) must not carry the people of the frames before
it over. Real video, real (random) network, real widgets offscreen."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui

WAIT = 60000  # ms, a hang guard only


@pytest.fixture
def video(data_dir) -> str:
    return str(data_dir / "videos" / "pedestrians_480x360.mp4")


@pytest.fixture
def tracking_window(qtbot, make_window, realtime_checkpoint):
    """A window running the random network with a decoder threshold at which it finds (meaningless but real)
    people that the tracker follows from frame to frame. Returns ``(window, shown)``: ``shown`` collects every
    (frame, poses) displayed."""
    window = make_window()
    window.settings.long_edge = 256
    window.panel.apply(window.settings)
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        window.load_model(str(realtime_checkpoint))
    window.estimator.update_decoder(threshold=2e-4)  # below the panel's range: set on the running estimator
    shown: list = []
    window.player.displayed.connect(lambda frame, poses: shown.append((frame, poses)))
    return window, shown


def _fresh(poses, tracks_before: int) -> bool:
    """People tracked at once, every one with a new id (ids keep counting up; none carried over)."""
    ids = poses.track_ids[poses.track_ids >= 0]
    return len(ids) > 0 and int(ids.min()) >= tracks_before


def test_short_seek_while_paused_shows_the_frame_there_with_fresh_tracks(qtbot, tracking_window, video):
    window, shown = tracking_window
    window.open_source(video)
    qtbot.waitUntil(lambda: window.results_displayed >= 3, timeout=WAIT)
    window.transport.set_paused(True)
    # the last frame the player released is shown: the tracker has seen every frame before the seek
    qtbot.waitUntil(lambda: window.playback.idle and shown[-1][0].timestamp == window.playback.position,
                    timeout=WAIT)
    frame, poses = shown[-1]
    assert (poses.track_ids >= 0).any()  # people are tracked before the seek
    tracks_before = window.runner.pipeline.tracker.tracks_confirmed
    target = frame.timestamp + 2.0
    shown.clear()
    window.seek(target)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=WAIT)
    frame, poses = shown[0]
    assert frame.timestamp >= target - 0.5 / window.playback.fps  # the first frame delivered is from the target
    assert _fresh(poses, tracks_before)
    qtbot.waitUntil(lambda: window.playback.idle, timeout=WAIT)
    assert len(shown) == 1  # paused: just the frame there
    assert not window.errors


def test_short_seek_while_playing_restarts_tracks_at_the_first_frame_after_it(qtbot, tracking_window, video):
    window, shown = tracking_window
    window.open_source(video)
    qtbot.waitUntil(lambda: window.results_displayed >= 3, timeout=WAIT)
    tracker = window.runner.pipeline.tracker
    position = window.playback.position
    tracks_before = tracker.tracks_confirmed  # frames still in flight may add tracks: a lower bound
    mark = len(shown)
    target = position + 2.0
    window.seek(target)
    half = 0.5 / window.playback.fps
    qtbot.waitUntil(lambda: any(f.timestamp >= target - half for f, _ in shown[mark:]), timeout=WAIT)
    after = shown[mark:]
    first = next(k for k, (f, _) in enumerate(after) if f.timestamp >= target - half)
    assert all(f.timestamp <= position + 1.0 for f, _ in after[:first])  # only frames read before the seek
    assert _fresh(after[first][1], tracks_before)
    assert window.runner.pipeline.tracker is tracker  # the same pipeline: the seek restarted its tracks
    assert not window.errors
