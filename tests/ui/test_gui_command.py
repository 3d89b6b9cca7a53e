"""``gopose gui`` scripted runs in a real process: offscreen, and on a real X server (Xvfb) with OpenCV imported
first (proving the opencv-python-headless choice: no second Qt from OpenCV's wheel)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PyQt5.QtGui import QImage

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["GOPOSE_HOME"] = str(tmp_path / "home")  # no installed models
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_scripted_run_offscreen_with_model_saves_a_screenshot(tmp_path, data_dir, realtime_checkpoint):
    shot = tmp_path / "window.png"
    cmd = [sys.executable, str(ROOT / "main.py"), "gui", "--source",
           str(data_dir / "videos" / "pedestrians_480x360.mp4"), "--model", str(realtime_checkpoint),
           "--long-edge", "256", "--threads", "1", "--quit-after-frames", "5", "--screenshot", str(shot),
           "--settings", str(tmp_path / "s.ini"), "--size", "1000x600", "--timeout", "120"]
    proc = subprocess.run(cmd, env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1000, 600)


def test_scripted_run_reports_a_bad_source(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    cmd = [sys.executable, str(ROOT / "main.py"), "gui", "--source", str(bad), "--quit-after-frames", "3",
           "--settings", str(tmp_path / "s.ini"), "--timeout", "60"]
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


@pytest.mark.parametrize("argv, fragment", [
    (["--quit-after-frames", "0"], "--quit-after-frames"),
    (["--size", "big"], "--size"),
    (["--screenshot", "/nonexistent_folder_gopose/x.png"], "nonexistent_folder_gopose"),
])
def test_bad_options_exit_2_with_one_line(argv, fragment, capsys):
    from app.cli import main as cli_main

    assert cli_main(["gui", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
