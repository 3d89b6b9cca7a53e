"""INT8 post-training quantisation of a network, and the validated cache of the quantised models.

Quantiser: NNCF (``nncf.quantize``, preset PERFORMANCE: symmetric INT8 weights and activations, per-channel weights,
fast bias correction; depthwise convolutions stay fp32, see :func:`depthwise_convs`; 7-bit weights on x86 CPUs
without VNNI, see :func:`overflow_fix`) on the network's fp32 ONNX graph (``runners.export_fp32``, cleaned by ONNX
Runtime's ``quant_pre_process``: constant folding, shape inference). The result is one QDQ ONNX file with dynamic
batch and size that both ONNX Runtime (``onnx-int8``) and OpenVINO (``openvino-int8``) run. Calibration: letterboxed
canvases (the predictor's long-edge transform at the artefact's size, the model's own normalisation) of images the
caller names (never the evaluation sets): :func:`calibration_images` picks an evenly spread, deterministic subset.

Cache (:class:`Int8Store`): ``FOLDER/<arch>-<weights sha256[:16]>-<size>/`` holds ``model.int8.onnx`` and
``meta.json`` (sha256 of the network's weights and config, input size, tool versions, overflow fix, and the
artefact's byte count and sha256). Before use the metadata must match and the file must have its recorded size and
digest; a stale (other weights, size, tool versions or overflow fix), truncated or corrupt artefact is rebuilt,
never used. A cache folder that cannot be written (read-only) does not stop a run: the INT8 model is then built in
memory, with one warning naming the folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from core.cpu import cpu_flags
from core.errors import InputError
from core.io.files import atomic_path, write_json_atomic

LOG = logging.getLogger(__name__)

FORMAT = 3  # 2: depthwise convolutions kept in fp32; 3: records the overflow fix (older artefacts are rebuilt)
ARTEFACT = "model.int8.onnx"
_KEY_FIELDS = ("format", "arch", "model_sha256", "size", "versions", "overflow_fix")  # what an artefact was built for
META = "meta.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_IMAGES = 200  # calibration images (NNCF's default subset is 300; 200 calibrate as well here, faster)


# ------------------------------------------------------------------------------------------------ identity
def model_digest(model: torch.nn.Module) -> str:
    """sha256 of what makes the network's graph: its config (architecture, options, output contract) and weights,
    batch norms folded (as the backends run it), so a model as loaded and its ``InferenceModel`` copy share one."""
    if not getattr(model, "fused_for_inference", False):
        from models.precision import fuse_for_inference

        model = fuse_for_inference(model)
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    h.update(json.dumps(config.to_dict() if config is not None else type(model).__name__, sort_keys=True,
                        default=str).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update((t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy().tobytes())  # C order
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of the tools that make the artefact, GOPose's export of the network included (a new version
    rebuilds it)."""
    out = {}
    for name in ("gopose", "torch", "onnx", "onnxruntime", "nncf"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ calibration
@dataclass(frozen=True)
class CalibrationSource:
    """A folder of images, optionally only those an annotation file lists (with ``split``, only that split)."""

    images: Path
    annotations: Path | None = None
    split: str | None = None

    def files(self) -> list[Path]:
        folder = Path(self.images)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"calibration image folder {folder} is a file, not a folder of images")
        if not folder.is_dir():
            raise InputError(f"calibration image folder {folder} does not exist")
        if self.annotations is None:
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"calibration image folder {folder} holds no images "
                                 f"({', '.join(IMAGE_SUFFIXES)}; sub-folders are not searched)")
            return found
        try:
            records = json.loads(Path(self.annotations).read_text(encoding="utf-8"))["images"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"calibration annotations {self.annotations} are unreadable: {exc}") from None
        return sorted(folder / r["file_name"] for r in records if self.split is None or r.get("split") == self.split)


def _spread(items: Sequence[Path], k: int) -> list[Path]:
    """``k`` items evenly spread over ``items`` (all of them when there are not more)."""
    if k >= len(items):
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, max(k, 0)).round().astype(int))]


