"""``gopose bench encoder``: target encoding time for one square training sample with a real image's people."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

HELP = "target encoding time (median ms) for one training sample with the persons of each COCO image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least
    from eval.shared_data import shared_path

    parser.add_argument("--annotations", default=str(shared_path("coco/person_keypoints_val2017_538img.json")))
    parser.add_argument("--dataset", choices=("coco", "crowdpose"), default="coco")
    parser.add_argument("--size", type=at_least(32), default=512, help="square input side")
    parser.add_argument("--skeleton", default=None)
    parser.add_argument("--repeats", type=at_least(1), default=5)


def run(args: argparse.Namespace) -> int:
    from core.geometry import long_edge_transform
    from eval.oracle import build_oracle

    oracle = build_oracle(args.annotations, args.dataset, args.skeleton)
    data, contract = oracle.dataset, oracle.contract
    samples = []
    for img in data:
        t = long_edge_transform(img.width, img.height, args.size, multiple=4)
        kps, scales = oracle.people(img.id, t)
        if len(kps):
            samples.append((kps, scales, t.dst_size))
    enc = oracle.encoder
    enc.encode(samples[0][0], samples[0][2], person_scales=samples[0][1])  # warm-up
    times, people = [], []
    for kps, scales, size in samples:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            enc.encode(kps, size, person_scales=scales)
            times.append((time.perf_counter() - t0) * 1e3)
            people.append(len(kps))
    times, people = np.asarray(times), np.asarray(people)
    print(f"encoder benchmark: {len(samples)} images with people, {args.size}x{args.size} input, "
          f"{contract.n_limbs} limbs, {args.repeats} repeats")
    print(f"{'people':<12}{'samples':>8}{'median ms':>11}{'p90 ms':>9}")
    for lo, hi in ((1, 1), (2, 4), (5, 9), (10, 1000)):
        sel = (people >= lo) & (people <= hi)
        if sel.any():
            label = f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi < 1000 else f">={lo}")
            print(f"{label:<12}{sel.sum() // args.repeats:>8}{np.median(times[sel]):>11.3f}"
                  f"{np.percentile(times[sel], 90):>9.3f}")
    print(f"{'all':<12}{len(samples):>8}{np.median(times):>11.3f}{np.percentile(times, 90):>9.3f}")
    print(json.dumps({"encode_ms_median": float(np.median(times)), "encode_ms_p90": float(np.percentile(times, 90)),
                      "samples": len(samples), "size": args.size}))
    return 0
