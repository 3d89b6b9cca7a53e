"""The main window with real widgets (offscreen), the shared videos and a real randomly initialised network."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QPushButton, QSlider

from app.sources import open_source
from core.io.files import temp_owner
from core.poses import Poses
from ui.workers import FrameMailbox

pytestmark = pytest.mark.gui

WAIT = 60000  # ms, a hang guard only


@pytest.fixture
def video(data_dir) -> str:
    return str(data_dir / "videos" / "pedestrians_480x360.mp4")


@pytest.fixture
def short_video(data_dir) -> str:
    return str(data_dir / "videos" / "street_5frames_960x540.mp4")


def _open(qtbot, window, spec: str, frames: int = 3) -> None:
    start = window.frames_displayed
    window.open_source(spec)
    qtbot.waitUntil(lambda: window.frames_displayed >= start + frames, timeout=WAIT)


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files of the atomic writer (``.NAME.PID.HEX.part``) in ``folder``, whoever wrote them."""
    return [p for p in folder.iterdir() if temp_owner(p) is not None]


def _wait_idle(qtbot, window) -> int:
    """Wait until the paused player waits for a control and the GUI took every frame it delivered; returns the
    number of frames delivered so far (none can come until the next control)."""
    qtbot.waitUntil(lambda: window.playback.idle and not window.player.mailbox.pending, timeout=WAIT)
    return window.player.mailbox.posted


def test_no_model_plays_the_source_and_the_banner_offers_actions(qtbot, make_window, video):
    window = make_window()
    assert window.estimator is None
    assert window.banner.isVisible()
    text = window.banner.plain_text()
    assert "No pose model is installed" in text and "Hourglass-104" in text
    assert "gopose " not in text and "--arch" not in text  # actions, not command lines
    assert window.banner.open_button.isVisible() and window.banner.add_button.isVisible()
    _open(qtbot, window, video, frames=5)
    assert window.view.frame.shape == (360, 480, 3)
    assert window.view.poses is None
    assert window.status.text("resolution") == "480×360"
    assert "pedestrians_480x360.mp4" in window.status.fields["source"].toolTip()
    qtbot.waitUntil(lambda: window.status.text("display_fps") != "display 0.0 fps", timeout=WAIT)
    assert window.status.text("display_fps").endswith(" fps")  # its value is measured by eval/bench_gui.py
    assert window.status.text("inference_fps") == "inference –"
    # the view keeps the aspect ratio of the frame
    r = window.view.image_rect()
    assert r.width() / r.height() == pytest.approx(480 / 360, rel=0.01)
    assert r.width() <= window.view.width() + 0.5 and r.height() <= window.view.height() + 0.5


def test_closing_the_source_clears_the_status_numbers(qtbot, make_window, video):
    from app.engine import FrameResult

    window = make_window()
    shown = []
    window.player.displayed.connect(lambda frame, _poses: shown.append(frame))
    _open(qtbot, window, video)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    two = Poses(np.tile(np.array([[[100.0, 80.0, 0.9]]], np.float32), (2, 17, 1)), np.array([0.9, 0.8]))
    window.runner.post(shown[-1], FrameResult(two, {}, (480, 360)))  # what the live pipeline delivers
    qtbot.waitUntil(lambda: window.results_displayed == 1, timeout=WAIT)
    window.refresh_status()
    assert window.status.text("people") == "people 2" and window.status.text("latency").endswith(" ms")
    window.close_source()
    window.refresh_status()  # as the status timer does: no source, no numbers of the one closed
    assert [window.status.text(k) for k in ("display_fps", "latency", "people")] == [
        "display 0.0 fps", "latency –", "people –"]


