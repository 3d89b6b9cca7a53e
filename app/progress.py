"""Progress of a long command: a live bar on a terminal, one plain line every N seconds in a log (a file, a pipe,
a cluster's job log), so logs never fill with carriage-return redraws."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class TerminalProgress:
    """A tqdm bar (frames, frames/s), redrawn in place; fed from any thread with ``update_to``."""

    def __init__(self, desc: str, stream: TextIO) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=desc, unit="frame", dynamic_ncols=True, file=stream, leave=False)

    def update_to(self, done: int, total: int | None) -> None:
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


class LineProgress:
    """One line ``desc: done/total frames (pct%), rate frames/s`` at most every ``interval`` seconds."""

    def __init__(self, desc: str, stream: TextIO, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.stream, self.interval, self.clock = desc, stream, float(interval), clock
        self._start = clock()
        self._last = self._start
        self.lines = 0

    def update_to(self, done: int, total: int | None) -> None:
        now = self.clock()
        if now - self._last < self.interval:
            return
        self._last = now
        rate = done / (now - self._start) if now > self._start else 0.0
        of = f"/{total} frames ({100 * done / total:.0f}%)" if total else " frames"
        self.stream.write(f"{self.desc}: {done}{of}, {rate:.1f} frames/s\n")
        self.stream.flush()
        self.lines += 1

    def close(self) -> None:
        pass


def progress_for(desc: str, stream: TextIO | None = None,
                 interval: float = 30.0) -> TerminalProgress | LineProgress:
    """A live bar when ``stream`` (default stderr) is a terminal, else periodic lines."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return TerminalProgress(desc, stream)
    return LineProgress(desc, stream, interval)


__all__ = ["LineProgress", "TerminalProgress", "progress_for"]
