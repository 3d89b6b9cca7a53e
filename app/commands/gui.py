"""``gopose gui``: the desktop application (also what ``gopose`` with no command opens).

Scripted runs: ``--quit-after-frames N`` plays N frames (N frames with poses when a model is loaded) and exits;
``--screenshot OUT.png`` saves a picture of the whole window first; ``--record OUT.mp4`` records the annotated
video from the start. Exit codes: 0 on success; 1 when an error dialog appeared during a scripted run, or an
unexpected error (a bug, logged with its traceback and shown as a dialog: the window keeps running) in any run; 2
for bad options or no display; 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM) after an interrupt, which
closes the window cleanly (a recording is finished into a playable file); a second interrupt exits at once.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Mapping

from app.commands.options import at_least, check_output_file, seconds

HELP = "open the desktop application (webcam / video / stream with live skeleton overlay)"

NO_DISPLAY = ("no display found (DISPLAY and WAYLAND_DISPLAY are not set): run it in a desktop session, "
              "or set QT_QPA_PLATFORM=offscreen for a scripted run without a screen (--quit-after-frames, "
              "--screenshot); to annotate videos without a window use `gopose annotate VIDEO`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="FILE|URL|webcam:N", help="open this source at start")
    parser.add_argument("--model", metavar="NAME|FILE", help="installed model name or checkpoint file "
                        "(default: as `gopose annotate`: your default, else the built-in model, else the only "
                        "installed one)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="inference device (remembered, as if chosen in the "
                        "model panel)")
    parser.add_argument("--long-edge", type=int, metavar="PX", help="network input size (long edge, pixels); "
                        "default: the model's own (remembered as your choice until Model > Model defaults)")
    parser.add_argument("--threshold", type=float, metavar="T", help="decoder keypoint threshold in (0, 1]; default: "
                        "the model's tuned one (remembered as your choice until Model > Model defaults)")
    parser.add_argument("--threads", type=at_least(1), metavar="N", help="CPU threads for inference (default: all "
                        "CPUs but one)")
    parser.add_argument("--backend", choices=_backends(), help="network runtime: torch, onnx, openvino, onnx-int8, "
                        "openvino-int8 (CPU) or auto (the fastest fp32 one, measured once); remembered, as if chosen in the "
                        "model panel")
    parser.add_argument("--record", metavar="OUT.mp4", help="record the annotated video of --source from its "
                        "first frame (finished when the window closes)")
    parser.add_argument("--quit-after-frames", type=int, metavar="N",
                        help="scripted run: quit after N displayed frames (N with poses when --model is given)")
    parser.add_argument("--screenshot", metavar="OUT.png", help="scripted run: save the window before quitting, in "
                        "the format of the suffix (.png, .jpg, .bmp...; .png added to a name without one)")
    parser.add_argument("--timeout", type=seconds, default=300.0, metavar="S",
                        help="scripted run: give up (exit 1) after S seconds (default 300)")
    parser.add_argument("--settings", metavar="FILE.ini", help="read/write settings in this INI file instead of "
                        "the user's settings (an existing file of another kind is refused)")
    parser.add_argument("--size", metavar="WxH", help="initial window size, e.g. 1280x720")


def _backends() -> tuple[str, ...]:
    from models.backends import CHOICES

    return CHOICES


def display_problem(env: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Why Qt could not open a window here (Linux without a display server), or None.

    Qt aborts the process ("could not connect to display ... reinstalling the application may fix this
    problem") when the xcb or wayland platform has no server; other platforms (offscreen, vnc, eglfs...) need
    none."""
    if not platform.startswith("linux"):
        return None
    wanted = [p.split(":")[0].strip() for p in env.get("QT_QPA_PLATFORM", "").split(";") if p.strip()]
    has_x, has_wayland = bool(env.get("DISPLAY")), bool(env.get("WAYLAND_DISPLAY"))
    if not wanted:
        return None if has_x or has_wayland else NO_DISPLAY
    for name in wanted:
        if (name == "xcb" and has_x) or (name.startswith("wayland") and has_wayland):
            return None
        if name != "xcb" and not name.startswith("wayland"):
            return None  # a platform without a display server
    return NO_DISPLAY


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    from core.errors import InputError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like 1280x720, got {text!r}") from None
    if w < 200 or h < 150:
        raise InputError(f"--size {text} is too small (at least 200x150)")
    return w, h