def test_a_folder_given_with_a_trailing_slash_is_named_in_the_status_bar(qtbot, make_window, tmp_path):
    """``--source frames/`` (as a shell completes it): the status bar and the early-end note name the folder (before:
    the text after the last slash, nothing)."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 60, 3), 60 * i, np.uint8))
    (folder / "3.png").write_bytes(b"not an image")  # the last one unreadable: the folder ends early
    window = make_window()
    ends: list[int] = []
    window.end_reached.connect(lambda: ends.append(1))
    window.open_source(f"{folder}/")
    qtbot.waitUntil(lambda: len(ends) == 1, timeout=WAIT)
    assert window.status.text("source") == "frames"
    assert window.transport.end_note.startswith("frames ends at 0:00.12: 1 of 4 frames could not be decoded")


def test_a_frame_delivered_before_closing_the_source_is_not_shown_after(qtbot, make_window, video):
    window = make_window()
    _open(qtbot, window, video)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    window.act_step.trigger()
    end = time.monotonic() + 30
    while not window.player.mailbox.pending:  # the step's frame waits for the GUI (no events processed here)
        assert time.monotonic() < end
        time.sleep(0.005)
    window.close_source()
    qtbot.wait(100)
    assert window.view.frame is None and window.playback is None


def _wait_posted(window) -> None:
    """Wait until a frame waits for the GUI in the mailbox (no events processed here)."""
    end = time.monotonic() + 30
    while not window.player.mailbox.pending:
        assert time.monotonic() < end
        time.sleep(0.005)


def test_a_frame_of_the_previous_source_is_not_shown_after_another_opened(qtbot, make_window, video, short_video):
    """The old runner may still deliver a frame (e.g. one in the network) after the new source opened: it is
    dropped, not flashed on screen (nor recorded) over the new source."""
    window = make_window()
    _open(qtbot, window, video)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    assert window.player.open_source(short_video).join(30)  # open; the GUI learns it with the next events
    window.act_step.trigger()  # meanwhile the old source delivers one more frame
    _wait_posted(window)
    shown = []
    window.player.source_changed.connect(
        lambda _s: window.player.displayed.connect(lambda frame, _p: shown.append(frame.image.shape)))
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=WAIT)
    assert set(shown) == {(540, 960, 3)}


def test_the_end_of_the_previous_source_does_not_end_the_next_one(qtbot, make_window, video, short_video):
    """The old file reaching its end just as another source opens is not the new source's end (a scripted run
    would quit on it)."""
    window = make_window()
    _open(qtbot, window, short_video, frames=1)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    old = window.playback
    assert window.player.open_source(video).join(30)
    window.act_play.trigger()  # the old file plays on to its end before the GUI learns of the new source
    end = time.monotonic() + 30
    while not old.at_end:
        assert time.monotonic() < end
        time.sleep(0.005)
    time.sleep(0.05)  # its end is announced right after
    ends = []
    window.source_ready.connect(lambda _s: window.end_reached.connect(lambda: ends.append(window.source_spec)))
    qtbot.waitUntil(lambda: window.source_spec == video and window.frames_displayed >= 3, timeout=WAIT)
    assert ends == []


def test_closing_the_window_while_a_source_opens_starts_nothing_after(qtbot, make_window, video):
    window = make_window()
    opened = []
    window.player.source_changed.connect(opened.append)
    window.open_source(video)
    window.close()  # the source opens in a worker; closing waits for it
    qtbot.wait(200)  # the open task's result arrives now
    assert opened == [] and window.playback is None and not window.player.running


def test_play_pause_step_seek_and_shortcuts(qtbot, make_window, video):
    window = make_window()
    _open(qtbot, window, video)
    window.act_play.trigger()  # pause
    assert window.playback.paused and window.act_play.text() == "Play"
    posted, shown = _wait_idle(qtbot, window), window.frames_displayed
    window.act_step.trigger()
    qtbot.waitUntil(lambda: window.frames_displayed == shown + 1, timeout=WAIT)
    assert _wait_idle(qtbot, window) == posted + 1  # exactly one frame per step
    window.seek(40.0)
    qtbot.waitUntil(lambda: abs(window.playback.position - 40.0) < 0.15, timeout=WAIT)
    qtbot.waitUntil(lambda: abs(window.playbar.slider.value() - 40000) <= 150, timeout=WAIT)
    assert window.playback.paused  # seeking while paused shows the frame there and stays paused
    qtbot.keyClick(window, Qt.Key_Left)  # back 5 s
    qtbot.waitUntil(lambda: abs(window.playback.position - 35.0) < 0.15, timeout=WAIT)
    window.playbar.slider.triggerAction(QSlider.SliderPageStepAdd)  # the seek slider: +5 s
    qtbot.waitUntil(lambda: abs(window.playback.position - 40.0) < 0.15, timeout=WAIT)
    qtbot.keyClick(window, Qt.Key_BracketRight)  # faster
    assert window.playback.speed == 1.5
    qtbot.keyClick(window, Qt.Key_Space)  # play again
    assert not window.playback.paused
    m = window.frames_displayed
    qtbot.waitUntil(lambda: window.frames_displayed >= m + 3, timeout=WAIT)
    assert window.playback.position > 35.0
    window.act_play.trigger()  # closing while paused must not hang on the waiting player
    runner = window.runner
    window.shutdown(timeout=60.0)  # the timeout only guards against a hang
    assert not runner.running


def test_bad_file_shows_an_error_dialog_and_the_window_survives(qtbot, make_window, tmp_path, video):
    window = make_window()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    window.open_source(str(bad))
    qtbot.waitUntil(lambda: len(window.errors) == 1, timeout=WAIT)
    assert "broken.mp4" in window.errors[0]
    assert window.dialogs and window.dialogs[-1].isVisible() and "broken.mp4" in window.dialogs[-1].text()
    window.open_source(str(tmp_path / "missing.mp4"))
    qtbot.waitUntil(lambda: len(window.errors) == 2, timeout=WAIT)
    assert "missing.mp4" in window.errors[1]
    _open(qtbot, window, video)  # still works
    assert window.isVisible()


def test_an_unexpected_error_in_a_slot_shows_a_dialog_and_the_window_keeps_playing(qtbot, make_window, video,
                                                                                    caplog):
    """With the hook ``gopose gui`` installs, a slot that raises (a bug) is logged with its traceback and shown in
    a dialog, and the window keeps playing (before: PyQt5 aborted the whole process)."""
    from ui.feedback import UnexpectedErrors

    window = make_window()
    hook = UnexpectedErrors(window.show_error, window).install()
    try:
        window.source_ready.connect(lambda _spec: 1 / 0)  # a real signal of the window, a slot with a bug
        _open(qtbot, window, video)
        qtbot.waitUntil(lambda: len(window.errors) == 1, timeout=WAIT)
        _open(qtbot, window, video)  # still playing, and the next failure is shown too
        qtbot.waitUntil(lambda: len(window.errors) == 2, timeout=WAIT)
    finally:
        hook.uninstall()
    assert hook.count == 2 and "ZeroDivisionError: division by zero" in window.errors[0]
    assert window.dialogs and "ZeroDivisionError" in window.dialogs[-1].text()
    assert "Traceback" in caplog.text and "1 / 0" in caplog.text


def test_snapshot_and_recording(qtbot, make_window, tmp_path, video):
    window = make_window()
    _open(qtbot, window, video)
    png = tmp_path / "snap.png"
    assert window.save_snapshot(str(png))
    image = QImage(str(png))
    assert (image.width(), image.height()) == (480, 360)
    out = tmp_path / "rec.mp4"
    assert window.start_recording(str(out))
    n = window.frames_displayed
    qtbot.waitUntil(lambda: window.frames_displayed >= n + 8, timeout=WAIT)
    assert window.stop_recording() == str(out)
    assert not window.errors
    with open_source(str(out)) as src:
        frames = list(src)
    assert src.size == (480, 360) and len(frames) >= 8
    assert not _leftovers(tmp_path)  # nothing left behind
    # a recording during which no frame was shown leaves no file (an empty MP4 would not play)
    window.act_play.trigger()
    _wait_idle(qtbot, window)
    empty = tmp_path / "empty.mp4"
    assert window.start_recording(str(empty))
    assert window.stop_recording() is None
    assert "nothing recorded" in window.errors[-1] and not empty.exists() and not _leftovers(tmp_path)
    # snapshots into a missing folder fail with a dialog, not an exception
    assert not window.save_snapshot(str(tmp_path / "nope" / "x.png"))
    assert "nope" in window.errors[-1]


def _anamorphic_video(path: Path, frames: int = 20) -> Path:
    """A 72x48 H.264 video of pixels shown 32/27 as wide as tall (DV, DVD: a 16:9 picture)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 72, 48, "yuv420p"
        s.codec_context.sample_aspect_ratio = Fraction(32, 27)
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 72, 3), 10 * i, np.uint8), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_an_anamorphic_source_is_shown_as_wide_as_it_plays(qtbot, make_window, tmp_path):
    """The view draws a source with non-square pixels at its display aspect ratio (72x48 pixels of 32:27: 16:9),
    not squeezed to 3:2, and the skeletons stay on the pixels they were found on."""
    from PyQt5.QtGui import QPainter

    window = make_window()
    _open(qtbot, window, str(_anamorphic_video(tmp_path / "dv.mp4")), frames=1)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    r = window.view.image_rect()
    assert r.width() / r.height() == pytest.approx(16 / 9, rel=0.01)
    # a keypoint at the frame's centre pixel is drawn at the centre of the drawn picture
    one = Poses(np.array([[[35.5, 23.5, 1.0]] * 17], np.float32), np.array([1.0]))
    window.view.set_frame(window.view.frame, one)
    image = QImage(window.view.size(), QImage.Format_RGB32)
    painter = QPainter(image)
    window.view.render(painter)
    painter.end()
    centre = image.pixelColor(int(r.center().x()), int(r.center().y()))
    left = image.pixelColor(int(r.x() + r.width() * 0.1), int(r.center().y()))
    assert centre != left  # the dot, over the uniform frame


