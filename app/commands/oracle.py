"""``gopose oracle``: the encode -> decode upper bound of the method on an annotation file."""
from __future__ import annotations

import argparse
import json

from app.commands.options import at_least, fraction, long_edge, positive

HELP = "upper bound: encode ground truth to stride-4 maps, decode with the real decoder, evaluate"


def check_skeleton(dataset: str, skeleton: str | None) -> None:
    """``InputError`` unless ``skeleton`` (None: the default) is one of ``dataset``'s skeletons."""
    from core.errors import InputError
    from core.keypoints import get_spec

    spec = get_spec(dataset)
    if skeleton is not None and skeleton not in spec.skeletons:
        raise InputError(f"--skeleton {skeleton!r} is not a {spec.name} skeleton; choose from {sorted(spec.skeletons)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO-style person keypoints JSON")
    parser.add_argument("--dataset", choices=("coco", "crowdpose"), default="coco")
    parser.add_argument("--long-edge", type=long_edge, default=640,
                        help="input long edge (centre padded square), 32 to 4096")
    parser.add_argument("--skeleton", default=None, help="skeleton name (coco: default, downup, redundant, "
                        "dense, all; crowdpose: default, dense)")
    parser.add_argument("--topk", type=at_least(1), default=32, help="keypoint candidates per channel (default 32)")
    parser.add_argument("--threshold", type=fraction, default=0.04, help="heatmap peak threshold in (0, 1] "
                        "(default 0.04)")
    parser.add_argument("--dist-max", type=positive, default=40.0,
                        help="limb acceptance distance in input px, > 0 (default 40)")
    parser.add_argument("--peak-mode", choices=("stride4", "upsample"), default="stride4",
                        help="stride4 (ours) or upsample (the paper's: maps upsampled before peak finding)")
    parser.add_argument("--limit", type=at_least(1), default=None, help="only the first N images")


def run(args: argparse.Namespace) -> int:
    from core.decoder import DecoderConfig
    from core.keypoints import get_spec
    from core.io.annotations import load_keypoint_annotations
    from eval.evaluate import format_metrics_table
    from eval.oracle import run_oracle

    spec = get_spec(args.dataset)
    check_skeleton(args.dataset, args.skeleton)
    data = load_keypoint_annotations(args.annotations, spec)
    ids = data.image_ids[: args.limit] if args.limit else None
    cfg = DecoderConfig(topk=args.topk, threshold=args.threshold, dist_max=args.dist_max, peak_mode=args.peak_mode)
    m = run_oracle(data, args.dataset, args.long_edge, args.skeleton, ids, cfg)
    print(f"oracle upper bound: {args.annotations} ({m['images']} images, {args.dataset}, skeleton "
          f"{m['skeleton']} [{m['limbs']} limbs], long edge {args.long_edge}, peaks {args.peak_mode})")
    print(format_metrics_table(m))
    print(f"decode per image: median {m['decode_ms_median']:.2f} ms, p90 {m['decode_ms_p90']:.2f} ms; "
          f"encode median {m['encode_ms_median']:.2f} ms")
    summary = {k: v for k, v in m.items() if k != "stats"}
    print(json.dumps(summary))
    return 0
