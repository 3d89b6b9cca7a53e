"""The window's actions (menu entries with keyboard shortcuts) and its menu bar."""
from __future__ import annotations

from typing import Callable

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import QAction, QMainWindow, QMenu


def make_action(window: QMainWindow, text: str, slot: Callable, shortcut: str | None = None,
                checkable: bool = False, tip: str = "") -> QAction:
    """An action added to ``window`` (so its shortcut works in full screen, when menus are hidden); the
    tooltip names the shortcut."""
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setCheckable(checkable)
    label = tip or text.replace("&", "").rstrip("…")
    action.setToolTip(f"{label} ({action.shortcut().toString()})" if shortcut is not None else label)
    action.setShortcutContext(Qt.WindowShortcut)
    action.triggered.connect(slot)
    window.addAction(action)
    return action


def build_menus(window: QMainWindow, menus: dict[str, list[QAction | str | None]]) -> dict[str, QMenu]:
    """One menu per key, in order; an entry is an action, None (a separator) or a sub-menu's title."""
    built: dict[str, QMenu] = {}
    for title, entries in menus.items():
        menu = window.menuBar().addMenu(title)
        for entry in entries:
            if entry is None:
                menu.addSeparator()
            elif isinstance(entry, str):
                built[entry] = menu.addMenu(entry)
            else:
                menu.addAction(entry)
        built[title] = menu
    return built


def shortcut_lines(window: QMainWindow) -> list[str]:
    """"key   action" for every action of the window that has a shortcut."""
    return [f"{a.shortcut().toString():>14}   {a.text().replace('&', '').rstrip('…')}"
            for a in window.actions() if not a.shortcut().isEmpty()]
