"""ONNX Runtime and OpenVINO execution of a network's exported inference graph on the CPU, and interleaved timing.

A runner returns what ``models.precision.InferenceModel`` returns (float32 torch tensors ``heatmaps``, ``offsets``,
``scales``), so the predictor runs any of them. The graph is the BN-folded ``infer`` graph of
``models.export.export_onnx`` with dynamic batch, height and width, given as bytes (exported into memory) or as a
file (the cached INT8 artefact).
"""
from __future__ import annotations

import logging
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

LOG = logging.getLogger(__name__)

Source = bytes | Path


def export_fp32(model: torch.nn.Module, size: int) -> bytes:
    """The network's fp32 inference graph as ONNX bytes (dynamic batch and size; ``size`` is the example)."""
    from models.export import export_onnx

    m = int(getattr(model, "input_multiple", 32))
    side = max(m, -(-int(size) // m) * m)
    with tempfile.TemporaryDirectory(prefix="gopose-onnx-") as tmp:
        return export_onnx(model, Path(tmp) / "net.onnx", side, side, dynamic=True).read_bytes()


def _outputs(names: list[str], arrays) -> dict[str, torch.Tensor | None]:
    out = {name: torch.from_numpy(np.asarray(a)) for name, a in zip(names, arrays)}
    out.setdefault("scales", None)
    return out


def _input_array(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().float().contiguous().numpy()


class OnnxRunner:
    """A graph run by ONNX Runtime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, source: Source, names: list[str], threads: int | None = None, backend: str = "onnx") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        if os.environ.get("GOPOSE_ORT_SPIN", "0") == "0":
            # no busy-waiting between operators: on a few cores, spinning workers starve the decode and sink threads
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        data = source if isinstance(source, bytes) else str(source)
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.names = names
        self.backend = backend

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return _outputs(self.names, self.session.run(None, {"image": _input_array(x)}))


class OpenVinoRunner:
    """A graph run by OpenVINO on the CPU, compiled for each input shape it meets (the last few are kept).

    The inference precision is pinned to f32 (OpenVINO would otherwise run fp32 layers in bf16 on CPUs with AMX
    or AVX512-BF16): the ``openvino`` backend is the fp32 network, ``openvino-int8`` its INT8 layers plus fp32.
    """

    runtime = "openvino"
    max_shapes = 4

    def __init__(self, source: Source, names: list[str], threads: int | None = None,
                 backend: str = "openvino") -> None:
        import openvino as ov

        self.core = ov.Core()
        if isinstance(source, bytes):
            with tempfile.TemporaryDirectory(prefix="gopose-ov-") as tmp:
                path = Path(tmp) / "net.onnx"
                path.write_bytes(source)
                self.model = self.core.read_model(str(path))
        else:
            self.model = self.core.read_model(str(source))
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.names = names
        self.backend = backend
        self._requests: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()

    def _request(self, shape: tuple[int, ...]):
        req = self._requests.get(shape)
        if req is None:
            with self._lock:
                model = self.model.clone()
                model.reshape({0: list(shape)})
                req = self.core.compile_model(model, "CPU", self.config).create_infer_request()
                if len(self._requests) >= self.max_shapes:
                    self._requests.pop(next(iter(self._requests)))
                self._requests[shape] = req
        return req

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        arr = _input_array(x)
        req = self._request(tuple(arr.shape))
        req.infer([arr])
        return _outputs(self.names, [req.get_output_tensor(i).data.copy() for i in range(len(self.names))])


def runtime_runner(runtime: str, source: Source, model: torch.nn.Module, threads: int | None, backend: str):
    """An ``OnnxRunner`` or ``OpenVinoRunner`` of ``source`` named ``backend`` (``model`` gives the output names)."""
    from models.export import output_names

    kinds = {"onnxruntime": OnnxRunner, "openvino": OpenVinoRunner}
    if runtime not in kinds:
        raise ValueError(f"unknown runtime {runtime!r}")
    return kinds[runtime](source, output_names(model), threads, backend)


def time_runner(runner, x: torch.Tensor, repeats: int = 3) -> float:
    """Median milliseconds of ``runner(x)`` after one warm-up, measured on a worker thread (as the pipeline's
    infer stage runs it)."""
    return compare_runners([runner], x, repeats)[0]


def compare_runners(runners: list, x: torch.Tensor, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Median milliseconds of each runner on ``x``, runs interleaved (a, b, a, b, ...) after ``warmup`` runs each,
    so a machine that gets busier or quieter meanwhile affects all of them alike. A runner that raises (a runtime
    that compiles lazily can fail on its first call) is logged and timed as infinitely slow; the others go on."""
    times: list[list[float]] = [[] for _ in runners]
    failed: set[int] = set()

    def run(i: int) -> float | None:
        """Milliseconds of one call of runner ``i``; None once it failed."""
        if i in failed:
            return None
        t0 = time.perf_counter()
        try:
            runners[i](x)
        except Exception as exc:  # noqa: BLE001 - any failure rules this runner out, not the comparison
            LOG.warning("backend %s failed on a %s input and is not a candidate: %s",
                        getattr(runners[i], "backend", i), tuple(x.shape), exc)
            failed.add(i)
            return None
        return (time.perf_counter() - t0) * 1000

    def work() -> None:
        with torch.inference_mode():
            for i in range(len(runners)):
                for _ in range(warmup):
                    run(i)
            for _ in range(repeats):
                for i in range(len(runners)):
                    ms = run(i)
                    if ms is not None:
                        times[i].append(ms)

    t = threading.Thread(target=work, name="gopose-backend-timing")
    t.start()
    t.join()
    return [float("inf") if i in failed or not ts else statistics.median(ts) for i, ts in enumerate(times)]
