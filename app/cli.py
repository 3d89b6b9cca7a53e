"""The ``gopose`` command line: one sub-command per module under ``app/commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
With no sub-command the desktop application opens.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from core.errors import InputError

LOG = logging.getLogger("gopose")

# name -> module; modules are imported only when their command runs (fast start, optional extras).
COMMANDS: dict[str, str] = {
    "gui": "app.commands.gui",
    "annotate": "app.commands.annotate",
    "models": "app.commands.models",
    "train": "app.commands.train",
    "eval": "app.commands.eval",
    "oracle": "app.commands.oracle",
    "bench": "app.commands.bench",
}


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gopose", description="Real-time multi-person pose estimation (GOPose)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in names if names is not None else list(COMMANDS):
        try:
            module = _load(name)
        except ImportError as exc:  # a command whose module is missing must not break the others
            LOG.debug("command %s unavailable: %s", name, exc)
            continue
        p = sub.add_parser(name, help=getattr(module, "HELP", ""), description=getattr(module, "HELP", ""))
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Build only the parser of the named command, so one command's imports never slow another.
    first = next((a for a in argv if not a.startswith("-")), None)
    names = [first] if first in COMMANDS else (["gui"] if first is None and not _wants_help(argv) else None)
    if first is None and names == ["gui"]:
        argv = argv + ["gui"]
    parser = build_parser(names)
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except (InputError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"gopose {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gopose {args.command}: interrupted", file=sys.stderr)
        return 130


def _wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)
