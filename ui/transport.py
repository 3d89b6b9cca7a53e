"""Playback controls over the player's source: play/pause, single step, seek, speed, the seek bar, which actions
apply, and where a file really ends (a damaged file may stop long before the length its container announces)."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from PyQt5.QtCore import QObject
from PyQt5.QtWidgets import QAction

from ui.controls import SPEEDS, PlaybackBar, format_time
from ui.player import PlayerController
from ui.settings import ViewerSettings
from ui.status import source_label

LOG = logging.getLogger(__name__)


def early_end_note(name: str, end: float, lost: int, exact: bool, announced: int | None) -> str:
    """The status-bar line for a file that ended before its announced length."""
    counted = f" of {announced}" if announced else ""
    about = "" if exact else "about "
    return (f"{name} ends at {format_time(end)}: {about}{lost}{counted} frames could not be decoded "
            f"(damaged or truncated file)")


class TransportController(QObject):
    """``end_note`` holds the message shown when the current file ended early ("" otherwise)."""

    def __init__(self, player: PlayerController, playbar: PlaybackBar, settings: ViewerSettings,
                 message: Callable[[str, int], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.player, self.playbar, self.settings, self._message = player, playbar, settings, message
        self.play_action: QAction | None = None
        self.source_actions: list[QAction] = []
        self.seek_actions: list[QAction] = []
        self.end_note = ""
        playbar.seek_requested.connect(self.seek)
        playbar.speed_changed.connect(self.set_speed)
        playbar.set_speed(settings.speed)
        settings.speed = float(playbar.speed.currentData())  # a stored speed not offered: the nearest, shown
        player.source_changed.connect(self._on_source_changed)
        player.displayed.connect(self._on_displayed)
        player.stream_ended.connect(self._on_end)

    def bind_actions(self, play_action: QAction, source_actions: Sequence[QAction],
                     seek_actions: Sequence[QAction]) -> None:
        """``play_action`` shows Play or Pause; ``source_actions`` need a source, ``seek_actions`` a seekable one."""
        self.play_action, self.source_actions, self.seek_actions = play_action, list(source_actions), list(seek_actions)
        self.update_actions()

    # -- state ------------------------------------------------------------------------------------------------
    def update_actions(self) -> None:
        playback = self.player.playback
        seekable = bool(playback is not None and playback.seekable)
        if self.play_action is not None:
            self.play_action.setText("Pause" if self.playing else "Play")
        for act in self.source_actions:
            act.setEnabled(playback is not None)
        for act in self.seek_actions:
            act.setEnabled(seekable)
        self.playbar.speed.setEnabled(seekable)

    @property
    def playing(self) -> bool:
        """True while the source plays: not paused, and its runner still delivers (a stream or camera that stopped,
        or a runner stopped by an error, plays nothing until Play restarts it)."""
        playback = self.player.playback
        return playback is not None and not playback.paused and self.player.running

    def _on_source_changed(self, spec: str) -> None:
        playback = self.player.playback
        self.end_note = ""
        if playback is None:
            self.playbar.set_duration(None)
        else:
            self.playbar.set_duration(playback.duration if playback.seekable else None,
                                      live=bool(playback.inner.is_live))  # a raw stream file: not seekable, not live
        self.update_actions()

    def _on_displayed(self, frame, _poses) -> None:
        playback = self.player.playback
        if playback is not None and playback.seekable:
            self.playbar.set_position(frame.timestamp)

    def _on_end(self) -> None:
        playback = self.player.playback
        if playback is not None and playback.ended_early:
            self.end_note = early_end_note(source_label(self.player.source_spec), playback.duration,
                                           playback.lost_frames, playback.lost_frames_exact, playback.frame_count)
            LOG.warning("%s", self.end_note)
            self.playbar.set_duration(playback.duration)
            self.playbar.set_position(playback.position)
            self._message(self.end_note, 0)
        self.update_actions()

    # -- controls ---------------------------------------------------------------------------------------------
    def toggle_play(self) -> None:
        if self.player.playback is not None:
            self.set_paused(self.playing)

    def set_paused(self, paused: bool) -> None:
        playback = self.player.playback
        if playback is None:
            return
        playback.set_paused(paused)
        if not paused and not self.player.running:
            self.player.restart_runner()  # a live source that ended, or after an error
        self.update_actions()

    def step(self) -> None:
        if self.player.playback is not None:
            self.player.playback.step()
            self.update_actions()

    def seek(self, seconds: float) -> None:
        """Jump to ``seconds``, kept inside the playable length (the last frame at most)."""
        playback = self.player.playback
        if playback is None or not playback.seekable:
            return
        duration = playback.duration
        if duration:
            seconds = min(seconds, max(0.0, duration - 1.0 / max(playback.fps, 1.0)))
        seconds = max(0.0, seconds)
        playback.seek(seconds)
        self.playbar.set_position(seconds)

    def seek_relative(self, delta: float) -> None:
        if self.player.playback is not None:
            self.seek(self.player.playback.position + delta)

    def set_speed(self, speed: float) -> None:
        self.settings.speed = float(speed)
        if self.player.playback is not None:
            self.player.playback.set_speed(speed)

    def change_speed(self, direction: int) -> None:
        """One step along ``SPEEDS`` (``direction`` -1 slower, +1 faster)."""
        index = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.settings.speed))
        index = max(0, min(len(SPEEDS) - 1, index + direction))
        self.playbar.set_speed(SPEEDS[index])
