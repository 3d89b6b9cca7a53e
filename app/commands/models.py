"""``gopose models SUB``: create, inspect and export network checkpoints.

Sub-commands live in ``SUBCOMMANDS`` (name -> help, add_arguments, run), one function pair each.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from app.commands.models_store import STORE_SUBCOMMANDS
from core.errors import InputError

HELP = ("network checkpoints: init (random weights), info (what a file holds), export (ONNX); "
        "installed models: add, list, download, default")


# ------------------------------------------------------------------------------------------------- init
def _add_init(p: argparse.ArgumentParser) -> None:
    # no import of models/ here (it loads torch): an unknown name is refused by make_config with the list
    p.add_argument("--arch", required=True, help="network architecture: realtime, midsize, mobilenet or hourglass104")
    p.add_argument("--spec", default="coco", choices=["coco", "crowdpose"], help="keypoint spec (default coco)")
    p.add_argument("--skeleton", default="default", help="skeleton name of the spec (default: the paper's)")
    p.add_argument("--with-scale", action="store_true", help="add the keypoint-scale head")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture keyword argument, e.g. --set channels=96 --set 'widths=[32,48,96,128]'")
    p.add_argument("--seed", type=int, default=0, help="random seed of the initialisation (default 0)")
    p.add_argument("--out", required=True, help="checkpoint file to write")


def _parse_options(items: list[str]) -> dict[str, Any]:
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item!r}: cannot parse the value ({exc.__class__.__name__})") from None
    return options


def _run_init(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import save_checkpoint
    from models.factory import build_model, make_config

    torch.manual_seed(args.seed)
    try:
        config = make_config(args.arch, args.spec, args.skeleton, args.with_scale, **_parse_options(args.options))
    except KeyError as exc:
        raise InputError(str(exc)) from None
    model = build_model(config)
    path = save_checkpoint(args.out, model, epoch=0, step=0, extra={"init_seed": args.seed})
    print(f"wrote {path}: {config.arch}, {config.contract.spec.name}/{config.contract.skeleton_name}, "
          f"{model.n_parameters() / 1e6:.2f} M parameters")
    return 0


# ------------------------------------------------------------------------------------------------- info
def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="checkpoint file (ours or the authors')")
    p.add_argument("--arch", default=None, help="architecture, needed for the authors' checkpoints")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def describe(path: str, arch: str | None = None) -> dict[str, Any]:
    """A JSON-able summary of a checkpoint (loads and checks the weights)."""
    from models.checkpoint import load_checkpoint
    model, info = load_checkpoint(path, arch=arch)
    opt = info.get("optimizer_state_dict")
    return {
        "file": str(path), "kind": info["kind"], "format_version": info.get("format_version"),
        "arch": model.arch, "model_config": info["model_config"],
        "keypoints": model.contract.n_keypoints, "limbs": model.contract.n_limbs,
        "parameters": model.n_parameters(), "input_multiple": model.input_multiple,
        "epoch": info.get("epoch"), "step": info.get("step"), "train_loss": info.get("train_loss"),
        "metrics": info.get("metrics") or {}, "train_config": info.get("train_config"),
        "extra": info.get("extra") or {}, "saved_at": info.get("saved_at"),
        "optimizer_state": bool(opt),
    }


def _run_info(args: argparse.Namespace) -> int:
    d = describe(args.file, args.arch)
    if args.json:
        print(json.dumps(d, default=str))
        return 0
    c = d["model_config"]["contract"]
    print(f"file          {d['file']}")
    print(f"format        {d['kind']}" + (f" v{d['format_version']}" if d["format_version"] else ""))
    print(f"architecture  {d['arch']}  {json.dumps(d['model_config']['kwargs'])}")
    print(f"contract      spec={c['spec']} skeleton={c['skeleton']} ({d['keypoints']} keypoints, {d['limbs']} limbs)"
          f" stride={c['stride']} scale_head={c['with_scale']}")
    print(f"parameters    {d['parameters'] / 1e6:.2f} M   input multiple {d['input_multiple']}")
    print(f"epoch/step    {d['epoch']} / {d['step']}" + (f"   train loss {d['train_loss']}" if d["train_loss"] else ""))
    if d["metrics"]:
        print("metrics       " + ", ".join(f"{k}={v}" for k, v in d["metrics"].items()))
    if d["train_config"]:
        print(f"train config  {json.dumps(d['train_config'], default=str)[:300]}")
    print(f"optimizer     {'saved' if d['optimizer_state'] else 'none'}")
    return 0


# ----------------------------------------------------------------------------------------------- export
def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="checkpoint file")
    p.add_argument("--onnx", required=True, help="ONNX file to write")
    p.add_argument("--arch", default=None, help="architecture, needed for the authors' checkpoints")
    p.add_argument("--size", type=int, default=None, help="square example input size (default 320, 512 for hourglass)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--static", action="store_true", help="fixed input shape instead of dynamic batch/height/width")


def _run_export(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from models.export import export_onnx, output_names

    model, _ = load_checkpoint(args.file, arch=args.arch)
    size = args.size or (512 if model.input_multiple > 32 else 320)
    path = export_onnx(model, args.onnx, size, size, opset=args.opset, dynamic=not args.static)
    print(f"wrote {path}: input image (N, 3, H, W) normalised float32, outputs {', '.join(output_names(model))}"
          f" (offsets in input pixels)")
    return 0


# ----------------------------------------------------------------------------------------------- table
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "init": ("write a randomly initialised checkpoint in our format", _add_init, _run_init),
    "info": ("print what a checkpoint holds", _add_info, _run_info),
    "export": ("export a checkpoint's inference graph to ONNX", _add_export, _run_export),
    **STORE_SUBCOMMANDS,  # add, list, download: the user's model folder (app/commands/models_store.py)
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="SUB", required=True)
    for name, (help_text, add, run_fn) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(_models_run=run_fn)


def run(args: argparse.Namespace) -> int:
    return int(args._models_run(args) or 0)
