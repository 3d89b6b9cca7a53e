"""Playback control over a real video (pacing, pause, step, seek, end) and remembered settings (QSettings)."""
from __future__ import annotations

import threading
import time

import pytest
from PyQt5.QtCore import QSettings

from app.sources import open_source
from ui.playback import PlaybackSource
from ui.settings import MAX_RECENT, SettingsStore, ViewerSettings
from ui.status import RateMeter
from ui.video_view import fit_rect


class Reader:
    """Iterates a playback source in a thread, recording (index, timestamp, wall time) and, in ``seeks``, the
    source's ``seek_count`` read right after each frame (as the engine's pipeline reads it)."""

    def __init__(self, playback: PlaybackSource) -> None:
        self.items: list[tuple[int, float, float]] = []
        self.seeks: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(playback,), daemon=True)
        self.thread.start()

    def _run(self, playback: PlaybackSource) -> None:
        for frame in playback:
            self.seeks.append(playback.seek_count)
            self.items.append((frame.index, frame.timestamp, time.monotonic()))
        self.done.set()

    def wait_count(self, n: int, timeout: float = 30.0) -> None:
        _wait_for(lambda: len(self.items) >= n, timeout, f"{n} frames")


def _wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; ``timeout`` only guards against a hang."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"still waiting for {what}"
        time.sleep(0.01)


def _idle_count(play: PlaybackSource, reader: Reader) -> int:
    """Frames delivered once the paused player waits for a control (none can come before the next one)."""
    _wait_for(lambda: play.idle, 30.0, "the paused player to wait")
    return len(reader.items)


@pytest.fixture
def pedestrians(data_dir):
    src = open_source(str(data_dir / "videos" / "pedestrians_480x360.mp4"))
    yield src
    src.close()


def test_paced_at_speed_and_pause_step(pedestrians):
    play = PlaybackSource(pedestrians, speed=2.0)  # 10 fps file at 2x: 20 frames per second
    started = time.monotonic()
    reader = Reader(play)
    reader.wait_count(11)
    (_, ts0, _), (_, ts1, w1) = reader.items[0], reader.items[10]
    assert ts1 - ts0 == pytest.approx(1.0, abs=0.01)
    # never ahead of the clock: 1 s of video at 2x is not released before 0.5 s have passed since the start (how
    # closely it keeps to the schedule is a measurement, made by eval/bench_gui.py)
    assert w1 - started >= 0.5
    play.set_paused(True)
    n = _idle_count(play, reader)
    play.step()
    reader.wait_count(n + 1)
    assert _idle_count(play, reader) == n + 1  # exactly one frame per step
    assert reader.items[-1][0] == reader.items[-2][0] + 1
    play.close()
    assert reader.done.wait(30)


def test_seek_while_paused_shows_the_target_frame(pedestrians):
    play = PlaybackSource(pedestrians, paused=True)
    reader = Reader(play)
    assert _idle_count(play, reader) == 0  # opened paused: nothing until a control
    play.seek(30.0)
    reader.wait_count(1)
    index, ts, _ = reader.items[0]
    assert ts == pytest.approx(30.0, abs=0.11) and index == pytest.approx(300, abs=1)
    play.seek(5.0)
    reader.wait_count(2)
    assert reader.items[1][1] == pytest.approx(5.0, abs=0.11)
    assert play.position == reader.items[1][1]
    play.close()
    assert reader.done.wait(30)


def test_seek_count_changes_exactly_at_the_first_frame_after_a_seek(pedestrians):
    """The count the pipeline adds to a frame's seek epoch: frames read before a seek keep the old count, the first
    frame after it (paused or playing) carries the new one."""
    play = PlaybackSource(pedestrians, paused=True)
    reader = Reader(play)
    play.step(3)
    reader.wait_count(3)
    assert _idle_count(play, reader) == 3 and reader.seeks == [0, 0, 0]
    play.seek(reader.items[-1][1] + 2.0)  # a short seek while paused: the frame there
    reader.wait_count(4)
    assert reader.seeks[3] == 1 and reader.items[3][0] == 22
    play.set_speed(4.0)
    play.set_paused(False)
    reader.wait_count(6)
    n = len(reader.items)
    target = reader.items[-1][1] + 2.0
    play.seek(target)
    _wait_for(lambda: reader.seeks[-1] == 2, 30.0, "a frame after the seek")
    first = reader.seeks.index(2)
    assert first >= n and set(reader.seeks[4:first]) == {1}
    assert all(ts < target - 1.0 for _, ts, _ in reader.items[:first])  # read before the seek
    assert reader.items[first][1] == pytest.approx(target, abs=0.05)  # the first frame after it
    play.close()
    assert reader.done.wait(30)


