"""Status bar: source, resolution, display fps, inference fps, latency, people count, and the model in use (and
why it is used)."""
from __future__ import annotations

import collections
import time
from pathlib import Path

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel, QStatusBar, QWidget


def source_label(spec: str) -> str:
    """A source as the status bar names it: a file or folder by its name (also given with a trailing slash), a URL
    or a camera as given."""
    if "://" in spec or spec.startswith("webcam:"):
        return spec
    return Path(spec).name or spec


class RateMeter:
    """Events per second over a sliding window of the last ``window`` seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()


class StatusPanel:
    """Permanent labels in a ``QStatusBar``; ``fields`` maps a name to its label (tests read the texts)."""

    NAMES = ("source", "resolution", "display_fps", "inference_fps", "latency", "people", "model")

    def __init__(self, bar: QStatusBar, parent: QWidget | None = None) -> None:
        self.bar = bar
        self.fields: dict[str, QLabel] = {}
        widest = {"source": "", "resolution": "8888×8888", "display_fps": "display 888.8 fps",
                  "inference_fps": "inference 888.8 fps", "latency": "latency 8888 ms", "people": "people 888",
                  "model": ""}
        for name in self.NAMES:
            label = QLabel(parent)
            label.setObjectName(f"status_{name}")
            if widest[name]:
                label.setMinimumWidth(label.fontMetrics().horizontalAdvance(widest[name]) + 8)
            else:  # texts elided to the maximum width; the window may make them narrower still
                label.setMinimumWidth(80)
                label.setMaximumWidth(560 if name == "model" else 320)
            bar.addPermanentWidget(label, 1 if name == "source" else 0)
            self.fields[name] = label
        self.set_model("model: none", "")
        self.reset()

    def reset(self, source: str = "no source") -> None:
        self.set_source(source)
        self.fields["resolution"].setText("–")
        self.update(0.0, None, None, None)

    def set_source(self, text: str) -> None:
        """Show the source (a file by its name; the full text is the tooltip)."""
        shown = source_label(text)
        label = self.fields["source"]
        label.setText(label.fontMetrics().elidedText(shown, Qt.ElideMiddle, label.maximumWidth() - 8))
        label.setToolTip(text)

    def set_model(self, text: str, tooltip: str) -> None:
        """Which model is in use and why (elided to the label; the full text and the checkpoint's path are the
        tooltip)."""
        label = self.fields["model"]
        label.setText(label.fontMetrics().elidedText(text, Qt.ElideRight, label.maximumWidth() - 8))
        label.setToolTip(tooltip or text)

    def set_resolution(self, width: int, height: int) -> None:
        self.fields["resolution"].setText(f"{width}×{height}")

    def update(self, display_fps: float, inference_fps: float | None, latency_ms: float | None,
               people: int | None) -> None:
        self.fields["display_fps"].setText(f"display {display_fps:.1f} fps")
        self.fields["inference_fps"].setText("inference –" if inference_fps is None
                                             else f"inference {inference_fps:.1f} fps")
        self.fields["latency"].setText("latency –" if latency_ms is None else f"latency {latency_ms:.0f} ms")
        self.fields["people"].setText("people –" if people is None else f"people {people}")

    def text(self, name: str) -> str:
        return self.fields[name].text()


class DisplayStats:
    """What the window displayed: frame counts, the display rate, the last result's latency and people count,
    and the pipeline's inference rate (results produced, shown or not, over the last ~2 s)."""

    def __init__(self) -> None:
        self.frames = 0            # frames displayed so far
        self.results = 0           # of which with poses
        self.latency_ms: float | None = None
        self.people: int | None = None
        self.display_rate = RateMeter()
        self._result_samples: collections.deque[tuple[float, int]] = collections.deque()

    def reset(self) -> None:
        """Forget the rates, latency and people count of the previous source (a new source, or none)."""
        self.display_rate.reset()
        self._result_samples.clear()
        self.latency_ms = self.people = None

    def record(self, poses, delivered_at: float | None, now: float) -> None:
        """One frame displayed: ``poses`` None without a model; ``delivered_at`` when its source released it."""
        self.frames += 1
        self.display_rate.tick(now)
        if poses is None:
            self.people = self.latency_ms = None
            return
        self.results += 1
        self.people = len(poses)
        if delivered_at is not None:
            self.latency_ms = (now - delivered_at) * 1e3

    def inference_rate(self, results_total: int, now: float) -> float:
        """Results per second from the running total ``results_total`` sampled at ``now``."""
        samples = self._result_samples
        samples.append((now, results_total))
        while len(samples) > 2 and now - samples[0][0] > 2.0:
            samples.popleft()
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 > 0.2 else 0.0

    def show(self, panel: StatusPanel, results_total: int, inferring: bool, now: float | None = None) -> None:
        """Write the rates, latency and people count into ``panel``."""
        now = time.monotonic() if now is None else now
        rate = self.inference_rate(results_total, now)
        panel.update(self.display_rate.rate(now), rate if inferring else None, self.latency_ms, self.people)
