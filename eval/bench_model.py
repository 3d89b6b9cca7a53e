"""``gopose bench model``: forward-pass time of a network per backend and precision, parameters and GFLOPs.

Prints one table (``eval/backend_table.py``): a row per backend (PyTorch: per precision; the first row is the
headline) with input size, median ms per frame, speed-up against the first row, frames/s end to end (letterbox +
network + decoder on ``--video`` frames), AP on ``coco/val2017_subset`` (with ``--model``) and achieved GFLOP/s
against this CPU's peak (``eval/cpu_peak.py``); then, last, one JSON line with ``ms_median``, ``params_m``,
``gflops`` (2 x MACs of conv/linear layers, see models/profile.py) and the rows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "network forward-pass median (ms), parameters and GFLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least
    from models.factory import arch_names

    parser.add_argument("--arch", default="realtime", choices=arch_names(), help="architecture (default realtime)")
    parser.add_argument("--size", type=at_least(1), default=320, help="square input size (default 320)")
    parser.add_argument("--batch", type=at_least(1), default=1, help="batch size (default 1)")
    parser.add_argument("--runs", type=at_least(1), default=30, help="timed runs per configuration (default 30)")
    parser.add_argument("--warmup", type=at_least(0), default=3, help="untimed warm-up runs (default 3)")
    parser.add_argument("--threads", type=at_least(1), default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--precision", default=None,
                        help="comma list of fp32,fp16,bf16 (default fp32 on CPU, fp32,fp16,bf16 on CUDA)")
    parser.add_argument("--no-fuse", action="store_true", help="time the unfused model (BN layers kept)")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="memory format (auto: channels-last when fused, the inference default)")
    parser.add_argument("--spec", default="coco", choices=["coco", "crowdpose"], help="keypoint spec (default coco)")
    parser.add_argument("--model", default=None, metavar="NAME|FILE",
                        help="checkpoint file or installed model (default: random --arch weights)")
    parser.add_argument("--video", default=None, help="video for the end-to-end frames/s (default: the shared "
                        "pedestrians_480x360.mp4)")
    parser.add_argument("--frames", type=at_least(0), default=30,
                        help="video frames timed end to end per row (0: none)")
    from eval.backend_table import add_backend_arguments
    add_backend_arguments(parser, "torch")


def run(args: argparse.Namespace) -> int:
    import torch

    from core.errors import InputError
    from eval import backend_table as bt
    from eval.cpu_peak import cpu_peak, measured_gemm_gflops
    from eval.runner import resolve_device
    from eval.shared_data import shared_path
    from models.backends import parse_list
    from models.factory import build_model, make_config
    from models.profile import count_macs

    if args.video and not Path(args.video).is_file():
        raise InputError(f"--video {args.video} does not exist or is not a file")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model_path = None
    if args.model:
        from app.model_store import resolve_model
        from models.checkpoint import load_checkpoint

        model_path, stored_arch = resolve_model(args.model)  # a checkpoint file or an installed model's name
        model, _ = load_checkpoint(model_path, stored_arch, map_location="cpu")
        model.eval()
    else:
        model = build_model(make_config(args.arch, args.spec)).eval()
    arch = getattr(model, "arch", args.arch)
    if args.size % model.input_multiple:
        raise InputError(f"--size {args.size} must be a multiple of {model.input_multiple} for {arch}")
    precisions = (args.precision.split(",") if args.precision
                  else (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"]))
    params_m = model.n_parameters() / 1e6
    with torch.device("meta"):  # shapes-only twin for counting MACs without running the real net
        meta_model = build_model(model.config)
    gflops = 2.0 * count_macs(meta_model, args.size, args.size) / 1e9
    channels_last = None if args.channels_last == "auto" else args.channels_last == "on"
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rows = bt.make_rows(model, parse_list(args.backends), args.size, torch_precisions=precisions, device=device,
                        threads=args.threads, cache=args.cache, calibration=args.calibration,
                        channels_last=channels_last, fuse=not args.no_fuse)
    peak = cpu_peak(args.threads or torch.get_num_threads()) if device.type == "cpu" else None
    gemm = measured_gemm_gflops() if device.type == "cpu" else None
    bt.time_networks(rows, torch.randn(args.batch, 3, args.size, args.size).to(device), args.runs, args.warmup, sync)
    video = args.video or str(shared_path("videos/pedestrians_480x360.mp4"))
    if args.frames > 0 and args.batch == 1 and Path(video).is_file():
        bt.time_e2e(model, rows, video, args.frames)
    if args.ap if args.ap is not None else bool(args.model):
        bt.measure_ap(model, rows, args.cache, args.calibration, args.ap_limit)
    table = [r.to_dict(gflops * args.batch, peak, args.batch) for r in rows]
    print(f"{arch} {args.size}x{args.size} batch {args.batch} on {device} ({torch.get_num_threads()} torch threads), "
          f"{params_m:.2f} M params, {gflops:.2f} GFLOPs/image" + (f", {model_path}" if model_path else ""))
    for line in bt.format_table(table, peak, batch=args.batch):
        print(line)
    if gemm is not None:
        print(f"measured fp32 matrix product (1024^3, torch): {gemm:.0f} GFLOP/s")
    head = table[0]
    print(json.dumps({"bench": "model", "arch": arch, "size": args.size, "batch": args.batch,
                      "device": str(device), "threads": torch.get_num_threads(), "fused": not args.no_fuse,
                      "backend": head["backend"], "precision": head["precision"], "ms_median": head["ms_median"],
                      "images_per_s": head["images_per_s"], "params_m": round(params_m, 3),
                      "gflops": round(gflops, 4), "runs": args.runs,
                      "peak_fp32_gflops": peak and round(peak.fp32_gflops, 1),
                      "peak_int8_gops": peak and round(peak.int8_gops, 1), "measured_gemm_gflops": gemm and round(gemm, 1),
                      "rows": table}))
    return 0
