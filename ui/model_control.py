"""The window's model: the list (the built-in model and the installed ones), loading in a worker, the default at
start (the one ``gopose annotate`` uses), which model is in use and why, the no-model banner, the input size and
decoder thresholds (each model's own unless the user set them: ``ViewerSettings.overrides``), and adding a
checkpoint to the user's models."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtWidgets import QFileDialog, QWidget

from core.errors import InputError
from ui import backend
from ui.controls import ModelPanel
from ui.dialogs import AddModelDialog
from ui.feedback import TaskHost
from ui.model_banner import ModelBanner
from ui.settings import DECODER_FIELDS, MODEL_TUNED, ViewerSettings
from ui.workers import Task

CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
ENGINE_FIELDS = ("device", "precision", "backend", "flip", "long_edge")  # the settings an estimator is built with


class ModelController(QObject):
    """Owns the estimator in use (``estimator``, ``name``, and ``reason``: why it is used). Only the latest load
    request counts; the current model keeps running until its replacement is ready, then ``changed(new, old)`` is
    emitted. ``builtin``: where the built-in model is looked for (default: the package's; tests pass their own)."""

    changed = pyqtSignal(object, object)  # (new estimator, the one it replaces or None)
    ready = pyqtSignal(str)               # the model now in use
    described = pyqtSignal(str, str)      # (text, tooltip) of ``in_use()`` whenever it changes

    def __init__(self, window: QWidget, panel: ModelPanel, banner: ModelBanner, settings: ViewerSettings,
                 tasks: TaskHost, report: Callable[[str, str], Any], message: Callable[[str, int], None],
                 threads: int | None = None, builtin: str | Path | None = None) -> None:
        super().__init__(window)
        self._window, self.panel, self.banner, self.settings = window, panel, banner, settings
        self._tasks, self._report, self._message, self.threads = tasks, report, message, threads
        self.builtin = builtin
        self.estimator: Any = None
        self.name = ""
        self.reason = ""
        self.path: Path | None = None
        self.note = ""  # why no model was loaded at start, when there is a reason to tell
        self._built_with: ViewerSettings | None = None  # the settings the estimator in use was built with
        self._request = 0
        self._task: Task | None = None
        self._after: Callable[[], None] | None = None
        self.file_dialog: QFileDialog | None = None
        self.add_dialog: AddModelDialog | None = None
        banner.open_requested.connect(self.open_checkpoint_dialog)
        banner.add_requested.connect(self.add_model_dialog)
        panel.model_chosen.connect(lambda spec: self.load(spec, reason="chosen in the model panel"))
        panel.engine_changed.connect(self.reload)
        panel.long_edge_chosen.connect(self.choose_long_edge)
        panel.decoder_changed.connect(self.apply_decoder)
        panel.defaults_requested.connect(self.use_model_defaults)

    @property
    def loading(self) -> bool:
        return self._task is not None and self._task.running

    # -- the list and the banner ---------------------------------------------------------------------------
    def refresh_list(self) -> None:
        models = backend.installed_models(self.builtin)
        current = self.name or self.settings.model
        if current and current not in [v for _, v in models]:
            models.append((Path(current).name, current))
        self.panel.set_models(models, current)

    def update_banner(self) -> None:
        installed = bool(backend.installed_models(self.builtin))
        self.banner.show_state(loaded=self.estimator is not None, installed=installed, loading=self.loading)

    # -- choosing a checkpoint -----------------------------------------------------------------------------
    def open_checkpoint_dialog(self) -> QFileDialog:
        """A file dialog (non-blocking); the chosen checkpoint is loaded for this session."""
        dialog = QFileDialog(self._window, "Open checkpoint", self.settings.last_dir, CHECKPOINT_FILTER)
        dialog.setFileMode(QFileDialog.ExistingFile)
        dialog.setAttribute(Qt.WA_DeleteOnClose, True)
        dialog.fileSelected.connect(self._on_checkpoint_chosen)
        self.file_dialog = dialog
        dialog.open()
        return dialog

    def _on_checkpoint_chosen(self, path: str) -> None:
        self.file_dialog = None
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.load(path, reason="opened from a file")

    def add_model_dialog(self) -> AddModelDialog:
        """The "add a model" dialog (non-blocking); on Add the checkpoint is installed, then loaded."""
        dialog = AddModelDialog(self.settings.last_dir, self._window)
        dialog.setAttribute(Qt.WA_DeleteOnClose, True)
        dialog.accepted.connect(lambda d=dialog: self.install(*d.values()))
        self.add_dialog = dialog
        dialog.open()
        return dialog

    def install(self, path: str, name: str = "", arch: str = "") -> Task:
        """Copy a checkpoint into the user's models in a worker (validated by loading it), then use it."""
        self.add_dialog = None
        self.settings.last_dir = str(Path(path).parent)
        self._message(f"Adding {Path(path).name} to your models…", 0)
        return self._tasks.start(lambda _r: backend.install_model(path, name, arch), "add-model", self._on_installed,
                                 lambda msg: self._report(msg, "Cannot add the model"))

    def _on_installed(self, name: str) -> None:
        self._message(f"Added model {name}", 5000)
        self.load(name, reason="just added to your models")
        self.refresh_list()

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self, spec: str, then: Callable[[], None] | None = None, reason: str = "chosen") -> None:
        """Load an installed model name, ``default`` (the built-in model) or a checkpoint file in a worker;
        ``reason`` says why (shown with the model's name). ``then`` runs after the load succeeded or failed (e.g.
        open the start-up source); a load finishing after a newer request is discarded."""
        if not spec:
            self.update_banner()
            return
        settings = dataclasses.replace(self.panel.collect(self.settings))
        self._request += 1
        request = self._request
        self._after = then
        self.panel.info.setText(f"Loading {Path(spec).name}…")
        threads, builtin = self.threads, self.builtin
        self._task = self._tasks.start(
            lambda _r: backend.load_model(spec, settings, threads, builtin), "load-model",
            lambda loaded, s=spec, r=request, why=reason, used=settings: self._on_loaded(s, *loaded, r, why, used),
            lambda msg, r=request: self._on_failed(msg, r))
        self.update_banner()

    def load_default(self, then: Callable[[], None] | None = None) -> None:
        """Load the model ``gopose annotate`` uses without ``--model`` (the user's default, else the built-in model,
        else the only installed one); when that choice is ambiguous or names a missing model, the model used last
        time if it still exists; else say why no model is loaded and only run ``then``."""
        why = ""
        try:
            choice = backend.default_model(self.builtin)
        except InputError as exc:
            choice, why = None, str(exc)
        if choice is not None:
            self.load(choice.name, then, reason=choice.reason)
            return
        remembered = self.settings.model
        if remembered and (remembered in [v for _, v in backend.installed_models(self.builtin)]
                           or Path(remembered).is_file()):
            self.load(remembered, then, reason="the model used last time")
            return
        self.note = why
        if why:
            self._message(why, 0)
        self.described.emit(*self.in_use())
        self.update_banner()
        if then is not None:
            then()

    def reload(self) -> None:
        """Rebuild the estimator after an engine option changed (device, precision, input size, flip)."""
        self.panel.collect(self.settings)
        if self.name:
            self.load(self.name, reason=self.reason)

    def in_use(self) -> tuple[str, str]:
        """``(text, tooltip)`` saying which model is in use and why, e.g. ``model: default (the built-in model)``
        and the same with the checkpoint's path."""
        if self.estimator is None:
            if self.note:
                return "model: none (pick one in the Model panel)", self.note
            return "model: none", "No model is loaded: the video plays without poses"
        name = Path(self.name).name
        return f"model: {name} ({self.reason})", f"{name} ({self.reason}): {self.path}"

    def _on_loaded(self, spec: str, estimator: Any, choice: Any, request: int, reason: str,
                   used: ViewerSettings) -> None:
        if request != self._request:  # a newer load was requested meanwhile
            self.close_later(estimator, None)
            return
        old, self.estimator, self._built_with = self.estimator, estimator, used
        self.name = self.settings.model = spec
        builtin = backend.builtin_model_file(self.builtin)
        is_builtin = builtin is not None and Path(choice.path).resolve() == builtin.resolve()
        self.reason = reason if not is_builtin or "built-in" in reason else f"built-in, {reason}"
        self.path = Path(choice.path)
        self._show_tuning(estimator)
        self._show_info()
        self.refresh_list()
        self.update_banner()
        self.changed.emit(estimator, old)
        self.described.emit(*self.in_use())
        self.ready.emit(spec)
        self._run_after()
        if estimator.long_edge != self._wanted_long_edge(estimator):
            self.reload()  # the input size asked for changed while this model loaded (e.g. "Model defaults")

    def _on_failed(self, message: str, request: int) -> None:
        if request != self._request:
            return
        self._task = None
        self._back_to_what_runs()
        self.update_banner()
        self._report(message, "Cannot load the model")
        self._run_after()

    def _show_info(self) -> None:
        """The panel's line on the model in use ("" without one)."""
        estimator = self.estimator
        if estimator is None:
            self.panel.info.setText("")
            return
        device = getattr(estimator, "device", "")
        self.panel.info.setText(f"{Path(self.name).name}\n{estimator.contract.spec.name}, "
                                f"{estimator.contract.n_limbs} limbs {('on ' + str(device)) if device else ''}")

    def _back_to_what_runs(self) -> None:
        """After a failed load the model in use keeps running: the settings and the panel go back to it and to the
        engine options it was built with (a device this machine lacks is neither shown nor saved as in use)."""
        if self.estimator is not None and self._built_with is not None:
            for name in ENGINE_FIELDS:
                setattr(self.settings, name, getattr(self._built_with, name))
            self.panel.apply(self.settings)
            self._show_tuning(self.estimator)
            self.refresh_list()
        self._show_info()

    def _run_after(self) -> None:
        then, self._after = self._after, None
        if then is not None:
            then()

    # -- the input size and thresholds: the model's own unless the user set them ----------------------------------
    def choose_long_edge(self, long_edge: int) -> None:
        """The user's input size (kept for every model until *Model defaults*): rebuild the estimator at it."""
        self.settings.long_edge = int(long_edge)
        self.reload()

    def apply_decoder(self, fields: dict) -> None:
        """The user's decoder thresholds (kept for every model until *Model defaults*); they apply to the running
        estimator's next frame."""
        self.panel.collect(self.settings)
        for name, field in DECODER_FIELDS.items():
            if field in fields:
                setattr(self.settings, name, float(fields[field]))
        if self.estimator is not None:
            try:
                self.estimator.update_decoder(**fields)
            except Exception as exc:  # noqa: BLE001 - a rejected value is reported, the model keeps running
                self._report(str(exc), "Decoder settings")

    def use_model_defaults(self) -> None:
        """Forget the user's input size and thresholds: the model runs at those it was tuned for (its thresholds
        at once, its input size after a reload when it differs)."""
        self.settings.clear_overrides()
        estimator = self.estimator
        if estimator is None:
            self.panel.show_tuning(dict.fromkeys(MODEL_TUNED), None, set())
            return
        self._show_tuning(estimator)
        if estimator.long_edge != self._wanted_long_edge(estimator):
            self.reload()
        self._message("Using the model's own input size and thresholds", 5000)

    def _wanted_long_edge(self, estimator: Any) -> int:
        """The input size ``estimator`` should run at: the user's, else its model's own."""
        chosen = self.settings.long_edge
        return int(chosen) if chosen is not None else backend.model_tuning(estimator)["long_edge"]

    def _show_tuning(self, estimator: Any) -> None:
        """Apply the latest threshold choices to ``estimator`` (they may have changed while it loaded) and show
        what it runs at in the panel."""
        estimator.update_decoder(**backend.decoder_fields(self.settings, estimator))
        self.panel.show_tuning(backend.effective_tuning(estimator), backend.model_tuning(estimator),
                               set(self.settings.overrides()))

    # -- closing ---------------------------------------------------------------------------------------------
    def close_later(self, estimator: Any, runner: Any) -> None:
        """Close a replaced estimator in a worker once ``runner`` (the pipeline that used it) has stopped."""
        if estimator is None or estimator is self.estimator:
            return

        def close(_report):
            if runner is not None:
                runner.join()
            closer = getattr(estimator, "close", None)
            if closer is not None:
                closer()

        self._tasks.start(close, "close-model", lambda _r: None)

    def shutdown(self) -> None:
        """Close the estimator in use (call after the pipeline using it has stopped)."""
        estimator, self.estimator = self.estimator, None
        closer = getattr(estimator, "close", None)
        if closer is not None:
            closer()
