"""``gopose bench pipeline``: the video pipeline against the network + decoder alone, memory over a long run,
and live-mode latency.

* ``throughput``: frames/s of ``PoseEstimator.estimate`` alone on every frame of the video (decoding the video
  is not timed) versus the exhaustive pipeline (decode -> infer -> tracking, smoothing and all four sinks:
  COCO JSON, JSONL, CSV, annotated H.264 video). The baseline runs before and after the pipeline; the ratio
  uses their mean. With ``--backends a,b,...`` each backend gets its baseline, pipeline and ratio, printed as the
  backend table (``eval/backend_table.py``: network ms, end-to-end and pipeline frames/s, AP, GFLOP/s vs peak).
* ``rss``: the exhaustive pipeline with all sinks over the video looped to ``--loop-frames`` frames; resident
  memory sampled every 250 frames; growth = last sample - the sample after the first 250 frames (warm-up).
* ``live``: the video replayed in real time ``--live-speed`` times faster than its frame rate (a camera faster
  than the network), live policy: end-to-end latency median / p95 and the share of frames dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

from app.sources import Frame, FrameSource, open_source
from core.errors import InputError

HELP = "video pipeline: all-sinks throughput vs network+decoder alone, RSS over a long run, live latency"
MODES = ("throughput", "live", "rss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least, fraction, positive
    from eval.shared_data import shared_path

    parser.add_argument("--video", default=str(shared_path("videos/pedestrians_480x360.mp4")))
    parser.add_argument("--model", default=None,
                        help="checkpoint file or installed model (default: a randomly initialised realtime net)")
    parser.add_argument("--arch", default=None, help="architecture of an authors' checkpoint")
    parser.add_argument("--long-edge", type=at_least(32), default=None,
                        help="network long edge (default: the model's)")
    parser.add_argument("--threshold", type=fraction, default=None,
                        help="decoder threshold, in (0, 1] (a random net needs ~1e-4 to produce people)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=at_least(1), default=None)
    parser.add_argument("--frames", type=at_least(1), default=None,
                        help="limit frames for throughput/live (default: all)")
    parser.add_argument("--mode", default="throughput,live,rss", help="comma list of throughput, rss, live")
    parser.add_argument("--loop-frames", type=at_least(1), default=2000,
                        help="frames of the looped RSS run (10000 in CI)")
    parser.add_argument("--rss-every", type=int, default=250,
                        help="RSS sample interval in frames (the first sample is the warm-up level)")
    parser.add_argument("--live-speed", type=positive, default=3.0, help="replay speed-up of the live run")
    parser.add_argument("--live-frames", type=at_least(1), default=300, help="source frames of the live run")
    parser.add_argument("--batch-size", type=at_least(1), default=1)
    parser.add_argument("--backend", default="auto", choices=_backends(),
                        help="the backend of the live and rss runs (default auto); throughput runs every --backends")
    from eval.backend_table import add_backend_arguments
    add_backend_arguments(parser, "the --backend")


def _backends() -> tuple[str, ...]:
    from models.backends import CHOICES

    return CHOICES


def _estimator(args, backend: str | None = None):
    import torch

    from app.engine import EngineConfig, PoseEstimator, load_estimator
    from core.contract import PoseContract
    from core.keypoints import COCO
    from models.config import ModelConfig
    from models.factory import build_model

    cfg = EngineConfig(device=args.device, threads=args.threads, long_edge=args.long_edge, threshold=args.threshold,
                       backend=backend or args.backend, cache_dir=args.cache, calibration=tuple(args.calibration))
    if args.model:
        return load_estimator(args.model, cfg, arch=args.arch), args.model
    torch.manual_seed(0)
    model = build_model(ModelConfig("realtime", PoseContract(COCO), {}))
    return PoseEstimator(model, cfg), "realtime (random weights)"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class LoopedSource(FrameSource):
    """A video played again and again until ``n_frames`` frames, with continuing indices and timestamps."""

    def __init__(self, path: str, n_frames: int) -> None:
        super().__init__()
        self.path, self.n_frames = path, int(n_frames)
        with open_source(path) as first:
            self.name, self.fps, self.size = first.name, first.fps, first.size
        self.frame_count = self.n_frames

    def _frames(self) -> Iterator[Frame]:
        n, offset = 0, 0.0
        while n < self.n_frames:
            with open_source(self.path) as src:
                last = 0.0
                for f in src:
                    if n >= self.n_frames or self.closed:
                        return
                    last = f.timestamp
                    yield Frame(f.image, n, offset + f.timestamp)
                    n += 1
            offset += last + 1.0 / self.fps


def _baseline(est, video: str, limit: int | None, network_ms: list | None = None) -> tuple[float, int]:
    """Frames/s of ``est.estimate`` alone, called from a worker thread as the pipeline's infer stage does (the
    network's own ms per frame are appended to ``network_ms``)."""
    import threading

    times: list[float] = []

    def work() -> None:
        with open_source(video) as src:
            for f in src:
                if limit is not None and len(times) >= limit:
                    break
                t0 = time.perf_counter()
                res = est.estimate(f.image)
                times.append(time.perf_counter() - t0)
                if network_ms is not None:
                    network_ms.append(res.timings["network"])

    t = threading.Thread(target=work, name="gopose-bench-baseline")
    t.start()
    t.join()
    return len(times) / sum(times), len(times)


