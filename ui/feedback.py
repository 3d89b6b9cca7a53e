"""How background work and errors reach the user: non-modal error dialogs and the window's worker tasks."""
from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any, Callable

from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtWidgets import QMessageBox, QWidget

from ui.workers import Task, describe_error

LOG = logging.getLogger(__name__)


class ErrorDialogs(QObject):
    """Shows each error in a non-modal warning dialog (the window keeps running) and keeps every message.

    ``messages``: every message shown, oldest first; ``open_dialogs``: the dialogs not yet closed.
    """

    shown = pyqtSignal(str)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        self.messages: list[str] = []
        self.open_dialogs: list[QMessageBox] = []

    def show(self, message: str, title: str = "GOPose") -> QMessageBox:
        LOG.warning("%s: %s", title, message)
        self.messages.append(message)
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self._parent)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.finished.connect(lambda _r, b=box: self.open_dialogs.remove(b) if b in self.open_dialogs else None)
        self.open_dialogs.append(box)
        box.open()
        self.shown.emit(message)
        return box


class UnexpectedErrors(QObject):
    """While installed (``sys.excepthook``), an exception that no code caught in a Qt callback (a slot, a timer,
    an event handler; a bug) is logged with its traceback and shown with ``show(message, title)``, and the window
    keeps running; without it PyQt5 aborts the whole process. ``count``: how many were caught (``gopose gui``
    exits 1 when there was any). Only the command installs it: in tests pytest-qt keeps failing on them."""

    caught = pyqtSignal(str)  # queued to this object's (the GUI) thread when raised in another one

    def __init__(self, show: Callable[[str, str], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.count = 0
        self._previous: Callable | None = None
        self.caught.connect(lambda message: show(message, "Unexpected error"))

    def install(self) -> "UnexpectedErrors":
        self._previous, sys.excepthook = sys.excepthook, self._hook
        return self

    def uninstall(self) -> None:
        if self._previous is not None and sys.excepthook == self._hook:
            sys.excepthook = self._previous
        self._previous = None

    def _hook(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        self.count += 1
        LOG.error("unexpected error (the window keeps running)", exc_info=(kind, exc, tb))
        try:
            self.caught.emit(f"Unexpected error: {describe_error(exc)}\n\nThe details are in the log.")
        except BaseException:  # noqa: BLE001 - showing it failed too: the log has both, the window runs on
            LOG.exception("cannot show the unexpected error")


def release(result: Any) -> None:
    """Close what a task opened (a source, an estimator, or those in a tuple) when nobody will use it."""
    for item in result if isinstance(result, tuple) else (result,):
        close = getattr(item, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing at shutdown must not stop the others
                LOG.warning("cannot close %r: %s", item, exc)


class TaskHost(QObject):
    """Starts ``Task`` workers whose results come back to GUI-thread callbacks and keeps them until they end.

    A failure goes to ``on_fail`` when given, else to ``report`` (the window's error dialog). After ``shutdown``
    no callback runs: a late result is released (``release``), a late failure only logged, so a window that
    closed while a source opened or a model loaded starts nothing.
    """

    def __init__(self, report: Callable[[str], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._report = report
        self._tasks: set[Task] = set()
        self.closed = False

    def start(self, fn: Callable, name: str, on_done: Callable[[Any], None],
              on_fail: Callable[[str], None] | None = None) -> Task:
        task = Task(fn, name, self)
        task.succeeded.connect(lambda result: self._succeeded(name, on_done, result))
        task.failed.connect(lambda message: self._failed(name, on_fail or self._report, message))
        task.ended.connect(lambda t=task: self._tasks.discard(t))
        self._tasks.add(task)
        return task.start()

    def _succeeded(self, name: str, on_done: Callable[[Any], None], result: Any) -> None:
        if self.closed:
            LOG.debug("%s ended after shutdown: its result is released", name)
            release(result)
            return
        on_done(result)

    def _failed(self, name: str, on_fail: Callable[[str], Any], message: str) -> None:
        if self.closed:
            LOG.info("%s failed after shutdown: %s", name, message)
            return
        on_fail(message)

    def running(self) -> list[str]:
        """Names of the tasks still running."""
        return sorted(t.name for t in self._tasks if t.running)

    def shutdown(self, timeout: float) -> None:
        """Cancel every task and wait for each up to ``timeout`` seconds; results that come later are released."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
            task.join(timeout)