def calibration_images(sources: Sequence[CalibrationSource], limit: int = DEFAULT_IMAGES) -> list[Path]:
    """At most ``limit`` images shared evenly between ``sources`` (a small source leaves its share to the others),
    evenly spread within each: the same list on every run."""
    lists = sorted((s.files() for s in sources), key=len)
    out: list[Path] = []
    for i, files in enumerate(lists):
        quota = (limit - len(out)) // (len(lists) - i)
        out += _spread(files, quota)
    return out


def decodable_images(images: Sequence[Path | np.ndarray]) -> list[Path | np.ndarray]:
    """The calibration inputs that decode (decoded frames always do), in order; the others are logged and left
    out. An ``InputError`` naming one when there were some and none decodes."""
    import cv2

    kept, bad = [], []
    for item in images:
        ok = isinstance(item, np.ndarray) or cv2.imread(str(item), cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None
        (kept if ok else bad).append(item)
    if bad and not kept:
        raise InputError(f"none of the {len(bad)} calibration images can be decoded (e.g. {bad[0]})")
    if bad:
        LOG.warning("%d of %d calibration images cannot be decoded and are left out (e.g. %s)",
                    len(bad), len(images), bad[0])
    return kept


def spread_frames(frames: Iterable[np.ndarray], count: int = 64) -> list[np.ndarray]:
    """``count`` frames evenly spread over ``frames`` (decoded BGR images, e.g. of a user's video, for calibrating
    on that footage when no image folder is at hand; the caller decodes them, ``app`` picking the video stream).
    At most ``2 * count`` frames are held at a time: every ``stride``-th frame is kept, and the stride doubles
    whenever the kept ones fill that budget."""
    kept: list[np.ndarray] = []
    stride = 1
    for i, frame in enumerate(frames):
        if i % stride == 0:
            kept.append(frame)
            if len(kept) == 2 * count:
                kept, stride = kept[::2], stride * 2
    if not kept:
        return []
    idx = np.unique(np.linspace(0, len(kept) - 1, min(count, len(kept))).round().astype(int))
    return [kept[i] for i in idx]


class _Canvases:
    """Calibration inputs (image paths or decoded BGR frames), letterboxed on demand (NNCF iterates more than once;
    nothing is kept)."""

    def __init__(self, model: torch.nn.Module, images: Sequence[Path | np.ndarray], size: int) -> None:
        from core.geometry import long_edge_transform

        self.model, self.images, self.size = model, list(images), int(size)
        self.multiple = int(getattr(model, "input_multiple", 32))
        self._transform = long_edge_transform

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        for path in self.images:
            image = path if isinstance(path, np.ndarray) else cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                LOG.warning("calibration image %s cannot be decoded: skipped", path)
                continue
            t = self._transform(image.shape[1], image.shape[0], self.size, self.multiple)
            with torch.no_grad():
                yield self.model.normalize(torch.from_numpy(t.warp(image))[None]).numpy()


def depthwise_convs(graph) -> list[str]:
    """Names of the ONNX graph's depthwise convolutions (``group`` > 1), which :func:`quantize` keeps in fp32.

    Their per-channel weights, with batch norm folded in, have ranges that INT8 does not hold: quantising the
    MobileNet backbone's depthwise layers cost the default model more than half of its AP (0.0043 against 0.0103
    fp32 on ``coco/val2017_subset``); kept in fp32 the INT8 model matches fp32 (0.0108) at about 1.1-1.2x the INT8
    network time (docs/performance.md)."""
    return [node.name for node in graph.graph.node
            if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)]


def overflow_fix(flags: frozenset[str] | None = None) -> str:
    """NNCF's overflow fix for this CPU: ``enable`` (weights in 7 bits) on x86 CPUs without VNNI, else its default.

    Without VNNI, INT8 convolutions multiply-add pairs of u8 x s8 products into 16 bits (``pmaddubsw``), which
    saturates on full-range weights: on an AVX2-only CPU the default model's INT8 AP fell from fp32's 0.0112 to
    0.0092 on both runtimes, and came back to 0.0112 / 0.0113 with the fix (docs/models.md).
    """
    flags = cpu_flags() if flags is None else flags
    x86_without_vnni = "sse2" in flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
    return "enable" if x86_without_vnni else "first_layer_only"