def test_a_recording_of_an_anamorphic_source_keeps_its_shape(qtbot, make_window, tmp_path):
    """A source with non-square pixels (DV, DVD: sample aspect 32:27) is recorded with that ratio, so the recording
    plays as wide as the source (before: square pixels, a squeezed picture)."""
    from fractions import Fraction

    import av

    window = make_window()
    _open(qtbot, window, str(_anamorphic_video(tmp_path / "dv.mp4")), frames=1)
    out = tmp_path / "rec.mp4"
    assert window.start_recording(str(out))
    n = window.frames_displayed
    qtbot.waitUntil(lambda: window.frames_displayed >= n + 2, timeout=WAIT)
    assert window.stop_recording() == str(out) and not window.errors
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.width, stream.height) == (72, 48)
        assert stream.sample_aspect_ratio == Fraction(32, 27)


def test_a_recording_never_replaces_the_source_it_records(qtbot, make_window, tmp_path, short_video):
    """Recording to the file being played (a slip in the save dialog, or ``--record`` naming the ``--source``)
    is refused with a dialog; before, the finished recording was renamed over the input video."""
    import os

    source = tmp_path / "clip.mp4"
    source.write_bytes(Path(short_video).read_bytes())
    os.symlink(source, tmp_path / "link.mp4")
    before = source.read_bytes()
    window = make_window()
    _open(qtbot, window, str(source), frames=2)
    for target in (source, tmp_path / "link.mp4", tmp_path / "." / "clip.mp4"):
        assert not window.start_recording(str(target))
        assert window.recording.recorder is None and not window.act_record.isChecked()
        assert window.errors[-1] == f"refusing to write {target}: it is the input {source} (choose another file)"
    assert source.read_bytes() == before and not _leftovers(tmp_path)


