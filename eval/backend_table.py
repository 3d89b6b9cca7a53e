"""The backend comparison both ``gopose bench model`` and ``gopose bench pipeline`` print: one row per backend
(and precision) with input size, network ms per frame (median), frames/s end to end, AP on ``coco/val2017_subset``
and achieved GFLOP/s against this CPU's peak (``eval/cpu_peak.py``).

All rows are timed in one run, interleaved (a, b, c, a, b, c, ...), so their ratios hold on a busy machine too.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

LOG = logging.getLogger(__name__)


def add_backend_arguments(parser: argparse.ArgumentParser, default_backends: str) -> None:
    """Options shared by the two benchmarks (``--backends``, AP, INT8 cache and calibration)."""
    parser.add_argument("--backends", default=default_backends,
                        help=f"comma list of torch, onnx, openvino, onnx-int8, openvino-int8, or 'all' (every "
                             f"installed one); default {default_backends}")
    parser.add_argument("--ap", action=argparse.BooleanOptionalAction, default=None,
                        help="AP on coco/val2017_subset for each row, COCO models only "
                             "(default: on with --model, off for random weights)")
    from app.commands.options import at_least

    parser.add_argument("--ap-limit", type=at_least(1), default=None, metavar="N",
                        help="AP on the first N images only")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="backend cache (INT8 models); default: the user's model folder's .cache")
    parser.add_argument("--calibration", action="append", default=[], metavar="DIR",
                        help="INT8 calibration image folder (default: shared LSPET train + COCO train2017_mini)")


@dataclass
class Row:
    """One backend configuration and what was measured for it."""

    backend: str
    precision: str
    size: int
    network: Callable
    ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    ap: float | None = None

    @property
    def ms_median(self) -> float:
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def fps_e2e(self) -> float | None:
        return 1000.0 * len(self.e2e_ms) / sum(self.e2e_ms) if self.e2e_ms else None

    def to_dict(self, gflops: float, peak, batch: int = 1) -> dict:
        """The row's figures; ``gflops`` is the work of one timed call, which runs ``batch`` images; ``peak`` (the
        CPU's) is None on a GPU, where no share of the CPU's peak is computed."""
        q = statistics.quantiles(self.ms, n=10, method="inclusive") if len(self.ms) >= 2 else [self.ms_median] * 9
        rate = gflops / (self.ms_median / 1000.0)
        return {"backend": self.backend, "precision": self.precision, "input": self.size,
                "ms_median": round(self.ms_median, 3), "ms_p10": round(q[0], 3), "ms_p90": round(q[-1], 3),
                "images_per_s": round(1000.0 * batch / self.ms_median, 2),
                "fps_e2e": None if self.fps_e2e is None else round(self.fps_e2e, 2),
                "ap": None if self.ap is None else round(self.ap, 4), "gflops_per_s": round(rate, 2),
                "peak_share": None if peak is None else round(rate / peak.for_precision(self.precision), 4)}


def make_rows(model, backends: list[str], size: int, *, torch_precisions: list[str], device, threads: int | None,
              cache: str | None, calibration: list[str], channels_last: bool | None = None,
              fuse: bool = True) -> list[Row]:
    """A row per backend (PyTorch: one per precision) running ``model`` at ``size``."""
    from models.backends import BACKENDS, create_runner, require
    from models.precision import InferenceModel

    rows = []
    for name in backends:
        spec = require(name)
        if spec.runtime == "torch":
            rows += [Row("torch", p, size, InferenceModel(model, device, p, channels_last=channels_last, fuse=fuse))
                     for p in torch_precisions]
            continue
        cache_dir = cache or tempfile.mkdtemp(prefix="gopose-bench-cache-")
        net = InferenceModel(model, "cpu", "fp32").model

        def images(folders=calibration):
            from eval.calibration import default_images

            return default_images(folders)

        rows.append(Row(name, BACKENDS[name].precision, size,
                        create_runner(net, name, size=size, threads=threads, cache_dir=cache_dir, calibration=images)))
    return rows


def time_networks(rows: list[Row], x, runs: int, warmup: int, sync=lambda: None) -> None:
    """Each row's network on ``x``, ``runs`` times, interleaved after ``warmup`` runs each, on a worker thread (as
    the pipeline's infer stage runs it: on a busy machine the main thread measured 5-20x slower)."""
    import threading

    import torch

    def work() -> None:
        with torch.inference_mode():
            for row in rows:
                for _ in range(warmup):
                    row.network(x)
            sync()
            for _ in range(runs):
                for row in rows:
                    t0 = time.perf_counter()
                    row.network(x)
                    sync()
                    row.ms.append((time.perf_counter() - t0) * 1000.0)

    t = threading.Thread(target=work, name="gopose-bench-network")
    t.start()
    t.join()