def _check_folder(option: str, path: str | None) -> None:
    from core.errors import InputError

    check_output_file(option, path)
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise InputError(f"{option} folder does not exist: {folder}")


def _check_picture(option: str, path: str | None) -> None:
    """A picture an option names must have a suffix Qt can write (the format follows it; none means PNG)."""
    from core.errors import InputError
    from ui.pictures import picture_target

    if path:
        try:
            picture_target(path)
        except ValueError as exc:
            raise InputError(f"{option} {exc}") from None


def _check_settings(path: str | None) -> None:
    """``--settings`` names a GOPose settings file or a new (or empty) one: never a folder nor another kind of
    file (a video, a CSV table), which saving the settings would overwrite."""
    from core.errors import InputError
    from ui.settings import settings_file_problem

    check_output_file("--settings", path)
    problem = settings_file_problem(path) if path else None
    if problem:
        raise InputError(f"--settings {path} {problem}: refusing to overwrite it")


def _validate(args: argparse.Namespace) -> tuple[int, int] | None:
    """Check the options (raises ``InputError``); returns the window size asked for."""
    from core.errors import InputError

    if args.quit_after_frames is not None and args.quit_after_frames < 1:
        raise InputError("--quit-after-frames must be at least 1")
    from core.geometry import long_edge_problem

    problem = None if args.long_edge is None else long_edge_problem(args.long_edge)
    if problem is not None:  # the check of gopose annotate and eval
        raise InputError(f"--long-edge {problem}")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise InputError(f"--threshold must be > 0 and <= 1, got {args.threshold:g}")
    if args.record and not args.source:
        raise InputError("--record needs --source (what to record)")
    _check_folder("--screenshot", args.screenshot)
    _check_picture("--screenshot", args.screenshot)
    _check_folder("--record", args.record)
    _check_settings(args.settings)
    return _parse_size(args.size)


def default_threads(args: argparse.Namespace) -> int:
    """Inference threads without ``--threads``: all CPUs but one, like ``gopose annotate`` (on 2 cores the live
    latency measured 10 % lower with 1 thread than with torch's 2: docs/performance.md)."""
    from app.cli import all_cpus_but_one

    return all_cpus_but_one()


def run(args: argparse.Namespace) -> int:
    from core.errors import InputError

    size = _validate(args)
    problem = display_problem(os.environ)
    if problem:
        raise InputError(problem)

    from PyQt5.QtCore import QSettings, QTimer
    from PyQt5.QtWidgets import QApplication

    from ui.feedback import UnexpectedErrors
    from ui.interrupts import SignalBridge
    from ui.main_window import MainWindow
    from ui.settings import SettingsStore

    app = QApplication.instance() or QApplication(sys.argv[:1])
    interrupts = _Interrupts(app)
    store = SettingsStore(QSettings(args.settings, QSettings.IniFormat) if args.settings else None)
    window = MainWindow(store, threads=args.threads)
    unexpected = UnexpectedErrors(window.show_error, window).install()  # a bug in a callback: a dialog, no abort
    interrupts.window = window
    bridge = SignalBridge(app).install()
    bridge.received.connect(interrupts.on_signal)
    try:
        if args.device:
            window.settings.device = args.device
        if args.backend:
            window.settings.backend = args.backend
        if args.long_edge:
            window.settings.long_edge = args.long_edge
        if args.threshold is not None:
            window.settings.keypoint_threshold = args.threshold
        window.panel.apply(window.settings)
        if size:
            window.resize(*size)
        window.show()
        if args.record:
            _record_when_ready(window, args.record)
        script = _Script(window, app, args) if args.quit_after_frames or args.screenshot else None
        open_source = (lambda: window.open_source(args.source)) if args.source else None
        if args.model:
            window.load_model(args.model, then=open_source)
        else:
            window.load_default_model(then=open_source)
        if script is not None:
            QTimer.singleShot(int(args.timeout * 1000), script.timed_out)
        code = app.exec_()
    finally:
        bridge.uninstall()
        unexpected.uninstall()
    code = 128 + interrupts.signum if interrupts.signum else (script.code if script is not None else code)
    code = code or (1 if unexpected.count else 0)
    _leave_now_if_busy(window.tasks.running(), code)
    return code