def test_a_recording_goes_on_when_a_model_of_another_keypoint_spec_is_loaded(qtbot, make_window, tmp_path, video):
    """Started without a model (COCO skeleton), then a CrowdPose model is loaded: its 14-keypoint people are drawn
    with their own skeleton and the recording is kept (before: an IndexError discarded the whole recording)."""
    import torch

    from app.engine import FrameResult
    from core.contract import PoseContract
    from core.keypoints import CROWDPOSE
    from models.checkpoint import save_checkpoint
    from models.factory import ModelConfig, build_model

    torch.manual_seed(0)
    crowdpose = save_checkpoint(tmp_path / "crowdpose.pt",
                                build_model(ModelConfig("realtime", PoseContract(CROWDPOSE), {})))
    window = make_window()
    window.settings.backend, window.settings.long_edge = "torch", 128  # fast: no runtime measured
    window.panel.apply(window.settings)
    shown = []
    window.player.displayed.connect(lambda frame, _poses: shown.append(frame))
    _open(qtbot, window, video)
    out = tmp_path / "rec.mp4"
    assert window.start_recording(str(out))
    window.load_model(str(crowdpose))
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    done = window.results_displayed
    people = Poses(np.tile(np.array([[[100.0, 80.0, 0.9]]], np.float32), (2, 14, 1)), np.array([0.9, 0.8]))
    window.runner.post(shown[-1], FrameResult(people, {}, (480, 360)))  # what the live pipeline delivers
    qtbot.waitUntil(lambda: window.results_displayed == done + 1, timeout=WAIT)
    recorded = window.recording.recorder
    assert window.stop_recording() == str(out) and not window.errors
    with open_source(str(out)) as src:
        assert sum(1 for _ in src) == recorded.frames >= 1  # how many played before the pause depends on the load


def test_recording_keeps_every_frame_shown_through_a_seek_back_and_another_source(qtbot, make_window, tmp_path,
                                                                                   video, short_video):
    """The recording writes what the window shows, in order: after a seek back and after another (larger) source
    is opened it goes on, one frame after the last, letterboxed to the first source's size."""
    window = make_window()
    _open(qtbot, window, video)
    shown: list[float] = []
    out = tmp_path / "rec.mp4"
    assert window.start_recording(str(out))
    window.player.displayed.connect(lambda frame, _poses: shown.append(frame.timestamp))
    qtbot.waitUntil(lambda: window.playback.position >= 2.0, timeout=WAIT)
    window.seek(0.5)
    qtbot.waitUntil(lambda: any(b < a for a, b in zip(shown, shown[1:])) and shown[-1] >= 1.0, timeout=WAIT)
    ended: list[bool] = []
    window.player.stream_ended.connect(lambda: ended.append(True))
    window.open_source(short_video)
    qtbot.waitUntil(lambda: bool(ended), timeout=WAIT)  # after its last frame is shown
    recorded = window.recording.recorder
    assert window.stop_recording() == str(out) and not window.errors
    with open_source(str(out)) as src:
        times = [f.timestamp for f in src]
    assert src.size == (480, 360) and len(times) == recorded.frames == len(shown) - recorded.dropped
    assert all(b > a for a, b in zip(times, times[1:]))


def test_a_source_opened_later_wins_over_one_that_opens_slowly(qtbot, make_window, monkeypatch, video,
                                                               short_video):
    from ui import backend

    real = backend.open_source

    def slow_for_the_first(spec, width=None, height=None):
        if spec == video:
            time.sleep(1.0)  # a network share or URL that is slow to open
        return real(spec, width, height)

    monkeypatch.setattr(backend, "open_source", slow_for_the_first)
    window = make_window()
    window.open_source(video)
    window.open_source(short_video)
    qtbot.waitUntil(lambda: window.frames_displayed >= 2, timeout=WAIT)
    qtbot.wait(1500)  # the slow one has opened meanwhile, and was closed unseen
    assert window.player.source_spec == short_video and window.view.frame.shape == (540, 960, 3)


