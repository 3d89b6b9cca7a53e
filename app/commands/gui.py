"""``gopose gui``: the desktop application (also what ``gopose`` with no command opens).

Scripted runs: ``--quit-after-frames N`` plays N frames (N frames with poses when a model is loaded) and exits;
``--screenshot OUT.png`` saves a picture of the whole window first. Exit code 0 on success, 1 when an error
dialog appeared during a scripted run or the window could not start.
"""
from __future__ import annotations

import argparse
import os
import sys

HELP = "open the desktop application (webcam / video / stream with live skeleton overlay)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="FILE|URL|webcam:N", help="open this source at start")
    parser.add_argument("--model", metavar="NAME|FILE", help="installed model name or checkpoint file "
                        "(default: the last one used, else the installed one)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="inference device for this run")
    parser.add_argument("--long-edge", type=int, metavar="PX", help="network input size (long edge, pixels)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for inference")
    parser.add_argument("--quit-after-frames", type=int, metavar="N",
                        help="scripted run: quit after N displayed frames (with poses when a model is used)")
    parser.add_argument("--screenshot", metavar="OUT.png", help="scripted run: save the window as PNG before quitting")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="scripted run: give up (exit 1) after S seconds (default 300)")
    parser.add_argument("--settings", metavar="FILE.ini", help="read/write settings in this INI file instead of "
                        "the user's settings")
    parser.add_argument("--size", metavar="WxH", help="initial window size, e.g. 1280x720")


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


def run(args: argparse.Namespace) -> int:
    from core.errors import InputError

    if args.quit_after_frames is not None and args.quit_after_frames < 1:
        raise InputError("--quit-after-frames must be at least 1")
    if args.long_edge is not None and args.long_edge < 32:
        raise InputError(f"--long-edge must be at least 32, got {args.long_edge}")
    size = _parse_size(args.size)
    if args.screenshot:
        folder = os.path.dirname(os.path.abspath(args.screenshot))
        if not os.path.isdir(folder):
            raise InputError(f"screenshot folder does not exist: {folder}")

    from PyQt5.QtCore import QSettings, QTimer
    from PyQt5.QtWidgets import QApplication

    from ui.main_window import MainWindow
    from ui.settings import SettingsStore

    app = QApplication.instance() or QApplication(sys.argv[:1])
    store = SettingsStore(QSettings(args.settings, QSettings.IniFormat) if args.settings else None)
    window = MainWindow(store, threads=args.threads)
    if args.device:
        window.settings.device = args.device
    if args.long_edge:
        window.settings.long_edge = args.long_edge
    window.panel.apply(window.settings)
    if size:
        window.resize(*size)
    window.show()

    script = _Script(window, app, args) if args.quit_after_frames or args.screenshot else None
    open_source = (lambda: window.open_source(args.source)) if args.source else None
    if args.model:
        window.load_model(args.model, then=open_source)
    else:
        window.load_default_model(then=open_source)
    if script is not None:
        QTimer.singleShot(int(args.timeout * 1000), script.timed_out)
    code = app.exec_()
    if script is not None:
        return script.code
    return code


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
