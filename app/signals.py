"""SIGTERM handled like Ctrl-C: ``kill``, ``timeout``, ``docker stop`` and cluster schedulers stop a command the
way Ctrl-C does (running outputs are discarded, temporary files removed), and the command exits with 143."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, what shells report for a process ended by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised in the main thread, so everything that cleans up after Ctrl-C runs too."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, the first SIGTERM raises :class:`Terminated` in the main thread; later ones are
    ignored while that cleanup runs. Elsewhere than in the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["TERMINATED_EXIT", "Terminated", "sigterm_as_interrupt"]