def test_a_seek_asked_for_just_before_a_restart_is_applied(qtbot, make_window, video, realtime_checkpoint):
    """A model change or smoothing toggle restarts the runner: a seek the old reader had not applied yet is
    carried over, paused or playing."""
    window = make_window()
    window.load_model(str(realtime_checkpoint))
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    _open(qtbot, window, video)
    for paused in (True, False):
        window.transport.set_paused(paused)
        if paused:
            _wait_idle(qtbot, window)
        target = 40.0 if paused else 20.0
        window.seek(target)
        window.player.set_smoothing(not window.settings.smoothing)  # in the same slot: the runner restarts
        qtbot.waitUntil(lambda t=target: abs(window.playback.position - t) < 1.0, timeout=WAIT)


def test_settings_and_recent_files_are_remembered(qtbot, make_window, tmp_path, video):
    settings_file = tmp_path / "remember.ini"
    window = make_window(settings_file)
    _open(qtbot, window, video, frames=1)
    window.panel.flip.setChecked(True)
    window.panel.long_edge.setCurrentIndex(window.panel.long_edge.findData(640))
    window.panel.threshold.setValue(200)  # thousandths
    qtbot.keyClick(window, Qt.Key_B)  # boxes on
    assert window.view.style_options.show_boxes
    window.close()
    again = make_window(settings_file)
    s = again.settings
    assert (s.flip, s.long_edge, s.keypoint_threshold, s.person_threshold, s.show_boxes) == (True, 640, 0.2, None,
                                                                                             True)
    assert again.panel.flip.isChecked() and again.panel.threshold.value() == 200
    assert again.panel.long_edge.currentData() == 640 and again.panel.overridden == {"long_edge",
                                                                                     "keypoint_threshold"}
    assert again.store.recent_files()[0] == str(Path(video).resolve())


def test_realtime_network_runs_live_with_overlay_and_live_thresholds(qtbot, make_window, video,
                                                                        realtime_checkpoint):
    window = make_window()
    window.settings.long_edge = 256
    window.panel.apply(window.settings)
    window.load_model(str(realtime_checkpoint))
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    assert not window.banner.isVisible()
    assert window.estimator.long_edge == 256
    assert window.view.limbs.shape == (19, 2)
    _open(qtbot, window, video, frames=1)
    qtbot.waitUntil(lambda: window.results_displayed >= 4, timeout=WAIT)
    assert isinstance(window.view.poses, Poses)
    assert window.view.poses.n_keypoints == 17
    qtbot.waitUntil(lambda: window.status.text("inference_fps") not in ("inference –", "inference 0.0 fps"),
                    timeout=WAIT)
    assert window.status.text("people").startswith("people ")
    assert window.status.text("latency").endswith(" ms")
    window.panel.threshold.setValue(300)  # live: the running estimator's decoder changes
    assert window.estimator.decoder_config.threshold == pytest.approx(0.30)
    # changing the input size reloads the model in a worker and keeps playing
    old = window.estimator
    window.panel.long_edge.setCurrentIndex(window.panel.long_edge.findData(384))
    qtbot.waitUntil(lambda: window.estimator is not old, timeout=WAIT)
    assert window.estimator.long_edge == 384
    n = window.results_displayed
    qtbot.waitUntil(lambda: window.results_displayed >= n + 2, timeout=WAIT)
    assert not window.errors
    window.act_play.trigger()  # pause, then close: the pipeline must end cleanly
    runner = window.runner
    window.shutdown()
    assert not runner.running and not runner.pipeline.running


def test_loading_a_bad_checkpoint_shows_an_error(qtbot, make_window, tmp_path):
    window = make_window()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    window.load_model(str(bad))
    qtbot.waitUntil(lambda: len(window.errors) == 1, timeout=WAIT)
    assert "bad.pt" in window.errors[0]
    assert window.estimator is None and window.banner.isVisible()