def quantize(model: torch.nn.Module, size: int, images: Sequence[Path | np.ndarray], out: Path) -> Path:
    """Quantise ``model`` to INT8 with NNCF, calibrated on ``images`` at ``size``, into the ONNX file ``out``."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from models.backends.runners import export_fp32

    nncf.set_log_level(logging.ERROR)
    data = _Canvases(model.eval(), images, size)
    with tempfile.TemporaryDirectory(prefix="gopose-int8-") as tmp:
        fp32, clean = Path(tmp) / "fp32.onnx", Path(tmp) / "clean.onnx"
        fp32.write_bytes(export_fp32(model, size))
        quant_pre_process(str(fp32), str(clean), skip_symbolic_shape=True)
        graph = onnx.load(str(clean))
    dataset = nncf.Dataset(data, lambda x: {"image": x})
    # NNCF draws its progress bars on stdout, where commands print their results: they go to stderr meanwhile
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(graph, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(data),
                                  ignored_scope=nncf.IgnoredScope(names=depthwise_convs(graph), validate=False),
                                  advanced_parameters=AdvancedQuantizationParameters(
                                      overflow_fix=OverflowFix(overflow_fix())))
    with atomic_path(out) as tmp_out:
        onnx.save(quantized, str(tmp_out))
    return out


# ------------------------------------------------------------------------------------------------ cache
def quantize_in_memory(model: torch.nn.Module, size: int, images: Sequence[Path | np.ndarray]) -> bytes:
    """:func:`quantize` into a temporary folder: the INT8 model as ONNX bytes (for a cache that cannot be written)."""
    with tempfile.TemporaryDirectory(prefix="gopose-int8-") as tmp:
        return quantize(model, size, images, Path(tmp) / ARTEFACT).read_bytes()


def unwritable(folder: Path) -> str | None:
    """Why files cannot be written in ``folder``, or None when they can. A real probe (a temporary file in the
    folder, or in its nearest existing parent while it is still to be created; nothing is left behind), since
    permission bits do not tell a read-only mount, and root ignores them."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".gopose-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


