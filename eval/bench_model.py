"""``gopose bench model``: forward-pass time of a network (median over runs), parameters and GFLOPs.

Prints one row per precision (the first is the headline), ratios against it, then, last, one JSON line
with ``ms_median``, ``params_m`` and ``gflops`` (2 x MACs of conv/linear layers, see models/profile.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

HELP = "network forward-pass median (ms), parameters and GFLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.factory import arch_names
    parser.add_argument("--arch", default="realtime", choices=arch_names(), help="architecture (default realtime)")
    parser.add_argument("--size", type=int, default=320, help="square input size (default 320)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per configuration (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--precision", default=None,
                        help="comma list of fp32,fp16,bf16 (default fp32 on CPU, fp32,fp16,bf16 on CUDA)")
    parser.add_argument("--no-fuse", action="store_true", help="time the unfused model (BN layers kept)")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="memory format (auto: channels-last when fused, the inference default)")
    parser.add_argument("--spec", default="coco", choices=["coco", "crowdpose"], help="keypoint spec (default coco)")


def _time_interleaved(fns: list, runs: int, warmup: int, sync) -> list[list[float]]:
    """Time each function ``runs`` times, round-robin, so load changes hit every configuration alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            sync()
            out.append((time.perf_counter() - t0) * 1000.0)
    return times


def run(args: argparse.Namespace) -> int:
    import torch

    from core.errors import InputError
    from models.factory import build_model, make_config
    from models.precision import InferenceModel
    from models.profile import count_macs

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {args.device}: CUDA is not available on this machine")
    model = build_model(make_config(args.arch, args.spec)).eval()
    if args.size % model.input_multiple:
        raise InputError(f"--size {args.size} must be a multiple of {model.input_multiple} for {args.arch}")
    precisions = (args.precision.split(",") if args.precision
                  else (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"]))
    params_m = model.n_parameters() / 1e6
    with torch.device("meta"):  # shapes-only twin for counting MACs without running the real net
        meta_model = build_model(make_config(args.arch, args.spec))
    gflops = 2.0 * count_macs(meta_model, args.size, args.size) / 1e9
    channels_last = None if args.channels_last == "auto" else args.channels_last == "on"
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    x = torch.randn(args.batch, 3, args.size, args.size)

    print(f"{args.arch} {args.size}x{args.size} batch {args.batch} on {device} "
          f"({torch.get_num_threads()} CPU threads), {params_m:.2f} M params, {gflops:.2f} GFLOPs/image")
    print(f"{'precision':<10}{'median ms':>11}{'p10':>9}{'p90':>9}{'images/s':>10}{'ratio':>8}")
    xd = x.to(device)
    nets = [InferenceModel(model, device, p, channels_last=channels_last, fuse=not args.no_fuse) for p in precisions]
    all_times = _time_interleaved([lambda n=n: n(xd) for n in nets], args.runs, args.warmup, sync)
    rows = []
    for precision, times in zip(precisions, all_times):
        q = statistics.quantiles(times, n=10, method="inclusive") if len(times) >= 2 else [times[0]] * 9
        med = statistics.median(times)
        rows.append({"precision": precision, "ms_median": round(med, 3), "ms_p10": round(q[0], 3),
                     "ms_p90": round(q[-1], 3), "images_per_s": round(1000.0 * args.batch / med, 2)})
        ratio = med / rows[0]["ms_median"]
        print(f"{precision:<10}{med:>11.2f}{q[0]:>9.2f}{q[-1]:>9.2f}{rows[-1]['images_per_s']:>10.1f}{ratio:>8.2f}")
    head = rows[0]
    print(json.dumps({"bench": "model", "arch": args.arch, "size": args.size, "batch": args.batch,
                      "device": str(device), "threads": torch.get_num_threads(), "fused": not args.no_fuse,
                      "precision": head["precision"], "ms_median": head["ms_median"],
                      "images_per_s": head["images_per_s"], "params_m": round(params_m, 3),
                      "gflops": round(gflops, 4), "runs": args.runs, "rows": rows}))
    return 0