def _annotation_files(folder: Path) -> list[str]:
    """The names in ``folder`` but the manifests (the journal of an export, with times: not an annotation)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".manifest.json"))


def _same_outputs(a: Path, b: Path) -> None:
    """``a`` holds the same annotation files as ``b``."""
    names_a = _annotation_files(a)
    assert names_a == _annotation_files(b)
    for name in names_a:
        if name.endswith(".json"):
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_export_writes_the_same_files_as_the_cli(qtbot, make_window, tmp_path, short_video, realtime_checkpoint):
    from app.cli import main as cli_main

    window = make_window()
    window.load_model(str(realtime_checkpoint))
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    gui_out, cli_out = tmp_path / "gui", tmp_path / "cli"
    with qtbot.waitSignal(window.export_finished, timeout=60000) as blocker:
        task = window.start_export(short_video, str(gui_out), ["coco", "jsonl", "csv"])
        assert task is not None and window.progress_dialog is not None
    result = blocker.args[0]
    assert result is not None and result.frames == 5 and not result.cancelled, window.errors
    assert window.progress_dialog is None and not window.errors
    code = cli_main(["annotate", short_video, "--model", str(realtime_checkpoint), "--out", str(cli_out),
                     "--formats", "coco,jsonl,csv"])  # both at the model's own input size and thresholds
    assert code == 0
    assert sorted(p.name for p in gui_out.iterdir()) == [
        "street_5frames_960x540.coco.json", "street_5frames_960x540.csv", "street_5frames_960x540.jsonl",
        "street_5frames_960x540.manifest.json"]
    _same_outputs(gui_out, cli_out)


def test_a_later_cli_run_keeps_the_outputs_a_gui_export_wrote_for_another_input(qtbot, make_window, tmp_path,
                                                                                short_video, realtime_checkpoint):
    """The GUI's export records its outputs in a manifest as ``gopose annotate`` does, so a later run for another
    input of the same name writes ``clip-2`` (before: it silently replaced the export's files)."""
    import os

    from app.cli import main as cli_main
    from app.manifest import read_manifest

    clips = [tmp_path / d / "clip.mp4" for d in ("a", "b")]
    for clip in clips:
        clip.parent.mkdir()
        os.symlink(short_video, clip)
    out = tmp_path / "out"
    window = make_window()
    window.settings.backend, window.settings.long_edge = "torch", 128  # fast: no runtime measured
    window.panel.apply(window.settings)
    window.models.name = str(realtime_checkpoint)  # as after a load (the export loads its own copy)
    with qtbot.waitSignal(window.export_finished, timeout=WAIT) as blocker:
        window.start_export(str(clips[0]), str(out), ["jsonl"])
    assert blocker.args[0] is not None, window.errors
    exported = (out / "clip.jsonl").read_bytes()
    assert read_manifest(out / "clip.manifest.json")["input"] == str(clips[0])
    assert cli_main(["annotate", str(clips[1]), "--model", str(realtime_checkpoint), "--out", str(out),
                     "--formats", "jsonl", "--long-edge", "128", "--backend", "torch", "--quiet"]) == 0
    assert (out / "clip.jsonl").read_bytes() == exported and (out / "clip-2.jsonl").exists()
    assert read_manifest(out / "clip.manifest.json")["input"] == str(clips[0])


def test_an_export_keeps_the_settings_it_started_with(qtbot, make_window, tmp_path, short_video):
    """Turning smoothing off in the panel while an export loads its model does not change that export: it writes
    what an export with smoothing on writes (before: it read the window's live settings, after loading)."""
    from app.model_store import builtin_model_path

    window = make_window(builtin_model=builtin_model_path())  # a trained model: its poses show the smoothing
    window.settings.backend = "torch"  # not "auto": no runtime measured
    window.panel.apply(window.settings)
    window.load_model("default")
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    changed, kept = tmp_path / "changed", tmp_path / "kept"
    for out, change in ((changed, True), (kept, False)):
        window.panel.smoothing.setChecked(True)
        with qtbot.waitSignal(window.export_finished, timeout=WAIT) as blocker:
            window.start_export(short_video, str(out), ["jsonl"])
            window.panel.smoothing.setChecked(not change)  # the user changes the panel while the export runs
        assert blocker.args[0] is not None, window.errors
    _same_outputs(changed, kept)


def test_export_cancel_leaves_no_files(qtbot, make_window, tmp_path, video, realtime_checkpoint):
    window = make_window()
    window.settings.long_edge = 256
    window.panel.apply(window.settings)
    window.load_model(str(realtime_checkpoint))
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    out = tmp_path / "out"
    with qtbot.waitSignal(window.export_finished, timeout=60000) as blocker:
        window.start_export(video, str(out), ["coco", "jsonl", "csv"])
        qtbot.waitUntil(lambda: window.progress_dialog is not None and window.progress_dialog.value() >= 3,
                        timeout=WAIT)
        cancel_button = window.progress_dialog.findChild(QPushButton)
        qtbot.mouseClick(cancel_button, Qt.LeftButton)  # the dialog's own Cancel button
    assert blocker.args[0] is None
    assert not list(out.iterdir())


@pytest.mark.parametrize("which", ["input", "out_dir"])
def test_export_with_an_empty_path_says_what_is_missing(qtbot, make_window, tmp_path, monkeypatch, short_video,
                                                        realtime_checkpoint, which):
    window = make_window()
    window.models.name = str(realtime_checkpoint)  # as after a load (the export loads its own copy)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # an empty path must not mean the current folder
    paths = {"input": short_video, "out_dir": str(tmp_path / "out")}
    paths[which] = ""
    assert window.start_export(paths["input"], paths["out_dir"], ["coco"]) is None
    assert window.errors == ["Choose the video to export." if which == "input" else "Choose the output folder."]
    assert window.progress_dialog is None and not list(cwd.iterdir())


def test_drag_and_drop_opens_the_file(qtbot, make_window, video):
    from PyQt5.QtCore import QMimeData, QPoint, QUrl
    from PyQt5.QtGui import QDropEvent

    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(video)])
    event = QDropEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.view.dropEvent(event)
    qtbot.waitUntil(lambda: window.frames_displayed >= 2, timeout=WAIT)
    assert window.source_spec == video


