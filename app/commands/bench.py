"""``gopose bench WHAT``: benchmarks that print a table and, last, one JSON line."""
from __future__ import annotations

import argparse
import importlib

HELP = ("benchmarks (decoder, encoder, model, pipeline, loader, gui, tracking, faults) printing a table and a "
        "final JSON line")

# what -> module exposing add_arguments(parser) and run(args) -> int
BENCHES: dict[str, str] = {
    "decoder": "eval.bench_decoder",
    "encoder": "eval.bench_encoder",
    "model": "eval.bench_model",
    "pipeline": "eval.bench_pipeline",
    "loader": "eval.bench_loader",
    "gui": "eval.bench_gui",
    "tracking": "eval.bench_tracking",
    "faults": "eval.bench_faults",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="WHAT", required=True)
    for name, module_name in BENCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        p = sub.add_parser(name, help=getattr(module, "HELP", ""))
        module.add_arguments(p)
        p.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "cache", "") is None:  # benches with backends keep INT8 models where the app does
        from app.engine import CACHE
        from app.model_store import store_dir

        args.cache = str(store_dir() / CACHE)
    return int(args._bench.run(args) or 0)