def test_end_pauses_and_play_restarts(data_dir):
    src = open_source(str(data_dir / "videos" / "street_5frames_960x540.mp4"))
    ended = threading.Event()
    play = PlaybackSource(src, speed=4.0, on_end=ended.set)
    reader = Reader(play)
    assert ended.wait(30)
    assert len(reader.items) == 5 and play.at_end and play.paused
    assert play.end_time == reader.items[-1][1] and not play.ended_early  # complete: the announced length holds
    assert play.duration == play.announced_duration == 1.0 and play.lost_frames == 0  # 5 frames at 5 fps
    assert not reader.done.is_set()  # the player waits at the end instead of finishing
    play.set_paused(False)  # play after the end starts over
    reader.wait_count(6)
    assert reader.items[5][0] == 0
    play.shutdown()
    assert reader.done.wait(30)
    assert src.closed


def test_a_truncated_file_ends_early_after_a_seek(data_dir, tmp_path):
    """Reaching the end after a seek still finds the real end; the lost frames are then an estimate from the
    last timestamp (the source's exact count needs a read from the start, see test_main_window)."""
    data = (data_dir / "videos" / "pedestrians_480x360.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    ended = threading.Event()
    with open_source(str(cut)) as src:
        play = PlaybackSource(src, speed=4.0, paused=True, on_end=ended.set)
        assert play.duration == 79.5 and play.end_time is None
        reader = Reader(play)
        play.seek(38.0)
        reader.wait_count(1)
        play.set_paused(False)
        assert ended.wait(60)
        last = reader.items[-1][1]
        assert play.end_time == last and 39.0 < last < 41.0 and play.ended_early
        assert play.duration == pytest.approx(last + 0.1)
        assert not play.lost_frames_exact and play.lost_frames == 795 - (round(last * 10) + 1)
        play.seek(70.0)  # past the end: nothing to show, and the known end stays
        play.close()
        assert reader.done.wait(30)
        assert play.end_time == last


def test_settings_roundtrip_and_recent(tmp_path):
    store = SettingsStore(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    assert store.load() == ViewerSettings()  # defaults without saved state
    s = ViewerSettings(model="rt", device="cpu", long_edge=640, flip=True, keypoint_threshold=0.2,
                       smoothing=False, show_ids=True, speed=2.0)
    store.save(s)
    again = SettingsStore(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    assert again.load() == s
    for i in range(MAX_RECENT + 3):
        again.add_recent(f"webcam:{i}")
    again.add_recent("webcam:5")
    recent = again.recent_files()
    assert len(recent) == MAX_RECENT and recent[0] == "webcam:5" and recent.count("webcam:5") == 1
    for corrupt in ("not a number", "16", "100000"):  # a value no model accepts -> the model's own
        again.qsettings.setValue("viewer/long_edge", corrupt)
        assert again.load().long_edge == ViewerSettings().long_edge


@pytest.mark.parametrize("stored", ["0.8", "1.2", "nan"])
def test_a_stored_speed_the_picker_does_not_offer_plays_at_the_one_shown(qtbot, make_window, tmp_path, data_dir,
                                                                         stored):
    ini = tmp_path / "speed.ini"
    ini.write_text(f"[viewer]\nsettings_version=2\nspeed={stored}\n")
    window = make_window(ini)
    window.open_source(str(data_dir / "videos" / "street_5frames_960x540.mp4"))
    qtbot.waitUntil(lambda: window.playback is not None, timeout=30000)
    shown = window.playbar.speed.currentData()
    assert window.playback.speed == window.settings.speed == shown


def test_fit_rect_and_rate_meter():
    r = fit_rect(480, 360, 800, 400)  # wide area: pillarbox
    assert (r.width(), r.height()) == pytest.approx((400 * 480 / 360, 400))
    assert r.x() == pytest.approx((800 - r.width()) / 2) and r.y() == 0
    r = fit_rect(1280, 720, 640, 640)  # tall area: letterbox
    assert (r.width(), r.height(), r.y()) == pytest.approx((640, 360, 140))
    meter = RateMeter(window=2.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)
    assert meter.rate(101.0) == pytest.approx(10.0)
    assert meter.rate(110.0) == 0.0


def test_hand_edited_values_with_unquoted_commas_are_read_whole(tmp_path):
    """Qt reads an unquoted ``a,b`` in an INI file as a list: a text setting gets its text back (before: the
    string "['coco', 'jsonl']", which lost the export formats)."""
    path = tmp_path / "s.ini"
    path.write_text("[viewer]\nsettings_version=2\nexport_formats=coco,jsonl\nlast_dir=/tmp/a, b\n", encoding="utf-8")
    s = SettingsStore(QSettings(str(path), QSettings.IniFormat)).load()
    assert s.export_formats == "coco,jsonl" and s.last_dir == "/tmp/a,b"