def _pipeline_run(est, source, out_dir: Path, batch: int, on_result=None, limit=None):
    from app.exports import output_stem
    from app.pipeline import Pipeline
    from app.sinks import make_sinks, output_paths
    from app.smoothing import PoseSmoother
    from app.tracking import Tracker

    paths = output_paths(output_stem(source.name), out_dir, ["coco", "jsonl", "csv", "video"])
    p = Pipeline(source, est, make_sinks(paths), tracker=Tracker(est.contract.spec),
                 smoother=PoseSmoother(default_fps=source.fps), batch_size=batch, on_result=on_result,
                 max_frames=limit)
    stats = p.run()
    return stats, {k: v.stat().st_size for k, v in paths.items()}


def _throughput(args, est, out: Path, rows: list, result: dict) -> list[str]:
    """Network + decoder alone (before and after) and the all-sinks pipeline, for each of ``--backends``; the
    backend table's lines (with pipeline frames/s and the ratio as extra columns)."""
    import torch

    from eval import backend_table as bt
    from eval.cpu_peak import cpu_peak
    from models.backends import BACKENDS, parse_list
    from models.profile import count_macs

    names = [est.backend] if args.backends == "the --backend" else parse_list(args.backends)
    per_backend, table_rows, extra = [], [], {"pipeline f/s": [], "ratio": []}
    side = est.transform_for(est.long_edge, est.long_edge).dst_size[0]
    with torch.device("meta"):
        from models.factory import build_model

        gflops = 2.0 * count_macs(build_model(est.model.config), side, side) / 1e9
    peak = cpu_peak(args.threads or torch.get_num_threads()) if est.device.type == "cpu" else None
    for name in names:
        e = est if name == est.backend else _estimator(args, name)[0]
        if e is not est:
            with open_source(args.video) as src:
                e.estimate(next(iter(src)).image)
        row = bt.Row(e.backend, BACKENDS[e.backend].precision if e.backend in BACKENDS else "fp32", side, e._runner)
        b1, n = _baseline(e, args.video, args.frames, row.ms)
        with open_source(args.video) as src:
            stats, sizes = _pipeline_run(e, src, out, args.batch_size, limit=args.frames)
        b2, _ = _baseline(e, args.video, args.frames, row.ms)
        base = (b1 + b2) / 2
        row.e2e_ms = [1000.0 / base] * n  # frames/s of the two baseline passes
        table_rows.append(row)
        extra["pipeline f/s"].append(f"{stats.fps:.1f}")
        extra["ratio"].append(f"{stats.fps / base:.3f}")
        per_backend.append({"backend": e.backend, "baseline_fps": round(base, 3), "pipeline_fps": round(stats.fps, 3),
                            "ratio": round(stats.fps / base, 4), "frames": stats.frames, "output_bytes": sizes,
                            "before_fps": round(b1, 3), "after_fps": round(b2, 3),
                            "busy_share": stats.busy_share()})
    if args.ap if args.ap is not None else bool(args.model):
        bt.measure_ap(est.model, table_rows, args.cache, args.calibration, args.ap_limit)
    dicts = [r.to_dict(gflops, peak) for r in table_rows]
    for d, extra_d in zip(dicts, per_backend):
        extra_d.update({k: d[k] for k in ("precision", "input", "ms_median", "ap", "gflops_per_s", "peak_share")})
    head = per_backend[0]
    rows += [("network+decoder alone", f"{head['baseline_fps']:.2f} frames/s ({head['before_fps']:.2f} before, "
              f"{head['after_fps']:.2f} after, {head['frames']} frames)"),
             ("pipeline, all 4 sinks", f"{head['pipeline_fps']:.2f} frames/s ({head['frames']} frames)"),
             ("ratio (target >= 0.9)", f"{head['ratio']:.3f}"),
             ("pipeline threads busy (share of the run)",
              ", ".join(f"{k} {100 * v:.0f} %" for k, v in head["busy_share"].items()))]
    result.update({k: head[k] for k in ("frames", "baseline_fps", "pipeline_fps", "ratio", "output_bytes")})
    result["backends"] = per_backend
    if len(per_backend) > 1:
        result["pipeline_fps_vs_first"] = {b["backend"]: round(b["pipeline_fps"] / head["pipeline_fps"], 3)
                                           for b in per_backend}
    return bt.format_table(dicts, peak, extra)