class Int8Store:
    """INT8 artefacts in ``folder`` (one sub-folder per network and input size), validated before use.

    A folder that cannot be written (a read-only mount, another user's cache) does not stop a run: :meth:`ensure`
    then builds the INT8 model in memory, with one warning naming the folder (it is built again next time)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._discarded: set[Path] = set()  # entries that did not load but could not be removed (read-only)

    def entry(self, model: torch.nn.Module, size: int, digest: str | None = None) -> Path:
        digest = digest or model_digest(model)
        return self.folder / f"{getattr(model, 'arch', 'net')}-{digest[:16]}-{int(size)}"

    @staticmethod
    def _key(model: torch.nn.Module, size: int, digest: str) -> dict:
        return {"format": FORMAT, "arch": getattr(model, "arch", ""), "model_sha256": digest, "size": int(size),
                "versions": tool_versions(), "overflow_fix": overflow_fix()}

    def check(self, model: torch.nn.Module, size: int, digest: str | None = None) -> tuple[Path | None, str]:
        """``(artefact, "")`` when a valid artefact is cached, else ``(None, why not)``."""
        digest = digest or model_digest(model)
        where = self.entry(model, size, digest)
        meta_path, path = where / META, where / ARTEFACT
        if where in self._discarded:
            return None, f"{path} was discarded (it did not load) but its read-only folder keeps it"
        if not meta_path.exists() and not path.exists():
            return None, "not built yet"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            recorded = {k: meta.get(k) for k in _KEY_FIELDS}
            nbytes, sha = int(meta["artefact"]["bytes"]), str(meta["artefact"]["sha256"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return None, f"its metadata {meta_path} is missing or unreadable ({type(exc).__name__})"
        expected = self._key(model, size, digest)
        for field in _KEY_FIELDS:
            if recorded[field] != expected[field]:
                return None, f"it was built for another {field.replace('_', ' ')} ({recorded[field]})"
        if not path.is_file():
            return None, f"{path} is missing"
        if path.stat().st_size != nbytes:
            return None, f"{path} is truncated or altered ({path.stat().st_size} of {nbytes} bytes)"
        if sha256_file(path) != sha:
            return None, f"{path} is corrupt (sha256 differs from the recorded one)"
        return path, ""

    def build(self, model: torch.nn.Module, size: int, images: Sequence[Path | np.ndarray],
              digest: str | None = None) -> Path:
        """Quantise ``model`` calibrated on ``images`` and record it (artefact first, metadata last); an
        ``InputError`` naming the folder when it cannot be written (found before the build starts)."""
        digest = digest or model_digest(model)
        where = self.entry(model, size, digest)
        why = unwritable(where)
        if why is not None:
            raise InputError(f"cannot write the INT8 model folder {where}: {why}")
        try:
            where.mkdir(parents=True, exist_ok=True)
            (where / META).unlink(missing_ok=True)  # an artefact without metadata is never used
        except OSError as exc:
            raise InputError(f"cannot write the INT8 model folder {where}: {exc.strerror or exc}") from None
        t0 = time.perf_counter()
        path = quantize(model, size, images, where / ARTEFACT)
        meta = {**self._key(model, size, digest), "calibration_images": len(images),
                "artefact": {"file": ARTEFACT, "bytes": path.stat().st_size, "sha256": sha256_file(path)},
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "build_seconds": round(time.perf_counter() - t0, 1)}
        write_json_atomic(where / META, meta, indent=2)
        self._discarded.discard(where)
        LOG.info("built the INT8 model %s (%d calibration images, %.0f s)", path, len(images), meta["build_seconds"])
        return path

    def ensure(self, model: torch.nn.Module, size: int,
               calibration: Callable[[], Sequence[Path | np.ndarray]] | None, *,
               in_memory: bool = True) -> Path | bytes:
        """A valid cached artefact, built (or rebuilt, saying why) when there is none. When the folder cannot be
        written, the model built in memory (ONNX bytes, one warning naming the folder), or with ``in_memory=False``
        an ``InputError`` naming it (before any calibration image is read)."""
        digest = model_digest(model)
        path, why = self.check(model, size, digest)
        if path is not None:
            return path
        where = self.entry(model, size, digest)
        blocked = unwritable(where)
        if blocked is not None and not in_memory:
            raise InputError(f"cannot write the INT8 model folder {where}: {blocked}")
        stale = "" if why == "not built yet" else f"the cached one is not used ({why}); "
        if stale and blocked is None:
            LOG.warning("cached INT8 model in %s not used: %s; rebuilding it", where, why)
        images = decodable_images(list(calibration()) if calibration is not None else [])
        if not images:
            raise InputError("building the INT8 model needs calibration images and none were found: build it "
                             "once with `gopose models export MODEL --int8 --calibration DIR` "
                             "(a folder of photos of people)")
        what = f"the INT8 model of {getattr(model, 'arch', 'the network')} at {size} px from {len(images)} " \
               "calibration images"
        if blocked is not None:
            LOG.warning("cannot keep the INT8 model in %s (%s): %sbuilding %s in memory, again on every run until "
                        "that folder is writable or another cache folder is given", where, blocked, stale, what)
            return quantize_in_memory(model, size, images)
        LOG.warning("building %s (once; cached in %s)", what, self.folder)
        return self.build(model, size, images, digest)

    def discard(self, model: torch.nn.Module, size: int, reason: str) -> None:
        """Forget a cached artefact (its metadata first, so a half-removed entry is never used); in a folder that
        cannot be written it is only forgotten by this store."""
        where = self.entry(model, size)
        LOG.warning("cached INT8 model in %s not used: %s; rebuilding it", where, reason)
        try:
            (where / META).unlink(missing_ok=True)
            (where / ARTEFACT).unlink(missing_ok=True)
        except OSError:
            self._discarded.add(where)
