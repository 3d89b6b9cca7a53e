"""The ``gopose`` command line: one sub-command per module under ``app/commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
With no sub-command the desktop application opens. Only the named command's arguments are built (``gopose
--help`` imports no command's dependencies); usage errors are one line; SIGTERM stops a command like Ctrl-C
(exit 143 instead of 130).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from app.signals import TERMINATED_EXIT, Terminated, sigterm_as_interrupt
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


# commands that handle SIGTERM themselves (the GUI's event loop; the trainer checkpoints first)
OWN_SIGTERM = frozenset({"gui", "train"})


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the option, plus where to read more (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed; only those in ``names`` get their arguments (``None``: the
    overview, which builds none, so ``gopose --help`` is fast)."""
    parser = OneLineParser(prog="gopose", description="Real-time multi-person pose estimation (GOPose)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if names is None else names:
        try:
            module = _load(name)
        except ImportError as exc:  # a command whose module is missing must not break the others
            LOG.debug("command %s unavailable: %s", name, exc)
            continue
        p = sub.add_parser(name, help=getattr(module, "HELP", ""), description=getattr(module, "HELP", ""))
        if names is not None:
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def all_cpus_but_one() -> int:
    """The network's default CPU threads in the video commands: every CPU this process may use but one, which the
    video decoding and output threads need (a network team sharing that core waits for it:
    docs/performance.md)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus - 1)


def say(line: str) -> None:
    """One line to stderr in a single write: the lines of processes sharing stderr (torchrun's ranks) never
    interleave, as ``print``'s separate write of the newline lets them."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting (building the parser, importing torch: seconds)
        say("gopose: interrupted")
        return 130


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Build only the parser of the named command, so one command's imports never slow another.
    first = next((a for a in argv if not a.startswith("-")), None)
    names = [first] if first in COMMANDS else (["gui"] if first is None and not _wants_help(argv) else None)
    if first is None and names == ["gui"]:
        argv = argv + ["gui"]
    parser = build_parser(names)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed as one line)
        return exc.code if isinstance(exc.code, int) else 0
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    if getattr(args, "threads", None) is None and hasattr(args._module, "default_threads"):
        args.threads = args._module.default_threads(args)
    threads = getattr(args, "threads", None)
    if threads:  # the process's torch thread count is the application's choice, never a library constructor's
        import torch

        torch.set_num_threads(int(threads))
    try:
        if args.command in OWN_SIGTERM:
            return int(args._module.run(args) or 0)
        with sigterm_as_interrupt():
            return int(args._module.run(args) or 0)
    except InputError as exc:
        say(f"gopose {args.command}: error: {exc}")
        return 2
    except OSError as exc:  # a file system problem outside any input's handling: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        say(f"gopose {args.command}: error: {where}{exc.strerror or exc}")
        LOG.debug("%s", exc, exc_info=True)
        return 2
    except Terminated:
        say(f"gopose {args.command}: terminated (SIGTERM); unfinished outputs were discarded")
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        say(f"gopose {args.command}: interrupted")
        return 130


def _wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)
