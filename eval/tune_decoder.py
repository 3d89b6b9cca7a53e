"""Choose a trained network's skeleton, input size and decoder thresholds on tuning sets, never on evaluation sets.

    python -m eval.tune_decoder --checkpoint RUN/best.pt [--lspet-images 200]

Stage 1 decodes the network through each skeleton its output contains (a network trained on ``all`` holds
``default``, ``redundant`` and ``dense``) and keeps the best; stage 2 searches the input long edge and the keypoint
threshold for that skeleton; stage 3 compares the grouping variants of ``gopose bench decoder --compare`` (the
paper's limb score and order against ours) on the network's own output at the chosen setting, for the record;
each of its rows sets every grouping field the rows differ in, so a row means its label whatever the model stores.
The score of a setting is the mean COCO AP over the tuning sets: LSPET ``val`` (its first ``--lspet-images``
images) and ``coco/train2017_mini`` (multi-person COCO scenes; the network saw them in training, so they weigh
crowded scenes in, not generalisation). ``coco/val2017_subset`` is never looked at.
Prints one table row per setting and, last, one JSON line with the choice (the arguments for ``gopose models
package``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.errors import InputError
from eval.bench_decoder import VARIANTS, variant_fields

#: LSPET ``val`` images the tuning may look at: its first 200 (the rest are held out for reporting, docs/model_card.md)
LSPET_TUNING_IMAGES = 200


def tuning_sets(data: Path, lspet_images: int) -> list[dict[str, Any]]:
    """The two tuning sets as ``EvalOptions`` fields (LSPET ``val``: its first ``lspet_images``, at most
    ``LSPET_TUNING_IMAGES``)."""
    if not 1 <= lspet_images <= LSPET_TUNING_IMAGES:
        raise InputError(f"LSPET val images for tuning must be 1 to {LSPET_TUNING_IMAGES}, got {lspet_images}")
    return [{"name": "lspet_val", "annotations": data / "lspet" / "annotations.json",
             "images": data / "lspet" / "images", "split": "val", "limit": lspet_images},
            {"name": "coco_train2017_mini", "annotations": data / "coco" / "train2017_mini" / "annotations.json",
             "images": data / "coco" / "train2017_mini" / "images", "split": None, "limit": None}]


def score(model, sets: list[dict[str, Any]], skeleton: str, long_edge: int, threshold: float,
          workers: int, decoder: dict[str, Any] | None = None) -> dict[str, float]:
    """AP on each tuning set and their mean for one setting (the network is reused, not reloaded)."""
    from eval.runner import EvalOptions, run_evaluation

    aps = {}
    with tempfile.TemporaryDirectory(prefix="gopose-tune-") as tmp:
        for s in sets:
            opts = EvalOptions(annotations=s["annotations"], images=s["images"], out=Path(tmp) / s["name"],
                               dataset="coco", skeleton=skeleton, long_edge=long_edge, threshold=threshold,
                               split=s["split"], limit=s["limit"], workers=workers, device="cpu",
                               decoder=dict(decoder or {}))
            aps[s["name"]] = float(run_evaluation(opts, model=model).summary["metrics"]["AP"])
    aps["mean"] = sum(aps.values()) / len(sets)
    return aps


def _lspet_images(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= LSPET_TUNING_IMAGES:
        raise argparse.ArgumentTypeError(f"must be 1 to {LSPET_TUNING_IMAGES} (the tuning part of LSPET val; the "
                                         f"rest is held out for reporting), got {text}")
    return value


#: the smallest long edge ``gopose eval`` accepts (``eval.runner``)
MIN_LONG_EDGE = 16


def _numbers(text: str, kind: type) -> list:
    """A comma list of positive numbers (``--long-edges``, ``--thresholds``)."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a comma list of {kind.__name__} values, got {text!r}") from None
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return values


def _long_edges(text: str) -> list[int]:
    values = _numbers(text, int)
    if min(values) < MIN_LONG_EDGE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_LONG_EDGE} pixels, got {text!r}")
    return values


def _thresholds(text: str) -> list[float]:
    """Heatmap peak thresholds in (0, 1], as ``gopose eval --threshold`` takes them."""
    values = _numbers(text, float)
    if max(values) > 1:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    """Bad input (a missing checkpoint, an impossible option) is one line on stderr and exit status 2."""
    from eval.shared_data import shared_data_dir

    parser = argparse.ArgumentParser(prog="python -m eval.tune_decoder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", type=Path, default=shared_data_dir(), help="the shared data folder")
    parser.add_argument("--lspet-images", type=_lspet_images, default=LSPET_TUNING_IMAGES,
                        help=f"LSPET val images used: its first N, at most {LSPET_TUNING_IMAGES} (of 500)")
    parser.add_argument("--skeletons", default="default,redundant,dense,all")
    parser.add_argument("--long-edges", type=_long_edges, default="160,192,224,256,320,384")
    parser.add_argument("--thresholds", type=_thresholds, default="0.04,0.08,0.12,0.2")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        return tune(args)
    except InputError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def tune(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(args.checkpoint)
    sets = tuning_sets(args.data, args.lspet_images)
    trained = model.contract.skeleton_name
    skeletons = [s for s in args.skeletons.split(",") if s == trained or _contains(model, s)]
    if not skeletons:
        raise InputError(f"{args.checkpoint} ({trained}) holds none of the skeletons {args.skeletons}")
    base_edge, base_threshold = model.codec.long_edge, model.codec.decoder.threshold
    rows = []

    def run(stage: str, skeleton: str, long_edge: int, threshold: float, variant: str = "") -> dict[str, Any]:
        fields = variant_fields(variant) if variant else None
        row = {"stage": stage, "skeleton": skeleton, "long_edge": long_edge, "threshold": threshold,
               "variant": variant, **score(model, sets, skeleton, long_edge, threshold, args.workers, fields)}
        rows.append(row)
        print(f"{stage:<9}{skeleton:<11}{long_edge:>6}{threshold:>8.3f}"
              + "".join(f"{row[s['name']]:>22.4f}" for s in sets) + f"{row['mean']:>8.4f}  {variant}", flush=True)
        return row

    print(f"{'stage':<9}{'skeleton':<11}{'edge':>6}{'thresh':>8}" + "".join(f"{s['name']:>22}" for s in sets)
          + f"{'mean':>8}")
    best = max((run("skeleton", s, base_edge, base_threshold) for s in skeletons), key=lambda r: r["mean"])
    grid = itertools.product(args.long_edges, args.thresholds)
    for edge, threshold in grid:
        if (edge, threshold) != (base_edge, base_threshold):
            row = run("input", best["skeleton"], edge, threshold)
            best = max(best, row, key=lambda r: r["mean"])
    for variant in VARIANTS:
        run("grouping", best["skeleton"], best["long_edge"], best["threshold"], variant)
    print(json.dumps({"choice": {"skeleton": best["skeleton"], "long_edge": best["long_edge"],
                                 "threshold": best["threshold"]}, "tuning_AP": best, "rows": rows}))
    return 0


def _contains(model, skeleton: str) -> bool:
    try:
        model.contract.limb_indices(skeleton)
    except (KeyError, ValueError):
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
