"""Network backends for inference: PyTorch, ONNX Runtime and OpenVINO, in fp32 or INT8.

Every backend is a callable ``x (N, 3, H, W) float -> {"heatmaps", "offsets", "scales"}`` (float32 torch tensors,
offsets in input pixels), what ``models.predictor.Predictor`` runs. Names (``--backend``):

=================  ==============  =========  =====================================================
name               runtime         precision  needs (pip extras)
=================  ==============  =========  =====================================================
``torch``          PyTorch         fp32*      (always installed) *fp16/bf16 autocast on CUDA
``onnx``           ONNX Runtime    fp32       ``gopose[onnx]``
``openvino``       OpenVINO        fp32       ``gopose[openvino]``
``onnx-int8``      ONNX Runtime    int8       ``gopose[onnx,int8]``
``openvino-int8``  OpenVINO        int8       ``gopose[openvino,int8]``
=================  ==============  =========  =====================================================

The two INT8 backends run one artefact: the network's ONNX graph quantised by NNCF (post-training, QDQ format,
calibrated on images the caller names; see ``models.backends.int8``), built once per network and input size and
cached in a folder the caller passes. ``auto`` (``models.backends.choice``) picks the fastest fp32 backend by a
measurement made once per machine, network and size, cached in a file the caller passes. This package never
chooses a global location itself.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from core.errors import InputError

if TYPE_CHECKING:  # torch is imported when a runner is made, not by listing the names (fast --help)
    import torch


@dataclass(frozen=True)
class Backend:
    """What a backend name stands for: its runtime, precision, Python modules and the extras that install them."""

    name: str
    runtime: str
    precision: str
    modules: tuple[str, ...]
    extras: tuple[str, ...]

    @property
    def int8(self) -> bool:
        return self.precision == "int8"


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "torch", "fp32", (), ()),
    Backend("onnx", "onnxruntime", "fp32", ("onnx", "onnxruntime"), ("onnx",)),
    Backend("openvino", "openvino", "fp32", ("onnx", "openvino"), ("openvino",)),
    Backend("onnx-int8", "onnxruntime", "int8", ("onnx", "onnxruntime", "nncf"), ("onnx", "int8")),
    Backend("openvino-int8", "openvino", "int8", ("onnx", "onnxruntime", "openvino", "nncf"), ("openvino", "int8")),
)}
NAMES: tuple[str, ...] = tuple(BACKENDS)
CHOICES: tuple[str, ...] = ("auto", *NAMES)


class BackendUnavailable(InputError):
    """A backend whose Python packages are not installed (the message names the extra to install)."""


def backend(name: str, also: Sequence[str] = ()) -> Backend:
    """The backend called ``name`` (``InputError`` listing the names, and ``also`` accepted by the caller)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r}; choose from {', '.join((*NAMES, *also))}") from None


def missing_modules(name: str) -> list[str]:
    """The Python modules ``name`` needs that are not installed."""
    return [m for m in backend(name).modules if importlib.util.find_spec(m) is None]


def is_installed(name: str) -> bool:
    return not missing_modules(name)


def installed(names: Sequence[str] = NAMES) -> list[str]:
    """The backends of ``names`` whose packages are installed, in that order."""
    return [n for n in names if is_installed(n)]


def require(name: str) -> Backend:
    """The backend, or one line saying which extra to install (``BackendUnavailable``)."""
    spec = backend(name)
    missing = missing_modules(name)
    if missing:
        raise BackendUnavailable(f"backend {name} needs {', '.join(missing)} (not installed): "
                                 f"pip install 'gopose[{','.join(spec.extras)}]'")
    return spec


def parse_list(text: str) -> list[str]:
    """``"torch,openvino-int8"`` or ``"all"`` (every installed backend) -> checked names."""
    if text.strip() == "all":
        return installed()
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        backend(n, also=("all",))
    if not names:
        raise InputError("no backend named")
    return names


Calibration = Callable[[], Sequence[Path]]
INT8_FOLDER = "int8"  # in a backend cache folder: the INT8 artefacts (models.backends.int8.Int8Store)


def create_runner(model: torch.nn.Module, name: str, *, size: int, threads: int | None = None,
                  cache_dir: str | Path | None = None, calibration: Calibration | None = None,
                  device: torch.device | str = "cpu", precision: str = "auto"):
    """A runner of ``model`` (a ``PoseNet``) on backend ``name`` for canvases of about ``size`` x ``size``.

    ``threads``: intra-op threads of ONNX Runtime / OpenVINO (PyTorch uses the process's setting). INT8 backends
    need ``cache_dir`` (the quantised artefact is kept in its ``int8/`` folder, validated before use and rebuilt
    when stale or damaged; a folder that cannot be written gives one warning and a model built in memory) and
    ``calibration`` (called only when the artefact must be built: the images).
    """
    import torch

    spec = require(name)
    if spec.runtime == "torch":
        from models.precision import InferenceModel

        return InferenceModel(model, device, precision)
    if torch.device(device).type != "cpu":
        raise InputError(f"backend {name} runs on the CPU only (use --device cpu, or --backend torch on {device})")
    from models.backends import runners

    if not spec.int8:
        return runners.runtime_runner(spec.runtime, runners.export_fp32(model, size), model, threads, name)
    if cache_dir is None:
        raise InputError(f"backend {name} needs a folder to keep its INT8 model in")
    from models.backends.int8 import Int8Store

    store = Int8Store(Path(cache_dir) / INT8_FOLDER)
    source = store.ensure(model, size, calibration)  # the cached file, or bytes where the cache is read-only
    try:
        return runners.runtime_runner(spec.runtime, source, model, threads, name)
    except Exception as exc:  # noqa: BLE001 - a file that passed validation but does not load: rebuild once
        store.discard(model, size, f"{spec.runtime} cannot load it ({type(exc).__name__}: {exc})")
        return runners.runtime_runner(spec.runtime, store.ensure(model, size, calibration), model, threads, name)


def select(model: "torch.nn.Module", name: str, *, size: int, threads: int | None = None,
           cache_dir: str | Path | None = None, calibration: Calibration | None = None,
           torch_runner=None, device="cpu", precision: str = "auto") -> tuple[str, object, dict]:
    """``(backend name, runner, timings in ms)`` for ``name`` or ``auto`` (the recorded or measured fastest fp32
    backend, see ``models.backends.choice``; its record lives in ``cache_dir``). ``torch_runner`` is reused as
    the PyTorch candidate."""
    from models.backends.choice import pick

    def make(backend_name: str):
        if backend_name == "torch" and torch_runner is not None:
            return torch_runner
        return create_runner(model, backend_name, size=size, threads=threads, cache_dir=cache_dir,
                             calibration=calibration, device=device, precision=precision)

    if name != "auto":
        return name, make(name), {}
    chosen, runner, record = pick(model, size=size, threads=threads, cache_dir=cache_dir, make=make)
    return chosen, runner, dict(record.get("ms") or {})


__all__ = ["Backend", "BACKENDS", "NAMES", "CHOICES", "BackendUnavailable", "backend", "missing_modules",
           "is_installed", "installed", "require", "parse_list", "create_runner", "select", "INT8_FOLDER"]
