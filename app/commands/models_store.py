"""``gopose models add|list|download|default|remove``: the user's installed models (see ``app/model_store.py``).

Registered into ``app/commands/models.py``'s sub-command table as ``STORE_SUBCOMMANDS``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from app.commands.options import folder, seconds
from core.errors import InputError

MB = 1e6  # sizes are printed in decimal megabytes, as file managers show them


def _add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=folder, default=None, metavar="DIR",
                   help="model folder (default: $GOPOSE_HOME/models or ~/.local/share/gopose/models)")


def _add_add(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="checkpoint file (ours, or the authors' with --arch)")
    p.add_argument("--name", default=None, help="name to install it under (default: the file name)")
    p.add_argument("--arch", default=None, help="architecture of an authors' checkpoint (e.g. hourglass104)")
    p.add_argument("--force", action="store_true", help="replace an installed model of the same name")
    _add_store_option(p)


def _run_add(args: argparse.Namespace) -> int:
    from app.model_store import add_model

    e = add_model(args.file, name=args.name, arch=args.arch, root=args.store, force=args.force)
    print(f"installed {e.name}: {e.arch}, {e.contract.get('spec')}/{e.contract.get('skeleton')}, "
          f"{e.size / MB:.1f} MB, sha256 {e.sha256[:16]}... in {e.path.parent}")
    _print_default(args.store)
    return 0


def _print_default(store: str | None) -> None:
    """Say which model runs by default now (or why none does)."""
    from app.model_store import choose_model

    try:
        print(f"default model: {choose_model(None, store).describe()}")
    except InputError as exc:
        print(f"default model: none - {exc}")


def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    _add_store_option(p)


def _run_list(args: argparse.Namespace) -> int:
    from app.model_store import builtin_entry, choose_model, list_models, store_dir

    entries = list_models(args.store)
    builtin = builtin_entry()
    if builtin is not None:
        entries.insert(0, builtin)
    try:
        current = choose_model(None, args.store)
    except InputError:
        current = None
    is_default = {e.name: current is not None and e.path == current.path for e in entries}
    if args.json:
        print(json.dumps([{**e.to_dict(), "default": is_default[e.name]} for e in entries]))
        return 0
    if not entries:
        print(f"no models installed in {store_dir(args.store)}; add one with `gopose models add FILE`")
        return 0
    rows = [("*" if is_default[e.name] else "", e.name + (" (built-in)" if e.builtin else ""), e.arch,
             f"{e.contract.get('spec')}/{e.contract.get('skeleton')}", f"{e.size / MB:.1f} MB",
             e.added or "-", e.sha256[:12]) for e in entries]
    head = ("", "NAME", "ARCH", "SPEC/SKELETON", "SIZE", "ADDED", "SHA256")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"({len(entries) - (builtin is not None)} installed in {store_dir(args.store)}; * = default)")
    _print_default(args.store)
    return 0


def _add_default(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=None,
                   help="installed model to run when no --model is given ('default': the built-in model); "
                        "without NAME: print the current default")
    p.add_argument("--clear", action="store_true", help="forget the explicit default")
    _add_store_option(p)


def _run_default(args: argparse.Namespace) -> int:
    from app.model_store import clear_default, set_default

    if args.clear and args.name:
        raise InputError("give either NAME or --clear, not both")
    if args.clear:
        print("explicit default cleared" if clear_default(args.store) else "no explicit default was set")
    elif args.name:
        print(f"default model: {set_default(args.name, args.store).describe()}")
        return 0
    _print_default(args.store)
    return 0


def _add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="http(s) URL of a checkpoint")
    p.add_argument("--sha256", required=True, help="expected SHA-256 (hex) of the file")
    p.add_argument("--name", default=None, help="name to install it under (default: from the URL)")
    p.add_argument("--arch", default=None, help="architecture of an authors' checkpoint")
    p.add_argument("--force", action="store_true", help="replace an installed model of the same name")
    p.add_argument("--timeout", type=seconds, default=30.0, help="network timeout in seconds (default 30)")
    _add_store_option(p)


def _run_download(args: argparse.Namespace) -> int:
    from app.model_store import download_model

    def progress(done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            pct = f" {100 * done / total:5.1f}%" if total else ""
            print(f"\r{done / MB:8.1f} MB{pct}", end="", file=sys.stderr, flush=True)

    e = download_model(args.url, args.sha256, name=args.name, arch=args.arch, root=args.store,
                       timeout=args.timeout, force=args.force, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"installed {e.name} from {args.url}: {e.arch}, {e.contract.get('spec')}, sha256 verified")
    return 0


def _add_remove(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="installed model to uninstall (its .pt and .json)")
    _add_store_option(p)


def _run_remove(args: argparse.Namespace) -> int:
    from app.model_store import remove_model

    was_default = remove_model(args.name, args.store)
    print(f"removed {args.name}" + (" (it was the default; the choice is forgotten)" if was_default else ""))
    _print_default(args.store)
    return 0


STORE_SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                                   Callable[[argparse.Namespace], int]]] = {
    "add": ("validate a checkpoint and install it in the user's model folder", _add_add, _run_add),
    "list": ("list the installed models", _add_list, _run_list),
    "download": ("download a checkpoint, verify its sha256 and install it", _add_download, _run_download),
    "default": ("choose (or show) the model that runs when no --model is given", _add_default, _run_default),
    "remove": ("uninstall a model from the user's model folder", _add_remove, _run_remove),
}
