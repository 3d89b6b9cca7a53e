"""ONNX Runtime execution of a network's inference graph on the CPU (optional extra ``gopose[onnx]``).

``OnnxRunner`` exports the (BN-folded) network with ``models.export.export_onnx`` (dynamic batch and size) into
memory and runs it with ONNX Runtime; calling it returns what ``models.precision.InferenceModel`` returns
(float32 torch tensors ``heatmaps``, ``offsets``, ``scales``), so the engine can use either.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


class OnnxRunner:
    """A network exported to ONNX and run by ONNX Runtime's CPU provider."""

    def __init__(self, model: torch.nn.Module, size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        from models.export import export_onnx, output_names

        self.names = output_names(model)
        with tempfile.TemporaryDirectory(prefix="gopose-onnx-") as tmp:
            path = export_onnx(model, Path(tmp) / "net.onnx", size, size, dynamic=True, fuse=False)
            data = path.read_bytes()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        if os.environ.get("GOPOSE_ORT_SPIN", "0") == "0":
            # no busy-waiting between operators: on a few cores, spinning workers starve the decode and sink threads
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.contract = model.contract

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        arrays = self.session.run(None, {"image": x.detach().cpu().float().contiguous().numpy()})
        out = {name: torch.from_numpy(a) for name, a in zip(self.names, arrays)}
        out.setdefault("scales", None)
        return out


def time_runner(runner, x: torch.Tensor, repeats: int = 3) -> float:
    """Median milliseconds of ``runner(x)`` after one warm-up, measured on a worker thread (as the pipeline's
    infer stage runs it)."""
    return compare_runners([runner], x, repeats)[0]


def compare_runners(runners: list, x: torch.Tensor, repeats: int = 5) -> list[float]:
    """Median milliseconds of each runner on ``x``, runs interleaved (a, b, a, b, ...) after a warm-up each,
    so a machine that gets busier or quieter meanwhile affects all of them alike."""
    times: list[list[float]] = [[] for _ in runners]

    def work() -> None:
        with torch.inference_mode():
            for r in runners:
                r(x)
            for _ in range(repeats):
                for i, r in enumerate(runners):
                    t0 = time.perf_counter()
                    r(x)
                    times[i].append((time.perf_counter() - t0) * 1000)

    t = threading.Thread(target=work, name="gopose-backend-timing")
    t.start()
    t.join()
    return [statistics.median(ts) if ts else float("inf") for ts in times]
