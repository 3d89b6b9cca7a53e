"""``--backend auto``: the fastest installed fp32 backend, measured once per machine, network and input size.

The first run times every candidate on the same input, interleaved (``runners.compare_runners``), and records the
winner with the timings in a JSON file the caller passes (the app: a file in the user's model folder); later runs
read it and measure nothing, so a given machine and model always run the same backend. Deleting the file (or an
entry) measures again. INT8 backends are never candidates: ``auto`` does not change the numbers a model produces
(INT8 is chosen explicitly: ``--backend openvino-int8``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from core.errors import InputError
from core.io.files import exclusive, write_json_atomic
from models.backends import installed
from models.backends.int8 import model_digest

LOG = logging.getLogger(__name__)

AUTO_CANDIDATES: tuple[str, ...] = ("torch", "onnx", "openvino")
CHOICE_FILE = "backend-choice.json"  # in the backend cache folder the caller passes


def machine_id() -> str:
    """This CPU's model name and logical core count (what the measurement depends on)."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} x{os.cpu_count()}"


def choice_key(digest: str, size: int, threads: int | None, candidates: Sequence[str]) -> str:
    return (f"{machine_id()}|{digest[:16]}|{int(size)}px|torch threads {torch.get_num_threads()}|"
            f"threads {threads or 'default'}|{','.join(candidates)}")


def read_choices(path: Path) -> dict:
    """The recorded choices (an unreadable file counts as empty: it is measured again and rewritten)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _usable(record: object, names: Sequence[str]) -> bool:
    """A recorded choice of one of ``names`` with its timings (or none) as a mapping; anything else is damaged."""
    return (isinstance(record, dict) and record.get("backend") in names
            and isinstance(record.get("ms") or {}, dict))


def pick(model: torch.nn.Module, *, size: int, threads: int | None, cache_dir: str | Path | None,
         make: Callable[[str], object], candidates: Sequence[str] = AUTO_CANDIDATES,
         repeats: int = 7) -> tuple[str, object, dict]:
    """``(backend name, its runner, record)``: the recorded choice for this machine, model and size, else the
    fastest of the installed ``candidates`` (``make(name)`` builds a runner), recorded in ``cache_dir``."""
    from models.backends.runners import compare_runners

    cache_file = Path(cache_dir) / CHOICE_FILE if cache_dir is not None else None
    names = installed(candidates)
    key = choice_key(model_digest(model), size, threads, names)
    if cache_file is not None:
        record = read_choices(Path(cache_file)).get(key)
        if _usable(record, names):
            return record["backend"], make(record["backend"]), record
    runners: dict[str, object] = {}
    for name in names:
        try:
            runners[name] = make(name)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run this network is not a candidate
            LOG.info("backend %s unavailable for this network: %s", name, exc)
    if len(runners) == 1:
        name = next(iter(runners))
        return name, runners[name], {"backend": name, "ms": {}}
    x = torch.zeros(1, 3, size, size)
    times = compare_runners(list(runners.values()), x, repeats=repeats)
    ms = {name: round(t, 3) for name, t in zip(runners, times) if math.isfinite(t)}
    if not ms:
        raise InputError(f"no backend could run this network at {size} px: {', '.join(runners)} all failed "
                         f"(see the warnings above)")
    best = min(ms, key=ms.get)
    record = {"backend": best, "ms": ms, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    LOG.info("backend timing at %d px: %s -> %s", size, ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()), best)
    if cache_file is not None:
        _record(Path(cache_file), key, record)
    return best, runners[best], record


def _record(path: Path, key: str, record: dict) -> None:
    """Add ``record`` under ``key``, keeping what other processes recorded meanwhile (the read and the write are
    one locked step)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(path):
            data = read_choices(path)
            data[key] = record
            write_json_atomic(path, data, indent=2)
    except (OSError, InputError) as exc:  # a read-only folder: the choice is measured again next time
        LOG.warning("cannot record the backend choice in %s: %s", path, getattr(exc, "strerror", None) or exc)