def test_every_action_has_a_unique_shortcut_and_full_screen_toggles(qtbot, make_window):
    window = make_window()
    actions = [a for a in window.actions() if a.text()]
    keys = [a.shortcut().toString() for a in actions]
    assert all(keys), [a.text() for a in actions if not a.shortcut().toString()]
    assert len(set(keys)) == len(keys)
    window.act_fullscreen.trigger()
    qtbot.waitUntil(window.isFullScreen, timeout=WAIT)
    assert window.act_fullscreen.isChecked()
    window.act_fullscreen.trigger()
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=WAIT)


def test_webcam_dialog_lists_cameras_and_resolutions(qtbot):
    from ui.dialogs import WebcamDialog

    none = WebcamDialog([])
    qtbot.addWidget(none)
    assert none.camera.count() == 0
    some = WebcamDialog([(0, (640, 480)), (2, (1280, 720))])
    qtbot.addWidget(some)
    some.camera.setCurrentIndex(1)
    some.resolution.setCurrentIndex(2)
    assert some.choice() == (2, 1280, 720)


def test_installed_model_is_listed_and_loaded_by_default(qtbot, make_window, model_home, realtime_checkpoint):
    from app.model_store import add_model

    add_model(realtime_checkpoint, name="rt_test")
    window = make_window()
    assert window.panel.model.findData("rt_test") >= 0
    assert "pick one in the Model panel" in window.banner.plain_text()  # a model exists: no install text
    window.load_default_model()
    qtbot.waitUntil(lambda: window.estimator is not None, timeout=WAIT)
    assert window.model_name == "rt_test"
    assert window.panel.model.currentData() == "rt_test"


def test_unreachable_url_shows_an_error_and_the_window_survives(qtbot, make_window, video):
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    window = make_window()
    url = f"http://127.0.0.1:{port}/stream.mp4"
    window.open_source(url)
    qtbot.waitUntil(lambda: len(window.errors) == 1, timeout=WAIT)
    assert url in window.errors[0]
    _open(qtbot, window, video)


def test_a_live_source_that_stopped_shows_play_and_one_press_restarts_it(qtbot, make_window, monkeypatch,
                                                                          short_video):
    """A stream or camera that stops delivering leaves nothing playing: the button says Play (before: Pause, and
    the first press only paused the stopped player; a second one was needed to restart it)."""
    from app.sources import VideoSource
    from ui import backend

    # a real stream source (is_live, as rtsp:// is) that stops after its 5 frames
    monkeypatch.setattr(backend, "open_source", lambda spec, width=None, height=None: VideoSource(short_video,
                                                                                                  live=True))
    window = make_window()
    ends: list[int] = []
    window.end_reached.connect(lambda: ends.append(window.frames_displayed))
    window.open_source("rtsp://127.0.0.1/stream")
    qtbot.waitUntil(lambda: len(ends) == 1, timeout=WAIT)
    assert window.playbar.time_label.text().endswith(" / live")
    assert not window.player.running and window.act_play.text() == "Play"
    window.act_play.trigger()  # one press: the player reads the stream again (this one has no more frames: ends)
    qtbot.waitUntil(lambda: len(ends) == 2, timeout=WAIT)
    assert window.act_play.text() == "Play"


def test_a_raw_stream_file_is_not_called_live(qtbot, make_window, tmp_path, short_video):
    """A raw H.264 file (as cameras write it) has no timestamps to seek by, but it is a file: no "live" time."""
    import av

    raw = tmp_path / "camera.h264"
    with av.open(short_video) as inp, av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    window = make_window()
    _open(qtbot, window, str(raw), frames=1)
    assert not window.playback.seekable and not window.playbar.slider.isEnabled()
    assert window.playbar.time_label.text().endswith(" / –")


def _cut_in_half(video: str, out: Path) -> Path:
    """A copy of ``video`` with the second half of its bytes missing (its index still announces every frame)."""
    data = Path(video).read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def test_a_truncated_file_shows_where_it_really_ends(qtbot, make_window, tmp_path, video):
    """pedestrians cut in half decodes 401 of the 795 frames its container announces: at the end the seek bar
    and the time show the real end, and the status bar says how many frames could not be decoded."""
    cut = _cut_in_half(video, tmp_path / "cut.mp4")
    window = make_window()
    window.set_speed(20.0)  # the whole decodable part quickly (the player accepts any speed)
    with qtbot.waitSignal(window.end_reached, timeout=120000):
        window.open_source(str(cut))
        qtbot.waitUntil(lambda: window.playbar.slider.maximum() == 79500, timeout=WAIT)  # the announced 1:19.50
    assert window.playback.at_end and window.playback.paused
    end = window.playback.end_time
    assert 39.0 < end < 41.0
    assert window.playbar.slider.maximum() == round((end + 0.1) * 1000)
    assert window.playbar.time_label.text().endswith(" / 0:40.30")
    note = window.transport.end_note
    assert note == window.statusBar().currentMessage()
    assert "cut.mp4 ends at 0:40.30: 394 of 795 frames could not be decoded" in note
    window.seek(70.0)  # past the real end: the last decodable frame
    qtbot.waitUntil(lambda: window.playback.position == end, timeout=WAIT)
    assert not window.errors


