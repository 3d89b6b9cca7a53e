"""``gopose gui`` scripted runs in a real process: offscreen, and on a real X server (Xvfb) with OpenCV imported
first (proving the opencv-python-headless choice: no second Qt from OpenCV's wheel)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings
from PyQt5.QtGui import QImage

from app.sources import open_source
from core.io.files import temp_owner
from ui.settings import SettingsStore

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)  # each test says which display it uses
    env["GOPOSE_HOME"] = str(tmp_path / "home")  # no installed models
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_scripted_run_offscreen_with_model_saves_a_screenshot_and_records_the_whole_file(tmp_path, data_dir,
                                                                                      realtime_checkpoint):
    """A scripted run to the end of a 5-frame file: the screenshot, the remembered choices, and a recording that
    holds the last frame too (the end is announced once that frame is shown, not when it is read)."""
    shot, rec = tmp_path / "window.png", tmp_path / "rec.mp4"
    cmd = [sys.executable, str(ROOT / "main.py"), "gui", "--source",
           str(data_dir / "videos" / "street_5frames_960x540.mp4"), "--model", str(realtime_checkpoint),
           "--long-edge", "256", "--threshold", "0.2", "--threads", "1", "--quit-after-frames", "100",
           "--record", str(rec), "--screenshot", str(shot), "--settings", str(tmp_path / "s.ini"), "--size",
           "1000x600", "--timeout", "120"]
    proc = subprocess.run(cmd, env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1000, 600)
    with open_source(str(rec)) as src:
        assert sum(1 for _ in src) == 5
    # --long-edge and --threshold are the user's choices: remembered over every model's own values
    remembered = SettingsStore(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)).load()
    assert remembered.overrides() == {"long_edge": 256, "keypoint_threshold": 0.2}


def test_scripted_run_reports_a_bad_source(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    cmd = [sys.executable, str(ROOT / "main.py"), "gui", "--source", str(bad), "--quit-after-frames", "3",
           "--settings", str(tmp_path / "s.ini"), "--timeout", "60", "--backend", "torch"]
    proc = subprocess.run(cmd, env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "bad.mp4" in proc.stderr


def _start_xvfb(tmp_path: Path):
    for display in range(91, 120):
        if Path(f"/tmp/.X11-unix/X{display}").exists() or Path(f"/tmp/.X{display}-lock").exists():
            continue
        proc = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{display}").exists():
                return proc, f":{display}"
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    pytest.skip("could not start Xvfb on any display :91..:119")


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_real_x_server_with_opencv_imported_first(tmp_path, data_dir):
    proc, display = _start_xvfb(tmp_path)
    try:
        shot = tmp_path / "xcb.png"
        code = (
            "import sys, cv2\n"  # OpenCV FIRST: a non-headless wheel would now load its own Qt plugins
            "from main import main\n"
            f"sys.exit(main(['gui', '--source', {str(data_dir / 'videos' / 'street_5frames_960x540.mp4')!r}, "
            f"'--quit-after-frames', '3', '--screenshot', {str(shot)!r}, "
            f"'--settings', {str(tmp_path / 's.ini')!r}, '--timeout', '60']))\n"
        )
        env = _env(tmp_path, QT_QPA_PLATFORM="xcb", DISPLAY=display)
        run = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert QImage(str(shot)).width() > 0
    finally:
        proc.terminate()
        proc.wait(10)


class StderrWatch:
    """Collects a process's stderr lines in a thread; ``wait_for(text)`` blocks until a line contains it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        with self._cond:
            found = self._cond.wait_for(lambda: any(text in line for line in self.lines) or
                                        not self._thread.is_alive(), timeout)
        assert found and any(text in line for line in self.lines), f"no {text!r} in stderr:\n{self.text}"

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def join(self, timeout: float) -> str:
        self._thread.join(timeout)
        return self.text


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])  # one handler for both: SIGINT with -m slow
def test_interrupt_closes_cleanly_and_finishes_the_recording(tmp_path, data_dir, signum):
    """Ctrl-C (SIGINT) or kill (SIGTERM) while recording: no traceback, exit code 128 + signal, and the recording
    is a complete video (before: a traceback, SIGABRT and a lost recording)."""
    import av

    out = tmp_path / "rec.mp4"
    cmd = [sys.executable, str(ROOT / "main.py"), "-v", "gui", "--source",
           str(data_dir / "videos" / "pedestrians_480x360.mp4"), "--record", str(out),
           "--settings", str(tmp_path / "s.ini"), "--backend", "torch"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        watch = StderrWatch(proc)
        watch.wait_for("first frame written", timeout=120)  # recording, and the video keeps playing
        proc.send_signal(signum)
        code = proc.wait(timeout=120)  # a hang guard, not a measurement
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = watch.join(30)
    assert code == 128 + signum, err
    assert "Traceback" not in err and f"{signum.name} received, closing; recording saved to {out}" in err
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert frames and (stream.width, stream.height) == (480, 360)
    assert not [p for p in tmp_path.iterdir() if temp_owner(p) is not None]


def test_without_a_display_it_says_what_to_do(tmp_path):
    """No DISPLAY, WAYLAND_DISPLAY or QT_QPA_PLATFORM: one line of advice and exit 2 (before: Qt aborted)."""
    proc = subprocess.run([sys.executable, str(ROOT / "main.py")], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "no display found" in err
    assert "QT_QPA_PLATFORM=offscreen" in err and "gopose annotate" in err


@pytest.mark.parametrize("env, platform, ok", [
    ({}, "linux", False),
    ({"DISPLAY": ":0"}, "linux", True),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", False),
    ({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":1"}, "linux", True),
    ({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":1"}, "linux", True),
    ({"QT_QPA_PLATFORM": "wayland"}, "linux", False),
    ({}, "darwin", True),
    ({}, "win32", True),
])
def test_display_problem(env, platform, ok):
    from app.commands.gui import display_problem

    assert (display_problem(env, platform) is None) == ok


@pytest.mark.parametrize("argv, fragment", [
    (["--quit-after-frames", "0"], "--quit-after-frames"),
    (["--record", "out.mp4"], "--record needs --source"),
    (["--source", "x.mp4", "--record", "/nonexistent_folder_gopose/x.mp4"], "nonexistent_folder_gopose"),
    (["--size", "big"], "--size"),
    (["--screenshot", "/nonexistent_folder_gopose/x.png"], "nonexistent_folder_gopose"),
    (["--threshold", "0"], "--threshold must be > 0 and <= 1, got 0"),
    (["--long-edge", "16"], "--long-edge must be at least 32, got 16"),
    (["--screenshot", "shot.mp4"], "--screenshot shot.mp4: cannot write pictures as '.mp4'; use one of"),
])
def test_bad_options_exit_2_with_one_line(argv, fragment, capsys):
    from app.cli import main as cli_main

    assert cli_main(["gui", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, fragment", [
    (["--threads", "-1"], "argument --threads: must be at least 1, got -1"),  # was a traceback
    (["--threads", "0"], "argument --threads: must be at least 1, got 0"),    # was an error once the window opened
    (["--timeout", "-5"], "argument --timeout: must be > 0 seconds"),         # was no timeout at all, exit 0
    (["--timeout", "0"], "argument --timeout: must be > 0 seconds"),
    (["--screenshot", "{tmp}"], "--screenshot {tmp} is a folder, not a file"),  # was exit 1 after the run
    (["--source", "{video}", "--record", "{tmp}"], "--record {tmp} is a folder, not a file"),  # was exit 0, no file
])
def test_bad_numbers_and_folders_for_files_exit_2_before_the_window_opens(argv, fragment, tmp_path, data_dir,
                                                                          capsys):
    from app.cli import main as cli_main

    names = {"tmp": str(tmp_path), "video": str(data_dir / "videos" / "street_5frames_960x540.mp4")}
    script = ["--quit-after-frames", "1", "--timeout", "30"] if "--timeout" not in argv else ["--screenshot",
                                                                                              str(tmp_path / "s.png")]
    assert cli_main(["gui", *[a.format(**names) for a in argv], *script]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment.format(**names) in err and len(err.splitlines()) == 1


def test_a_settings_file_that_is_not_one_is_refused_not_overwritten(tmp_path, data_dir, capsys):
    """``--settings clip.mp4`` (a slip of the option order) exits 2 with one line and leaves the file as it was;
    before, the window's settings were written over the video."""
    from app.cli import main as cli_main

    clip = tmp_path / "clip.mp4"
    clip.write_bytes((data_dir / "videos" / "street_5frames_960x540.mp4").read_bytes())
    before = clip.read_bytes()
    script = ["--screenshot", str(tmp_path / "s.png"), "--timeout", "30", "--backend", "torch"]
    assert cli_main(["gui", "--settings", str(clip), *script]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--settings {clip} is not a GOPose settings (INI) file" in err and len(err.splitlines()) == 1
    assert clip.read_bytes() == before
    assert cli_main(["gui", "--settings", str(tmp_path), *script]) == 2
    assert f"--settings {tmp_path} is a folder, not a file" in capsys.readouterr().err


def test_a_csv_file_given_as_settings_is_refused_not_overwritten(tmp_path, capsys):
    """``--settings table.csv``: Qt reads a CSV as an INI file without error (no ``=``, no keys), so the check for
    unreadable files let it through and the window's settings replaced the table. Only a file holding GOPose's
    settings (or a new or empty one) is used."""
    from app.cli import main as cli_main

    table = tmp_path / "table.csv"
    table.write_text("frame,person,x,y,score\n0,0,10.5,20.25,0.9\n1,0,11.0,21.0,0.8\n", encoding="utf-8")
    before = table.read_bytes()
    script = ["--screenshot", str(tmp_path / "s.png"), "--timeout", "30", "--backend", "torch"]
    assert cli_main(["gui", "--settings", str(table), *script]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--settings {table} is not a GOPose settings (INI) file" in err and "refusing to overwrite it" in err
    assert len(err.splitlines()) == 1
    assert table.read_bytes() == before


def test_which_files_can_hold_the_settings(tmp_path, data_dir):
    from ui.settings import SettingsStore, ViewerSettings, settings_file_problem

    ours = tmp_path / "ours.ini"
    SettingsStore(QSettings(str(ours), QSettings.IniFormat)).save(ViewerSettings())
    legacy = tmp_path / "legacy.ini"
    legacy.write_text("[viewer]\nspeed=2\n", encoding="utf-8")
    empty = tmp_path / "empty.ini"
    empty.write_text("\n", encoding="utf-8")
    for usable in (tmp_path / "new.ini", empty, ours, legacy):
        assert settings_file_problem(usable) is None, usable
    other = tmp_path / "other.ini"
    other.write_text("[General]\nvolume=3\n", encoding="utf-8")
    table = tmp_path / "t.csv"
    table.write_text("a=b,c\n1,2\n", encoding="utf-8")  # a line with '=' reads as a key, not one of GOPose's
    for foreign in (other, table, data_dir / "videos" / "street_5frames_960x540.mp4"):
        assert settings_file_problem(foreign).startswith("is not a GOPose settings (INI) file"), foreign
    assert settings_file_problem(tmp_path) == "is not a regular file"


def test_an_unexpected_error_in_a_scripted_run_is_shown_and_exits_1(tmp_path, data_dir):
    """A Qt callback that raises during ``gopose gui --quit-after-frames`` (the real command, in its own process):
    logged with its traceback, shown as an error dialog, and the run exits 1 (before: PyQt5 aborted the process
    with SIGABRT)."""
    code = ("import sys\n"
            "from PyQt5.QtCore import QTimer\nfrom PyQt5.QtWidgets import QApplication\n"
            "app = QApplication(sys.argv[:1])\n"
            "QTimer.singleShot(0, lambda: 1 / 0)  # fails inside the window's event loop\n"
            "from app.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-c", code, "gui", "--source", str(data_dir / "videos" / "street_5frames_960x540.mp4"),
           "--quit-after-frames", "3", "--backend", "torch", "--settings", str(tmp_path / "s.ini"), "--timeout", "60"]
    proc = subprocess.run(cmd, cwd=str(ROOT), env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "ZeroDivisionError: division by zero" in proc.stderr


@pytest.mark.slow
def test_a_model_load_still_running_when_the_window_closes_does_not_abort_the_process(tmp_path, data_dir):
    """A scripted run that times out while its model still loads inside torch (a long INT8 calibration): after the
    shutdown's 10 s wait the command exits with its own code and says why (before: Python tore torch down under
    the busy thread, "terminate called without an active exception", exit 134). ~15 s: ``-m slow``."""
    code = ("import sys, torch\n"
            "import ui.backend\n"
            "def busy(*_a, **_k):\n"
            "    a = torch.ones(256, 256)\n"
            "    while True:\n"
            "        a = torch.tanh(a @ a)\n"
            "ui.backend.load_model = busy\n"
            "from app.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-c", code, "gui", "--source", str(data_dir / "videos" / "street_5frames_960x540.mp4"),
           "--quit-after-frames", "3", "--settings", str(tmp_path / "s.ini"), "--timeout", "2", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=str(ROOT), env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "load-model still running: exiting without waiting for it" in proc.stderr
