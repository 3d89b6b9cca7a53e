"""The window's only door to ``app/``: model store, estimator construction, exports and camera probing.

Everything here may block (file and device I/O): the window calls it from worker tasks.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from core.errors import InputError
from ui.settings import DECODER_FIELDS, ViewerSettings

LOG = logging.getLogger(__name__)

AUTHORS_ARCH = "hourglass104"  # the architecture of the paper authors' released checkpoints


def installed_models(builtin: str | Path | None = None) -> list[tuple[str, str]]:
    """(label, value) of the built-in model (first, labelled "built-in", when this installation ships one) and of
    each installed model; value is what ``load_model`` accepts. ``builtin``: where the built-in model is looked
    for (default: the package's ``resources/models/default.pt``)."""
    from app import model_store

    found = []
    if builtin_model_file(builtin) is not None:
        found.append((f"{model_store.BUILTIN_NAME} (built-in)", model_store.BUILTIN_NAME))
    try:
        entries = model_store.list_models()
    except Exception as exc:  # noqa: BLE001 - an unreadable store must not stop the window
        LOG.warning("cannot list installed models: %s", exc)
        return found
    return found + [(f"{e.name} ({e.arch})" if e.arch else e.name, e.name) for e in entries]


def builtin_model_file(builtin: str | Path | None = None) -> Path | None:
    """The built-in model's file when it exists (``builtin`` overrides where it is looked for), else None."""
    from app.model_store import builtin_model_path

    path = builtin_model_path() if builtin is None else Path(builtin)
    return path if path.is_file() else None


def default_model(builtin: str | Path | None = None) -> Any:
    """The model ``gopose annotate`` uses when none is named (``app.model_store.choose_model(None)``: the user's
    default, else the built-in model, else the only installed one), as a ``ModelChoice`` with its reason; None when
    there is no model at all; ``InputError`` (its message says what to do) when the choice is ambiguous or the
    default is not installed."""
    from app.model_store import NoModelError, choose_model

    try:
        return choose_model(None, builtin=builtin)
    except NoModelError:
        return None


def model_help_url() -> str:
    """Where the paper authors' checkpoints are linked from."""
    from app.model_store import AUTHORS_URL

    return AUTHORS_URL


def install_model(path: str, name: str | None = None, arch: str | None = None) -> str:
    """Validate a checkpoint and add it to the user's models (as ``gopose models add``); returns its name."""
    from app.model_store import add_model

    return add_model(path, name=name or None, arch=arch or None).name


def engine_config(settings: ViewerSettings, threads: int | None = None) -> Any:
    """The engine options of ``settings``; an unset input size or threshold (None) is the model's own."""
    from app.engine import EngineConfig

    long_edge = None if settings.long_edge is None else int(settings.long_edge)
    return EngineConfig(device=settings.device, precision=settings.precision, threads=threads, long_edge=long_edge,
                        flip=bool(settings.flip), threshold=settings.keypoint_threshold, backend=settings.backend)


def decoder_fields(settings: ViewerSettings, estimator: Any) -> dict[str, float]:
    """The decoder thresholds the window controls for ``estimator``: the user's where set, else the model's tuned
    ones (applied live with ``estimator.update_decoder``)."""
    tuned = model_tuning(estimator)
    chosen = {name: getattr(settings, name) for name in DECODER_FIELDS}
    return {DECODER_FIELDS[name]: float(tuned[name] if value is None else value) for name, value in chosen.items()}


def _tuning(long_edge: int, decoder: Any) -> dict[str, float]:
    """The model-tuned settings (``ui.settings.MODEL_TUNED`` keys) of an input size and a ``DecoderConfig``."""
    return {"long_edge": int(long_edge), "keypoint_threshold": float(decoder.threshold),
            "person_threshold": float(decoder.person_threshold)}


def model_tuning(estimator: Any) -> dict[str, float]:
    """What the loaded model was tuned for (its codec)."""
    return _tuning(estimator.codec.long_edge, estimator.codec.decoder)


def effective_tuning(estimator: Any) -> dict[str, float]:
    """What ``estimator`` runs at now."""
    return _tuning(estimator.long_edge, estimator.decoder_config)


def load_model(spec: str, settings: ViewerSettings, threads: int | None = None,
               builtin: str | Path | None = None) -> tuple[Any, Any]:
    """``(estimator, ModelChoice)`` for an installed model name, ``default`` (the built-in model) or a checkpoint
    path, built with the window's settings (the model's own input size and thresholds where the user set none);
    ``spec`` "" is the default model (see ``default_model``)."""
    from app.engine import load_estimator as _load
    from app.model_store import choose_model

    choice = choose_model(spec or None, builtin=builtin)
    estimator = _load(choice.path, engine_config(settings, threads), arch=choice.arch)
    estimator.update_decoder(**decoder_fields(settings, estimator))
    return estimator, choice


def load_estimator(spec: str, settings: ViewerSettings, threads: int | None = None,
                   builtin: str | Path | None = None) -> Any:
    """The estimator of ``load_model``."""
    return load_model(spec, settings, threads, builtin)[0]


def default_contract() -> Any:
    """The output contract used to record a stream while no model is loaded (COCO keypoints)."""
    from core.contract import PoseContract
    from core.keypoints import COCO

    return PoseContract(COCO)


def export_annotations(input_path: str, out_dir: str, model: str, settings: ViewerSettings, formats: list[str],
                       progress: Callable[[int, int], None], cancel: Any, threads: int | None = None,
                       builtin: str | Path | None = None) -> Any:
    """The same export as ``gopose annotate`` (the engine's exporter), with its own estimator instance."""
    from app.exports import export_video_annotations, unique_stems

    estimator = load_estimator(model, settings, threads, builtin)
    try:  # named and journalled as gopose annotate does: neither replaces the outputs the other wrote for
        # another input of the same name
        return export_video_annotations(input_path, out_dir, estimator, formats=formats, track=True,
                                        smooth=settings.smoothing, progress=progress, cancel=cancel,
                                        stem=unique_stems([input_path], out_dir)[0], manifest=True)
    finally:
        close = getattr(estimator, "close", None)
        if close is not None:
            close()


def open_source(spec: str, width: int | None = None, height: int | None = None) -> Any:
    from app.sources import open_source as _open

    return _open(spec, width=width, height=height)


def probe_cameras(max_index: int = 4) -> list[tuple[int, tuple[int, int]]]:
    """(index, (width, height)) of each camera that opens and delivers a frame."""
    found = []
    for index in range(max_index + 1):
        try:
            src = open_source(f"webcam:{index}")
        except InputError:
            continue
        found.append((index, tuple(src.size)))
        src.close()
    return found