def test_banner_adds_a_checkpoint_to_the_models_and_loads_it(qtbot, make_window, model_home, tmp_path,
                                                             realtime_checkpoint):
    from PyQt5.QtWidgets import QDialogButtonBox

    window = make_window()
    qtbot.mouseClick(window.banner.add_button, Qt.LeftButton)
    dialog = window.models.add_dialog
    assert dialog is not None and dialog.isVisible()
    add = dialog.buttons.button(QDialogButtonBox.Ok)
    assert not add.isEnabled()  # no file yet
    dialog.path.setText(str(tmp_path / "missing.pt"))
    assert not add.isEnabled()
    dialog.path.setText(str(realtime_checkpoint))
    dialog.name.setText("rt_banner")
    assert add.isEnabled() and dialog.values() == (str(realtime_checkpoint), "rt_banner", "")
    with qtbot.waitSignal(window.model_ready, timeout=WAIT) as ready:
        qtbot.mouseClick(add, Qt.LeftButton)
    assert ready.args == ["rt_banner"] and window.estimator is not None
    assert (model_home / "models" / "rt_banner.pt").is_file()  # in the user's models (GOPOSE_HOME)
    assert window.panel.model.findData("rt_banner") >= 0 and window.panel.model.currentData() == "rt_banner"
    assert not window.banner.isVisible() and not window.errors


def test_banner_opens_a_checkpoint_file(qtbot, make_window, realtime_checkpoint):
    window = make_window()
    qtbot.mouseClick(window.banner.open_button, Qt.LeftButton)
    dialog = window.models.file_dialog
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        dialog.selectFile(str(realtime_checkpoint))
        dialog.accept()
    assert window.model_name == str(realtime_checkpoint) and not window.banner.isVisible()
    assert window.settings.last_dir == str(realtime_checkpoint.parent)


def test_banner_reports_a_file_that_is_not_a_checkpoint(qtbot, make_window, model_home, tmp_path):
    bad = tmp_path / "PoseNet_77_epoch.pth"  # named like the authors' release: the kind follows
    bad.write_bytes(b"not a checkpoint")
    window = make_window()
    dialog = window.models.add_model_dialog()
    dialog.path.setText(str(bad))
    assert dialog.values() == (str(bad), "", "hourglass104")
    dialog.accept()
    qtbot.waitUntil(lambda: len(window.errors) == 1, timeout=WAIT)
    assert "PoseNet_77_epoch.pth" in window.errors[0]
    assert window.estimator is None and window.banner.isVisible()
    assert window.panel.model.findData("PoseNet_77_epoch") < 0


def test_the_kind_follows_the_file_chosen_last_unless_the_user_picked_it(qtbot, make_window, tmp_path,
                                                                          realtime_checkpoint):
    """A ``PoseNet_*`` file chosen first, then the user's own checkpoint: the kind goes back to a GOPose checkpoint
    (before: it stayed the authors' Hourglass-104 and adding the checkpoint failed); a kind picked by hand stays."""
    authors = tmp_path / "PoseNet_77_epoch.pth"
    authors.write_bytes(b"the authors' weights")
    window = make_window()
    dialog = window.models.add_model_dialog()
    dialog.path.setText(str(authors))
    assert dialog.values()[2] == "hourglass104"
    dialog.path.setText(str(realtime_checkpoint))
    assert dialog.values() == (str(realtime_checkpoint), "", "")  # what `gopose models add` takes for it
    dialog.reject()
    picked = window.models.add_model_dialog()
    picked.kind.setCurrentIndex(1)
    picked.kind.activated.emit(1)  # as a user picks it
    picked.path.setText(str(realtime_checkpoint))
    assert picked.values()[2] == "hourglass104"


def test_mailbox_drops_and_does_not_count_posts_of_older_runners(qtbot):
    mailbox = FrameMailbox()
    mailbox.post("old", "result", 1)
    mailbox.drop_older_than(2)  # a new source: the old runner's waiting frame goes too
    assert not mailbox.pending
    mailbox.post("late", "result", 1)
    assert (mailbox.pending, mailbox.posted, mailbox.results) == (False, 1, 1)
    mailbox.post("new", "result", 2)
    assert mailbox.take()[0] == "new" and (mailbox.posted, mailbox.results) == (2, 2)


def test_the_end_is_not_lost_when_the_runner_restarts_while_the_last_frame_is_pending(qtbot, make_window,
                                                                                   short_video):
    """A model or smoothing change restarts the runner; if the end of the file was read while its last frame was
    still in the stopped runner, ``stream_ended`` still comes (the transport and recordings wait for it)."""
    window = make_window()
    _open(qtbot, window, short_video, frames=1)
    window.act_play.trigger()  # pause
    _wait_idle(qtbot, window)
    ended: list[bool] = []
    window.player.stream_ended.connect(lambda: ended.append(True))
    window.player._end_pending = True  # the state between reading the end and showing the last frame
    window.player.restart_runner()
    assert ended == [True]
