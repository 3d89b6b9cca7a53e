"""``gopose bench decoder``: decoding speed and accuracy on encoded ground truth of real COCO annotations.

Times ``core.decoder.decode`` from stride-4 maps to poses in original image coordinates (the inverse transform
included), per image, single process, and compares with the paper's way of finding peaks (maps upsampled by the
stride first), on clean maps and on maps damaged like a network's (blur, lower peaks, noise, offset noise).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

HELP = "decoder speed (median ms/image) and upper-bound AP, ours vs the paper's upsampling, clean and damaged maps"

DAMAGE = {"clean": None,
          "mild": {"noise": 0.02, "blur": 0.8, "peak_scale": 0.7, "offset_noise": 2.0},
          "heavy": {"noise": 0.05, "blur": 1.5, "peak_scale": 0.5, "offset_noise": 4.0},
          "offsets6": {"offset_noise": 6.0}}

#: grouping variants compared by ``--compare`` (decoder fields over the paper's settings)
_PAPER = {"limb_norm": "distance", "order": "skeleton", "person_score": "coverage", "single_radius": 0.0}
VARIANTS = {
    "paper rule (d / candidate distance)": _PAPER,
    "d / constant 16 px": {**_PAPER, "limb_norm": "constant", "single_radius": 8.0},
    "d / predicted length": {**_PAPER, "limb_norm": "predicted", "single_radius": 8.0},
    "d / predicted, global score order": {"person_score": "coverage"},
    "d / predicted, score x link agreement": {"order": "skeleton"},
    "d / constant, global order, linked score": {"limb_norm": "constant"},
    "d / predicted, global order, linked score (default)": {},
}


def variant_fields(name: str) -> dict:
    """Every grouping field of variant ``name``, the library defaults where it names none: applied over a model's
    stored decoder it means what its label says (a model storing the coverage score is not "linked score")."""
    from core.decoder import DecoderConfig

    defaults = DecoderConfig()
    grouping = {k for fields in VARIANTS.values() for k in fields}
    return {**{k: getattr(defaults, k) for k in sorted(grouping)}, **VARIANTS[name]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least
    from eval.shared_data import shared_path

    parser.add_argument("--annotations", default=str(shared_path("coco/person_keypoints_val2017_538img.json")))
    parser.add_argument("--dataset", choices=("coco", "crowdpose"), default="coco")
    parser.add_argument("--long-edge", type=at_least(32), default=640)
    parser.add_argument("--skeleton", default=None)
    parser.add_argument("--repeats", type=at_least(1), default=3, help="timed decodes per image (median over all)")
    parser.add_argument("--paper-images", type=at_least(1), default=100,
                        help="images for the slower paper-style (upsampling) runs")
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compare", action="store_true",
                        help="instead: AP of the grouping variants (limb-score normalisation, link order) on clean "
                             "and damaged maps, all images and the crowded ones")
    parser.add_argument("--crowded", type=at_least(1), default=60, help="--compare: the N images with the most people")


def _time_decode(maps, contract, cfg, repeats: int) -> list[float]:
    from core.decoder import decode

    times = []
    decode(maps[0][0], maps[0][1], contract, cfg)  # warm-up
    for hm, off, transform in maps:
        for _ in range(repeats):
            t0 = time.perf_counter()
            decode(hm, off, contract, cfg)[0].map_points(transform.inverse)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def compare(args: argparse.Namespace) -> int:
    """AP of each grouping variant on the same (damaged) maps: all images and the most crowded ones."""
    from eval.oracle import PAPER_DECODER, build_oracle, run_oracle

    oracle = build_oracle(args.annotations, args.dataset, args.skeleton)
    data = oracle.dataset
    crowded = sorted(data.image_ids, key=lambda i: -data.image(i).n_people)[: args.crowded]
    sets = {"all": None, f"crowded{len(crowded)}": crowded}
    rows = []
    for set_name, ids in sets.items():
        for dmg_name, dmg in DAMAGE.items():
            for name, fields in VARIANTS.items():
                m = run_oracle(data, args.dataset, args.long_edge, args.skeleton, ids,
                               PAPER_DECODER.with_(**fields), damage=dmg)
                rows.append({"images": set_name, "maps": dmg_name, "variant": name, "AP": m["AP"],
                             "AP50": m["AP50"], "AP75": m["AP75"]})
                print(f"{set_name:<11}{dmg_name:<9}{name:<40}{m['AP']:>8.4f}{m['AP50']:>8.4f}{m['AP75']:>8.4f}",
                      flush=True)
    print(json.dumps({"bench": "decoder-variants", "annotations": str(args.annotations), "rows": rows}))
    return 0


def run(args: argparse.Namespace) -> int:
    from core.geometry import long_edge_transform
    from eval.oracle import PAPER_DECODER, build_oracle, run_oracle

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        return compare(args)
    oracle = build_oracle(args.annotations, args.dataset, args.skeleton)
    data, contract = oracle.dataset, oracle.contract
    maps = []
    for img in data:
        t = long_edge_transform(img.width, img.height, args.long_edge)
        kps, scales = oracle.people(img.id, t)
        tg = oracle.encoder.encode(kps, t.dst_size, person_scales=scales)
        maps.append((torch.from_numpy(tg.heatmaps[None]), torch.from_numpy(tg.offsets[None]), t))
    few = maps[: args.paper_images]
    ours = _time_decode(maps, contract, PAPER_DECODER, args.repeats)
    ours_few = _time_decode(few, contract, PAPER_DECODER, 1)
    paper_few = _time_decode(few, contract, PAPER_DECODER.with_(peak_mode="upsample"), 1)
    full = run_oracle(data, args.dataset, args.long_edge, args.skeleton, None, PAPER_DECODER)
    rows = [{"maps": "clean", "peaks": "stride4", "images": full["images"], "AP": full["AP"], "AP50": full["AP50"]}]
    paper_ids = data.image_ids[: args.paper_images]
    for name, dmg in DAMAGE.items():  # both peak modes on the same images and the same damaged maps
        for mode in ("stride4", "upsample"):
            m = run_oracle(data, args.dataset, args.long_edge, args.skeleton, paper_ids,
                           PAPER_DECODER.with_(peak_mode=mode), damage=dmg)
            rows.append({"maps": name, "peaks": mode, "images": m["images"], "AP": m["AP"], "AP50": m["AP50"]})
    print(f"decoder benchmark: {args.annotations}, {len(maps)} images, long edge {args.long_edge}, skeleton "
          f"{contract.skeleton_name} ({contract.n_limbs} limbs), torch threads {torch.get_num_threads()}")
    print(f"{'decoder':<34}{'images':>8}{'median ms':>11}{'p90 ms':>9}")
    print(f"{'ours (stride-4 peaks)':<34}{len(maps):>8}{np.median(ours):>11.2f}{np.percentile(ours, 90):>9.2f}")
    print(f"{'ours, same images as paper-style':<34}{len(few):>8}{np.median(ours_few):>11.2f}"
          f"{np.percentile(ours_few, 90):>9.2f}")
    print(f"{'paper-style (upsample x4)':<34}{len(few):>8}{np.median(paper_few):>11.2f}"
          f"{np.percentile(paper_few, 90):>9.2f}")
    speedup = float(np.median(paper_few) / np.median(ours_few))
    print(f"speed-up over upsampling: {speedup:.1f}x")
    print(f"\n{'maps':<8}{'peaks':<10}{'images':>8}{'AP':>8}{'AP50':>8}")
    for r in rows:
        print(f"{r['maps']:<8}{r['peaks']:<10}{r['images']:>8}{r['AP']:>8.4f}{r['AP50']:>8.4f}")
    print(json.dumps({"decode_ms_median": float(np.median(ours)), "decode_ms_p90": float(np.percentile(ours, 90)),
                      "upsample_ms_median": float(np.median(paper_few)), "speedup_vs_upsample": speedup,
                      "AP": rows[0]["AP"], "accuracy": rows}))
    return 0
