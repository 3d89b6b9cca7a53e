"""Desktop-app benchmark: overlay paint cost at 1280x720 and the window's frame rate with the real-time network.

Run: ``python -m eval.bench_gui [--video FILE] [--checkpoint FILE] [--seconds 15] [--long-edge 512]``
(``QT_QPA_PLATFORM=offscreen`` is set when no display is available). Without ``--checkpoint`` a randomly
initialised real-time network is used (same compute as a trained one). Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HELP = "desktop app: overlay paint cost (1280x720) and GUI frame rate with the real-time network"

# A standing person, keypoints relative to a 1-unit-tall box (COCO order).
_TEMPLATE = np.array([[.50, .08], [.53, .06], [.47, .06], [.57, .08], [.43, .08], [.65, .22], [.35, .22],
                      [.72, .38], [.28, .38], [.75, .52], [.25, .52], [.60, .55], [.40, .55], [.60, .75],
                      [.40, .75], [.60, .95], [.40, .95]], np.float32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least, positive
    from eval.shared_data import shared_path

    parser.add_argument("--video", default=str(shared_path("videos/pedestrians_480x360.mp4")))
    parser.add_argument("--checkpoint", help="checkpoint to run (default: a random real-time network)")
    parser.add_argument("--seconds", type=positive, default=15.0, help="seconds measured per GUI run")
    parser.add_argument("--long-edge", type=at_least(32), default=512)
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=at_least(1), default=300, help="paints per overlay measurement")
    parser.add_argument("--overlay-only", action="store_true", help="skip the window frame-rate runs")


def synthetic_poses(n: int, width: int, height: int, seed: int = 0):
    """``n`` people of plausible size spread over a frame, keypoint scores in [0.3, 1]."""
    from core.poses import Poses

    rng = np.random.default_rng(seed)
    kp = np.zeros((n, 17, 3), np.float32)
    for p in range(n):
        h = rng.uniform(0.2, 0.45) * height
        x0, y0 = rng.uniform(0, width - 0.5 * h), rng.uniform(0, height - h)
        kp[p, :, 0] = x0 + _TEMPLATE[:, 0] * 0.5 * h
        kp[p, :, 1] = y0 + _TEMPLATE[:, 1] * h
        kp[p, :, 2] = rng.uniform(0.3, 1.0, 17)
    return Poses(kp, kp[:, :, 2].mean(1), np.arange(n))


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_overlay(repeats: int) -> dict:
    """Median ms to paint the overlay on a 1280x720 ARGB32 image (the widget back buffer's format)."""
    from PyQt5.QtGui import QImage, QPainter

    from core.keypoints import COCO
    from ui.overlay import OverlayStyle, paint_poses
    from ui.video_view import VideoView

    limbs = np.asarray(COCO.skeleton(), np.int64)
    image = QImage(1280, 720, QImage.Format_ARGB32_Premultiplied)
    out: dict = {}
    for n in (1, 5, 10, 20):
        poses = synthetic_poses(n, 1280, 720, seed=n)
        for label, style in (("skeleton", OverlayStyle()),
                             ("skeleton+boxes+ids", OverlayStyle(show_boxes=True, show_ids=True))):
            if label != "skeleton" and n != 10:
                continue
            painter = QPainter(image)

            def paint():
                paint_poses(painter, poses, limbs, style)

            paint()
            out[f"overlay_{label}_{n}p_ms"] = _median_ms(paint, repeats)
            painter.end()
    # the whole view repaint (frame scaled into a 1280x720 widget + overlay of 10 people)
    view = VideoView()
    view.limbs = limbs
    view.resize(1280, 720)
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    view.set_frame(frame, synthetic_poses(10, 1280, 720))
    target = QImage(1280, 720, QImage.Format_ARGB32_Premultiplied)
    view.render(target)  # runs paintEvent into the image, as the window system would
    out["view_paint_frame+10p_ms"] = _median_ms(lambda: view.render(target), max(30, repeats // 5))
    view.close()
    return out


def _pump(app, seconds: float, until=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.002)


def bench_gui(app, video: str, checkpoint: str, seconds: float, long_edge: int, threads: int | None) -> dict:
    """Play the video in the real window with the network; measure display/inference fps and latency."""
    from PyQt5.QtCore import QSettings

    from app.engine import EngineConfig, PoseEstimator
    from app.sources import open_source
    from ui.main_window import MainWindow
    from ui.settings import SettingsStore

    out: dict = {}
    # the network + decoder alone on the same frames (the ceiling for inference fps)
    est = PoseEstimator.from_checkpoint(checkpoint, EngineConfig(device="cpu", long_edge=long_edge,
                                                                 threads=threads))
    with open_source(video) as src:
        frames = [f.image for _, f in zip(range(40), src)]
    bare: list[float] = []

    def measure() -> None:  # in a worker thread, like the pipeline's inference stage
        for f in frames[:5]:
            est.estimate(f)
        bare.extend(_median_ms(lambda f=f: est.estimate(f), 1) for f in frames[5:])

    worker = threading.Thread(target=measure)
    worker.start()
    worker.join()
    est.close()
    out["estimator_fps"] = 1000.0 / statistics.median(bare)

    tmp = tempfile.mkdtemp(prefix="gopose_bench_gui_")
    store = SettingsStore(QSettings(os.path.join(tmp, "s.ini"), QSettings.IniFormat))
    window = MainWindow(store, threads=threads)
    window.settings.device = "cpu"
    window.settings.long_edge = long_edge
    window.panel.apply(window.settings)
    window.resize(1280, 800)
    window.show()
    window.load_model(checkpoint)
    _pump(app, 120, lambda: window.estimator is not None or window.errors)
    if window.errors:
        raise SystemExit(f"bench_gui: {window.errors[0]}")
    window.open_source(video)
    _pump(app, 60, lambda: window.frames_displayed > 0 or window.errors)
    for speed in (1.0, 4.0):
        window.set_speed(speed)
        window.seek(0.0)
        _pump(app, 2.0)  # warm-up
        latencies: list[float] = []

        def on_frame(_n, lat=latencies):
            if window.latency_ms is not None:
                lat.append(window.latency_ms)

        window.frame_shown.connect(on_frame)
        d0, r0 = window.frames_displayed, window.results_displayed
        t0 = time.monotonic()
        _pump(app, seconds)
        dt = time.monotonic() - t0
        window.frame_shown.disconnect(on_frame)
        key = f"speed{speed:g}x"
        out[f"{key}_source_fps"] = window.playback.fps * speed
        out[f"{key}_display_fps"] = (window.frames_displayed - d0) / dt
        out[f"{key}_inference_fps"] = (window.results_displayed - r0) / dt
        out[f"{key}_latency_median_ms"] = float(np.median(latencies)) if latencies else None
        out[f"{key}_latency_p95_ms"] = float(np.quantile(latencies, 0.95)) if latencies else None
    out["errors"] = list(window.errors)
    window.close()
    return out


def run(args: argparse.Namespace) -> int:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5.QtWidgets import QApplication

    if not Path(args.video).is_file():
        print(f"bench_gui: video not found: {args.video}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    checkpoint = args.checkpoint
    if checkpoint is None and not args.overlay_only:
        import torch

        from core.contract import PoseContract
        from core.keypoints import COCO
        from models.checkpoint import save_checkpoint
        from models.factory import ModelConfig, build_model

        torch.manual_seed(0)
        checkpoint = os.path.join(tempfile.mkdtemp(prefix="gopose_bench_gui_"), "realtime_random.pt")
        save_checkpoint(checkpoint, build_model(ModelConfig("realtime", PoseContract(COCO), {})))

    overlay = bench_overlay(args.repeats)
    gui = {} if args.overlay_only else bench_gui(app, args.video, checkpoint, args.seconds, args.long_edge,
                                                 args.threads)
    print(f"{'measure':<40} {'value':>10}")
    for k, v in {**overlay, **gui}.items():
        if isinstance(v, float):
            print(f"{k:<40} {v:>10.2f}")
    ratio = gui["speed4x_inference_fps"] / gui["estimator_fps"] if gui.get("estimator_fps") else None
    if ratio is not None:
        print(f"{'gui inference fps / estimator fps':<40} {ratio:>10.2f}")
    summary = {"bench": "gui", "platform": os.environ.get("QT_QPA_PLATFORM", "native"),
               "long_edge": args.long_edge, "video": Path(args.video).name,
               **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in {**overlay, **gui}.items()},
               "inference_ratio_vs_estimator": None if ratio is None else round(ratio, 3)}
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.bench_gui ARGS`` is ``gopose bench gui ARGS`` (bad input: one line, exit 2)."""
    from app.cli import main as cli_main

    return cli_main(["bench", "gui", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