def run(args: argparse.Namespace) -> int:
    from app.pipeline import Pipeline
    from app.sources import PacedSource

    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise InputError(f"--mode {args.mode!r}: choose one or more of {', '.join(MODES)}")
    if args.rss_every < 1:
        raise InputError(f"--rss-every must be at least 1 frame, got {args.rss_every}")
    est, model_name = _estimator(args)
    with open_source(args.video) as src:  # warm-up (first call allocates)
        est.estimate(next(iter(src)).image)
    result: dict = {"bench": "pipeline", "video": Path(args.video).name, "model": model_name,
                    "long_edge": est.long_edge, "device": str(est.device), "backend": est.backend}
    rows = []
    with tempfile.TemporaryDirectory(prefix="gopose-bench-") as tmp:
        out = Path(tmp)
        if "throughput" in modes:
            table = _throughput(args, est, out, rows, result)
        if "live" in modes:
            src = PacedSource(open_source(args.video), speed=args.live_speed)
            p = Pipeline(src, est, policy="live", max_frames=args.live_frames)
            stats = p.run()
            src.close()
            total = stats.frames + stats.dropped
            rows += [("live: source fps", f"{src.fps:.1f}"),
                     ("live: processed / dropped", f"{stats.frames} / {stats.dropped}"),
                     ("live: latency median / p95", f"{stats.latency_median_ms:.1f} / {stats.latency_p95_ms:.1f} ms")]
            result.update({"live_source_fps": round(src.fps, 2), "live_processed": stats.frames,
                           "live_dropped": stats.dropped, "live_drop_share": round(stats.dropped / max(total, 1), 3),
                           "live_latency_median_ms": round(stats.latency_median_ms, 2),
                           "live_latency_p95_ms": round(stats.latency_p95_ms, 2)})
        if "rss" in modes:
            samples: list[tuple[int, float]] = []

            def sample(frame, _res) -> None:
                if (frame.index + 1) % args.rss_every == 0:
                    samples.append((frame.index + 1, _rss_mb()))

            source = LoopedSource(args.video, args.loop_frames)
            stats, _ = _pipeline_run(est, source, out, args.batch_size, on_result=sample)
            source.close()
            warm = samples[0][1] if samples else _rss_mb()
            growth = (samples[-1][1] - warm) if samples else 0.0
            rows += [("rss: frames looped", f"{stats.frames}"),
                     ("rss: after warm-up / end", f"{warm:.1f} / {samples[-1][1] if samples else warm:.1f} MB"),
                     ("rss: growth (target < 50 MB)", f"{growth:.1f} MB")]
            result.update({"rss_frames": stats.frames, "rss_warm_mb": round(warm, 1), "rss_growth_mb": round(growth, 1),
                           "rss_samples": [[n, round(m, 1)] for n, m in samples[:: max(1, len(samples) // 20)]]})
    width = max(len(r[0]) for r in rows) if rows else 0
    print(f"pipeline benchmark: {result['video']}, {model_name}, long edge {result['long_edge']}, {result['device']}, "
          f"backend {est.backend}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if "throughput" in modes:
        for line in table:
            print(line)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # pragma: no cover - ``gopose bench pipeline`` (bad input: one line, exit 2)
    import sys

    from app.cli import main

    raise SystemExit(main(["bench", "pipeline", *sys.argv[1:]]))
