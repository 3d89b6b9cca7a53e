"""Unix signals (Ctrl-C, ``kill``) delivered to the Qt event loop as a Qt signal.

Python runs its signal handlers only between bytecodes, and a Qt event loop may sit in C for a long time; a
handler that raises ``KeyboardInterrupt`` inside a slot even makes PyQt abort the process. So the handlers here
do nothing themselves: the C-level handler writes the signal number to a socket (``signal.set_wakeup_fd``), a
``QSocketNotifier`` wakes the event loop, and ``received(signum)`` is emitted in the GUI thread.
"""
from __future__ import annotations

import logging
import signal
import socket

from PyQt5.QtCore import QObject, QSocketNotifier, pyqtSignal

LOG = logging.getLogger(__name__)


def default_signals() -> tuple[int, ...]:
    """SIGINT, plus SIGTERM where the platform has it."""
    return tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


class SignalBridge(QObject):
    """While installed, each of ``signals`` emits ``received(signum)`` in the thread that installed it (which must
    be the main thread). ``uninstall`` restores the previous handlers."""

    received = pyqtSignal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._previous: dict[int, object] = {}
        self._previous_fd: int | None = None
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._notifier: QSocketNotifier | None = None

    def install(self, signals: tuple[int, ...] | None = None) -> "SignalBridge":
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._sockets = (reader, writer)
        self._notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Read, self)
        self._notifier.activated.connect(self._drain)
        self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in signals or default_signals():
            self._previous[signum] = signal.signal(signum, _ignore)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._sockets is not None:
            signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
            self._notifier.setEnabled(False)
            for sock in self._sockets:
                sock.close()
            self._sockets = self._notifier = None

    def _drain(self) -> None:
        if self._sockets is None:
            return
        try:
            data = self._sockets[0].recv(64)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum in self._previous:
                self.received.emit(int(signum))


def _ignore(_signum, _frame) -> None:
    """The Python-level handler: the wake-up socket carries the signal to the event loop."""