def predictor_for(model, row: Row):
    from models.predictor import Predictor

    return Predictor(row.network, model.codec, normalize=model.normalize,
                     input_multiple=int(getattr(model, "input_multiple", 32)), long_edge=row.size)


def _frames(video: str, n: int) -> list:
    """The first ``n`` frames of ``video`` (BGR); an ``InputError`` naming it when it cannot be read."""
    import av  # PyAV, a core dependency

    from core.errors import InputError

    out = []
    try:
        with av.open(video) as container:
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="bgr24"))
                if len(out) >= n:
                    break
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise InputError(f"cannot read video {video}: {exc}") from None
    return out


def time_e2e(model, rows: list[Row], video: str, frames: int) -> None:
    """Frames/s of letterbox + network + decoder per row on the first ``frames`` frames of ``video`` (interleaved
    frame by frame, on a worker thread as the pipeline's infer stage runs it)."""
    import threading

    images = _frames(video, frames)
    predictors = [predictor_for(model, row) for row in rows]

    def work() -> None:
        for p in predictors:
            p.predict(images[:1])
        for image in images:
            for p, row in zip(predictors, rows):
                t0 = time.perf_counter()
                p.predict([image])
                row.e2e_ms.append((time.perf_counter() - t0) * 1000.0)

    t = threading.Thread(target=work, name="gopose-bench-e2e")
    t.start()
    t.join()


def measure_ap(model, rows: list[Row], cache: str | None, calibration: list[str], limit: int | None) -> None:
    """AP on ``coco/val2017_subset`` for each fp32/int8 row (the ``gopose eval`` path with that backend)."""
    from eval.runner import EvalOptions, run_evaluation
    from eval.shared_data import shared_path

    spec = model.contract.spec.name
    if spec != "coco":
        LOG.warning("the model predicts %s keypoints: AP on coco/val2017_subset not measured", spec)
        return
    subset = shared_path("coco/val2017_subset")
    if not (subset / "annotations.json").is_file():
        LOG.warning("no %s: AP not measured", subset)
        return
    for row in rows:
        if row.precision not in ("fp32", "int8"):
            continue
        with tempfile.TemporaryDirectory(prefix="gopose-bench-ap-") as tmp:
            opts = EvalOptions(annotations=subset / "annotations.json", images=subset / "images", out=Path(tmp),
                               dataset="coco", long_edge=row.size, backend=row.backend, device="cpu",
                               cache_dir=Path(cache) if cache else Path(tmp) / "cache", workers=1, limit=limit,
                               calibration=tuple(calibration))
            summary = run_evaluation(opts, model=model).summary
        row.ap = (summary.get("metrics") or {}).get("AP")


def format_table(rows: list[dict], peak, extra: dict[str, list[str]] | None = None, batch: int = 1) -> list[str]:
    """The printed table (one line per row, ``extra`` columns appended) and a footnote on the peak (none when
    ``peak`` is None: a GPU). Times are per call: one frame, or ``batch`` of them."""
    head = rows[0]["ms_median"] if rows else 1.0
    extra = extra or {}
    per_call = "ms/frame" if batch == 1 else f"ms/{batch} fr"
    lines = [f"{'backend':<15}{'precision':<10}{'input':>6}{per_call:>10}{'p10':>8}{'p90':>8}{'speed-up':>9}"
             f"{'frames/s e2e':>13}{'AP':>8}{'GFLOP/s':>9}{'% peak':>8}" + "".join(f"{k:>{len(k) + 2}}" for k in extra)]
    for i, r in enumerate(rows):
        fps = "-" if r["fps_e2e"] is None else f"{r['fps_e2e']:.1f}"
        ap = "-" if r["ap"] is None else f"{r['ap']:.3f}"
        lines.append(f"{r['backend']:<15}{r['precision']:<10}{r['input']:>6}{r['ms_median']:>10.2f}{r['ms_p10']:>8.2f}"
                     f"{r['ms_p90']:>8.2f}{head / r['ms_median']:>8.2f}x{fps:>13}{ap:>8}{r['gflops_per_s']:>9.1f}"
                     + ("       -" if r["peak_share"] is None else f"{100 * r['peak_share']:>7.2f}%")
                     + "".join(f"{v[i]:>{len(k) + 2}}" for k, v in extra.items()))
    if peak is None:
        lines.append("GFLOP/s = 2 x conv MACs / median ms (a GPU: no share of a peak is computed)")
    else:
        lines.append(f"GFLOP/s = 2 x conv MACs / median ms; {peak.describe()}; int8 rows against the int8 peak")
    return lines
