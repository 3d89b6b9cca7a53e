"""``gopose models SUB``: create, inspect and export network checkpoints.

Sub-commands live in ``SUBCOMMANDS`` (name -> help, add_arguments, run), one function pair each.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from app.commands.options import at_least, long_edge
from app.commands.models_store import STORE_SUBCOMMANDS
from core.errors import InputError

HELP = ("network checkpoints: init (random weights), info (what a file holds), export (ONNX, INT8), package (for "
        "shipping); installed models: add, list, download, default, remove")


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


def _parse_options(items: list[str], option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` strings (values read as YAML) -> dict; errors name ``option``, the flag that gave them."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"{option} {item!r}: cannot parse the value ({exc.__class__.__name__})") from None
    return options


def _run_init(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import save_checkpoint
    from models.factory import NetworkOptionError, build_model, make_config

    torch.manual_seed(args.seed)
    try:
        config = make_config(args.arch, args.spec, args.skeleton, args.with_scale, **_parse_options(args.options))
    except KeyError as exc:
        raise InputError(str(exc)) from None
    try:
        model = build_model(config)
    except (ValueError, RuntimeError) as exc:  # e.g. --set channels=0: the network refuses its own options
        if isinstance(exc, InputError) and not isinstance(exc, NetworkOptionError):
            raise
        given = "".join(f" --set {o}" for o in args.options)
        raise InputError(f"architecture {args.arch!r}{' with' + given if given else ''}: {exc}") from None
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
    p.add_argument("file", help="checkpoint file or installed model name")
    p.add_argument("--onnx", default=None, help="ONNX file to write (the fp32 inference graph)")
    p.add_argument("--int8", action="store_true",
                   help="build the INT8 model (NNCF post-training quantisation) of the onnx-int8 and openvino-int8 "
                        "backends into the cache they use (default: the user's model folder), validated and reused")
    p.add_argument("--arch", default=None, help="architecture, needed for the authors' checkpoints")
    p.add_argument("--size", type=at_least(32), default=None,
                   help="square input size (ONNX: default 320, 512 for hourglass; --int8: the canvas side the "
                        "backends will run, default the model's long edge, e.g. 512 as `gopose annotate`)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--static", action="store_true", help="fixed input shape instead of dynamic batch/height/width")
    p.add_argument("--calibration", action="append", default=[], metavar="DIR",
                   help="--int8: folder of calibration images (repeatable; default: the shared LSPET train and COCO "
                        "train2017_mini images, never an evaluation set)")
    p.add_argument("--calibration-images", type=at_least(1), default=None, metavar="N",
                   help="--int8: at most N calibration images, spread evenly over the folders (default 200)")
    p.add_argument("--cache", default=None, metavar="DIR", help="--int8: backend cache folder (default: "
                   "<model folder>/.cache, where annotate, gui and eval look)")
    p.add_argument("--force", action="store_true", help="--int8: rebuild even when a valid INT8 model is cached")


def _run_export(args: argparse.Namespace) -> int:
    from app.model_store import resolve_model
    from models.checkpoint import load_checkpoint
    from models.export import export_onnx, output_names

    if not args.onnx and not args.int8:
        raise InputError("models export needs --onnx FILE and/or --int8")
    path, stored_arch = resolve_model(args.file)
    model, _ = load_checkpoint(path, arch=args.arch or stored_arch)
    if args.onnx:
        size = args.size or (512 if model.input_multiple > 32 else 320)
        out = export_onnx(model, args.onnx, size, size, opset=args.opset, dynamic=not args.static)
        shape = f"(1, 3, {size}, {size})" if args.static else "(N, 3, H, W)"
        print(f"wrote {out}: input image {shape} normalised float32, outputs {', '.join(output_names(model))}"
              f" (offsets in input pixels)")
    if args.int8:
        _export_int8(model, args)
    return 0


def _export_int8(model, args: argparse.Namespace) -> None:
    """Build (or find valid) the INT8 artefact exactly as the INT8 backends key it."""
    from pathlib import Path

    from app.engine import CACHE
    from app.model_store import store_dir
    from eval.calibration import default_images
    from models.backends import INT8_FOLDER, require
    from models.backends.int8 import DEFAULT_IMAGES, Int8Store, decodable_images
    from models.precision import InferenceModel

    require("onnx-int8")
    net = InferenceModel(model, "cpu", "fp32").model  # the BN-folded network the backends run
    m = int(model.input_multiple)
    size = -(-int(args.size or model.codec.long_edge) // m) * m
    store = Int8Store(Path(args.cache or store_dir() / CACHE) / INT8_FOLDER)
    limit = args.calibration_images or DEFAULT_IMAGES
    if args.force:  # the images first: a rebuild that cannot start must not cost the cached model
        images = decodable_images(default_images(args.calibration, limit))
        if not images:
            raise InputError(f"--force: no calibration images to rebuild the INT8 model with in "
                             f"{', '.join(map(str, args.calibration)) or 'the default folders'}")
        store.discard(net, size, "--force")
    path = store.ensure(net, size, lambda: images if args.force else default_images(args.calibration, limit),
                        in_memory=False)  # the point of an export is the file: a read-only cache is an error
    print(f"INT8 model of {args.file} at {size}x{size}: {path} (metadata {path.parent / 'meta.json'})")


# ---------------------------------------------------------------------------------------------- package
def _add_package(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a trained GOPose checkpoint (e.g. a run's best.pt)")
    p.add_argument("--out", required=True, help="the packaged checkpoint to write")
    p.add_argument("--arch", default=None, help="architecture, needed for the authors' checkpoints")
    p.add_argument("--skeleton", default=None,
                   help="keep only this skeleton's limbs (a part of the trained one, e.g. redundant of all)")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    p.add_argument("--long-edge", type=long_edge, default=None,
                   help="the input long edge the model runs at by default, 32 to 4096")
    p.add_argument("--decoder", action="append", default=[], metavar="KEY=VALUE",
                   help="decoder default stored in the codec, e.g. --decoder threshold=0.1 (repeatable)")
    p.add_argument("--metric", action="append", default=[], metavar="KEY=VALUE",
                   help="a measured metric to record in the file, e.g. --metric coco_val_subset_AP=0.31")
    p.add_argument("--average", action="append", default=[], metavar="CHECKPOINT",
                   help="average the weights with this checkpoint of the same network (repeatable; uniform mean)")


def _run_package(args: argparse.Namespace) -> int:
    import os

    from models.package import package_checkpoint

    if os.path.exists(args.out) and os.path.exists(args.file) and os.path.samefile(args.out, args.file):
        raise InputError(f"--out {args.out} is the checkpoint being packaged: write the package to another file "
                         f"(the trained one keeps its float32 weights and optimizer state)")
    path = package_checkpoint(args.file, args.out, skeleton=args.skeleton, half=not args.fp32,
                              long_edge=args.long_edge, decoder=_parse_options(args.decoder, "--decoder"),
                              metrics=_parse_options(args.metric, "--metric"), average=args.average,
                              arch=args.arch)
    print(json.dumps(describe(str(path))))
    return 0


# ----------------------------------------------------------------------------------------------- table
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "init": ("write a randomly initialised checkpoint in our format", _add_init, _run_init),
    "info": ("print what a checkpoint holds", _add_info, _run_info),
    "export": ("export a checkpoint's inference graph to ONNX, or build its INT8 model", _add_export, _run_export),
    "package": ("package a trained checkpoint for shipping: one skeleton, fp16, the codec's inference defaults",
                _add_package, _run_package),
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