def _leave_now_if_busy(busy: list[str], code: int) -> None:
    """Exit at once with ``code`` when a worker is still busy after the window's shutdown waited for it (a model
    load or INT8 calibration deep inside torch / OpenVINO): letting Python tear down the libraries under it
    aborted the process ("terminate called without an active exception", exit 134). Settings and recordings are
    saved by then."""
    if not busy:
        return
    print(f"gopose gui: {', '.join(busy)} still running: exiting without waiting for it", file=sys.stderr,
          flush=True)
    sys.stdout.flush()
    os._exit(code)


def _record_when_ready(window, path: str) -> None:
    """Start recording to ``path`` when the start-up source is open (once)."""

    def start(_spec: str) -> None:
        window.source_ready.disconnect(start)
        window.start_recording(path)

    window.source_ready.connect(start)


class _Interrupts:
    """The first SIGINT/SIGTERM closes the window (finishing a recording); a second one exits at once."""

    def __init__(self, app) -> None:
        self.app = app
        self.window = None
        self.signum = 0

    def on_signal(self, signum: int) -> None:
        from ui.interrupts import default_signals

        if self.signum:
            self.force(signum, None)
        self.signum = signum
        for other in default_signals():  # from now on a signal ends the process, even while closing blocks
            signal.signal(other, self.force)
        note = ""
        if self.window is not None and self.window.recording.recorder is not None:
            recorded = self.window.stop_recording()
            note = (f"; recording saved to {recorded}" if recorded
                    else f"; the recording failed: {self.window.errors[-1] if self.window.errors else '?'}")
        print(f"gopose gui: {signal.Signals(signum).name} received, closing{note}", file=sys.stderr, flush=True)
        if self.window is not None:
            self.window.close()
        self.app.exit(128 + signum)

    @staticmethod
    def force(signum: int, _frame) -> None:
        print(f"gopose gui: {signal.Signals(signum).name} again: exiting without finishing", file=sys.stderr,
              flush=True)
        os._exit(128 + signum)


class _Script:
    """Drives a scripted run: count frames, save the screenshot, quit with an exit code."""

    def __init__(self, window, app, args: argparse.Namespace) -> None:
        self.window, self.app, self.args = window, app, args
        self.code = 1
        self.done = False
        self.want_poses = bool(args.model)
        window.frame_shown.connect(self.on_frame)
        window.error_shown.connect(self.on_error)
        window.end_reached.connect(self.on_end)
        if not args.source and not args.quit_after_frames:
            from PyQt5.QtCore import QTimer

            QTimer.singleShot(500, self.finish)  # screenshot of the idle window

    def on_frame(self, _count: int) -> None:
        n = self.window.results_displayed if self.want_poses else self.window.frames_displayed
        if self.args.quit_after_frames and n >= self.args.quit_after_frames:
            self.finish()

    def on_end(self) -> None:
        if not self.done:
            print(f"gopose gui: the source ended after {self.window.frames_displayed} frames", file=sys.stderr)
            self.finish()

    def on_error(self, message: str) -> None:
        if not self.done:
            print(f"gopose gui: error: {message}", file=sys.stderr)
            self.done = True
            self.code = 1
            self.window.close()
            self.app.exit(1)

    def timed_out(self) -> None:
        if not self.done:
            print(f"gopose gui: timed out after {self.args.timeout:g} s "
                  f"({self.window.frames_displayed} frames shown)", file=sys.stderr)
            self.done = True
            self.window.close()
            self.app.exit(1)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.args.screenshot:
            self.window.refresh_status()
            self.window.view.repaint()
            if not self.window.save_screenshot(self.args.screenshot):
                self.window.close()
                self.app.exit(1)
                return
        self.code = 0
        self.window.close()
        self.app.exit(0)
