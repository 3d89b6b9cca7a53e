"""Option value types and output checks shared by the commands: a bad value is one line from the parser, a bad
output path is refused before any work (the writers would only fail at the end, naming a temporary file)."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from core.errors import InputError


def number(text: str, kind: type):
    """``text`` as an ``int`` or ``float``, or the parser's one-line error."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 1, got {text}")
    return value


def positive(text: str, unit: str = "") -> float:
    """A number > 0 (``unit`` names it in the error: ``must be > 0 seconds``)."""
    value = number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0{unit}, got {text}")
    return value


def seconds(text: str) -> float:
    """A duration > 0 seconds."""
    return positive(text, " seconds")


def at_least(minimum: int):
    """The type of an integer option that must be at least ``minimum``."""
    def parse(text: str) -> int:
        value = number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def long_edge(text: str) -> int:
    """The type of a ``--long-edge`` (or canvas ``--height``) option: an integer from 32 to 4096."""
    from core.geometry import long_edge_problem  # on use: option parsing stays free of OpenCV

    value = number(text, int)
    problem = long_edge_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


long_edge.__name__ = "integer 32..4096"


def folder(text: str) -> str:
    """A folder option's value: a folder, or a path where one can be made (not an existing file)."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def check_output_file(option: str, path: str | os.PathLike | None) -> None:
    """``InputError`` when the file an option names to write is a folder."""
    if path and os.path.isdir(path):
        raise InputError(f"{option} {path} is a folder, not a file")


def check_output_folder(option: str, folder: str | os.PathLike) -> None:
    """``InputError`` unless the folder an option names is (or can become) a writable folder; creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder} is a file, not a folder")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{option} {folder}: {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise InputError(f"{option} {folder} is not writable: {exc.strerror or exc}") from None
