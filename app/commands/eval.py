"""``gopose eval``: run a checkpoint (or the ground-truth oracle) over COCO or CrowdPose and report AP and speed."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from app.commands.options import at_least, check_output_folder, fraction, long_edge, positive
from app.commands.oracle import check_skeleton

HELP = "evaluate a checkpoint (or --oracle-model) on COCO / CrowdPose: AP table, timing split, results.json"


def _backends() -> tuple[str, ...]:
    from models.backends import CHOICES

    return CHOICES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", "--model", type=Path, metavar="FILE|NAME",
                     help="model checkpoint (ours or the authors' PoseNet_*.pth) or installed model name "
                          "(default: the default model)")
    src.add_argument("--oracle-model", action="store_true",
                     help="use the encoded ground truth of each image as the network output (upper bound)")
    parser.add_argument("--arch", help="architecture of an authors' checkpoint (e.g. hourglass104)")
    parser.add_argument("--annotations", type=Path, required=True, help="COCO-style person keypoints JSON")
    parser.add_argument("--images", type=Path, required=True, help="folder with the images of --annotations")
    parser.add_argument("--dataset", choices=("coco", "crowdpose"), default="coco",
                        help="keypoint layout and protocol (coco: pycocotools; crowdpose: official protocol)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for results.json and summary.json")
    g = parser.add_argument_group("test-time geometry")
    g.add_argument("--flip", action="store_true", help="flip test: average with the mirrored input")
    g.add_argument("--fixed-height", action="store_true",
                   help="resize to --height, pad right/bottom (default: long edge with centre padding)")
    g.add_argument("--long-edge", type=long_edge, default=None,
                   help="long edge in pixels, 32 to 4096 (default: the model's own, from its codec; 640 for the "
                        "oracle)")
    g.add_argument("--height", type=long_edge, default=None,
                   help="height for --fixed-height, 32 to 4096 (default 640)")
    g.add_argument("--multiple", type=int, default=None,
                   help="pad canvases to a multiple of this (default: the network's input multiple, 128 for "
                        "Hourglass-104 and the oracle)")
    d = parser.add_argument_group("decoder (defaults: the model's codec; core.decoder.DecoderConfig for the oracle "
                                  "and files without one)")
    d.add_argument("--topk", type=at_least(1), default=None, help="keypoint candidates per channel (paper: 32)")
    d.add_argument("--threshold", type=fraction, default=None, help="heatmap peak threshold, in (0, 1]")
    d.add_argument("--dist-max", type=positive, default=None,
                   help="limb acceptance distance in input px, > 0 (paper: 40)")
    d.add_argument("--person-threshold", type=float, default=None, help="drop people scoring below this")
    d.add_argument("--skeleton", default=None,
                   help="skeleton for --oracle-model, or a part of a checkpoint's to decode through (default: its own)")
    r = parser.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size canvases)")
    r.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (0 = in-process)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    r.add_argument("--backend", default="torch", choices=_backends(),
                   help="network runtime (default torch): onnx, openvino, onnx-int8, openvino-int8 (CPU), auto")
    r.add_argument("--limit", type=int, default=None, help="only the first N images of the file")
    r.add_argument("--split", default=None, help="only images whose 'split' field is this (e.g. LSPET's val)")
    r.add_argument("--test-dev", action="store_true",
                   help="no ground truth (COCO test-dev image list): write results.json for the server, skip AP")
    r.add_argument("--grouping-bound", action="store_true",
                   help="COCO: also count the people a perfect grouping of the network's keypoint candidates "
                        "would find (the network's share of the misses against the decoder's)")
    r.add_argument("--draw-misses", type=Path, metavar="DIR",
                   help="COCO: one picture per image with an annotated person the model misses (OKS < 0.5): its "
                        "people and, in red, the missed ones")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def _backend_cache() -> Path:
    from app.engine import CACHE
    from app.model_store import store_dir

    return store_dir() / CACHE


def _check_options(args: argparse.Namespace) -> None:
    """What the runner would only find at the end (the output folders) or with a traceback (an unknown skeleton
    of the oracle), checked first."""
    if args.oracle_model:
        check_skeleton(args.dataset, args.skeleton)
    check_output_folder("--out", args.out)
    if args.draw_misses:
        check_output_folder("--draw-misses", args.draw_misses)


def run(args: argparse.Namespace) -> int:
    from eval.evaluate import format_found_table, format_metrics_table
    from eval.runner import EvalOptions, format_timing, run_evaluation, summary_line

    _check_options(args)
    checkpoint, arch = args.checkpoint, args.arch
    if not args.oracle_model:  # a file, an installed model's name, or the default model
        from app.model_store import choose_model

        choice = choose_model(None if checkpoint is None else str(checkpoint))
        if checkpoint is not None:  # eval's option is --checkpoint (--model is its alias)
            choice = replace(choice, reason=choice.reason.replace("--model", "--checkpoint"))
        print(f"gopose eval: model {choice.describe()}", file=sys.stderr, flush=True)
        checkpoint, arch = Path(choice.path), arch or choice.arch
    opts = EvalOptions(
        annotations=args.annotations, images=args.images, out=args.out, dataset=args.dataset,
        checkpoint=checkpoint, arch=arch, oracle_model=args.oracle_model, skeleton=args.skeleton,
        flip=args.flip, fixed_height=args.fixed_height, long_edge=args.long_edge, height=args.height,
        multiple=args.multiple, topk=args.topk, threshold=args.threshold, dist_max=args.dist_max,
        person_threshold=args.person_threshold, batch_size=args.batch_size, workers=args.workers,
        device=args.device, amp=args.amp, limit=args.limit, split=args.split, test_dev=args.test_dev,
        backend=args.backend, cache_dir=_backend_cache(), grouping_bound=args.grouping_bound,
        draw_misses=args.draw_misses,
    )
    result = run_evaluation(opts, progress=not args.no_progress)
    s = result.summary
    source = "oracle (encoded ground truth)" if args.oracle_model else str(checkpoint)
    backend = (s.get("checkpoint") or {}).get("backend", "torch")
    print(f"{args.dataset} evaluation of {source} on {s['n_images']} images ({s['device']}, backend {backend})")
    if s["metrics"] is not None:
        print(format_metrics_table(s["metrics"]))
        if s.get("found"):
            print(format_found_table(s["found"]))
        if args.draw_misses:
            print(f"pictures of the {s['misses_drawn']} images with missed people in {args.draw_misses}")
    else:
        print(f"test-dev: {s['n_results']} results written for submission (no ground truth, no AP)")
    print(format_timing(s["timing"], s["n_images"]))
    print(f"wrote {opts.out / 'results.json'} and {opts.out / 'summary.json'}")
    print(json.dumps(summary_line(s)))
    return 0
