"""``gopose bench loader``: training samples per second (augmented crop + encoder targets) per DataLoader worker.

Builds ``train.datasets.PoseDataset`` on the shared COCO images (``coco/val2017_subset`` by default) with the
full augmentation, and measures:

samples/s of a real ``DataLoader`` (decode, warp, jitter, ignore mask, encode, collate into batches, hand-over
from the worker processes) with ``--workers`` N (0 = in this process) over ``--batches`` batches, each DataLoader's
first batch (its workers' start; one per epoch) untimed, median of ``--repeats`` runs, and that divided by N
(samples/s per worker). ``--train-step ARCH`` also times whole training steps of a network on those crops.

Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HELP = "training data loading: samples/s per worker for augmented crops with targets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least

    parser.add_argument("--annotations", type=Path, default=None,
                        help="keypoint JSON (default: shared coco/val2017_subset/annotations.json)")
    parser.add_argument("--images", type=Path, default=None, help="image folder (default: beside --annotations)")
    parser.add_argument("--dataset", choices=("coco", "crowdpose"), default="coco")
    parser.add_argument("--input-size", type=at_least(32), default=512, help="crop side (default 512)")
    parser.add_argument("--batch-size", type=at_least(1), default=8)
    parser.add_argument("--workers", type=at_least(0), nargs="+", default=[0, 1, 2],
                        help="worker counts to measure (0 = in-process, per-sample timing)")
    parser.add_argument("--batches", type=at_least(1), default=12, help="batches timed per DataLoader run")
    parser.add_argument("--repeats", type=at_least(1), default=3, help="DataLoader runs per worker count (median)")
    parser.add_argument("--no-augmentation", action="store_true", help="fit the image, no random warp / jitter")
    parser.add_argument("--train-step", default=None, metavar="ARCH",
                        help="also time full training steps (forward, loss, backward, Adam) of this network, e.g. "
                             "realtime, on --device with --batch-size crops of --input-size")
    parser.add_argument("--steps", type=at_least(1), default=5, help="timed training steps (after one warm-up step)")
    parser.add_argument("--device", default="cpu", help="device for --train-step (cpu, cuda)")
    parser.add_argument("--amp", default="none", choices=("none", "fp16", "bf16", "auto"),
                        help="autocast for --train-step (auto: bf16 where the hardware has it)")


def _dataset(args: argparse.Namespace):
    from core.contract import PoseContract
    from core.keypoints import get_spec
    from eval.shared_data import shared_path
    from train.config import AugmentationConfig
    from train.datasets import PoseDataset

    ann = args.annotations or shared_path("coco/val2017_subset/annotations.json")
    images = args.images or Path(ann).parent / "images"
    contract = PoseContract(get_spec(args.dataset))
    aug = AugmentationConfig(enabled=not args.no_augmentation)
    return PoseDataset(ann, images, contract, input_size=args.input_size, augmentation=aug, seed=0)


def _train_step(args: argparse.Namespace) -> dict:
    """Median wall time of ``Trainer.train_step`` (forward, loss, backward, optimizer) on real batches."""
    import tempfile

    import torch

    from train.config import load_config
    from train.trainer import Trainer

    from eval.shared_data import shared_path

    ann = args.annotations or shared_path("coco/train2017_mini/annotations.json")
    sets = [f"model.arch={args.train_step}", f"data.input_size={args.input_size}",
            f"data.batch_size={args.batch_size}", "data.workers=0", f"run.device={args.device}",
            f"run.amp={args.amp}", "run.progress=false", "run.tensorboard=false", "run.val_every_epochs=0"]
    sets += [f"data.train_annotations={ann}", f"data.train_images={args.images or Path(ann).parent / 'images'}"]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(load_config(None, sets), run_dir=tmp)
        trainer.set_train_mode()
        trainer.dataset.set_epoch(0)
        batches = [trainer.dataset[i % len(trainer.dataset)] for i in range(args.batch_size)]
        batch = {k: torch.stack([b[k] for b in batches]) if torch.is_tensor(batches[0][k])
                 else torch.tensor([b[k] for b in batches]) for k in batches[0]}
        times = []
        for i in range(args.steps + 1):
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.train_step(batch)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
        ms = float(np.median(times) * 1e3)
        return {"arch": args.train_step, "device": str(trainer.device), "amp": trainer.amp, "step_ms_median": ms,
                "images_per_s": args.batch_size / ms * 1e3, "threads": torch.get_num_threads()}


def loader_counts(ds, workers: int, batches: int, batch_size: int, repeat: int) -> tuple[list[int], float]:
    """``batches`` batches of real ``DataLoader``s: the samples timed per DataLoader and the seconds timed. Each
    DataLoader's first batch (its workers' start) is not timed: when the timed batches need another epoch, the next
    DataLoader's start-up is left out like the first one's."""
    from core.errors import InputError
    from train.loader import ResumableSampler, make_loader

    if len(ds) < 2 * batch_size:  # an epoch must give a warm-up batch and a timed one
        raise InputError(f"--batch-size {batch_size} needs at least {2 * batch_size} training images, "
                         f"{ds.source} has {len(ds)}")
    sampler = ResumableSampler(ds, shuffle=True, seed=repeat)
    counts: list[int] = []
    seconds, timed, epoch = 0.0, 0, repeat * 1000
    while timed < batches:
        sampler.set_position(epoch)
        ds.set_epoch(epoch)
        t0, n = None, 0
        for batch in make_loader(ds, sampler, batch_size, workers, seed=0, epoch=epoch, drop_last=True):
            if t0 is None:
                t0 = time.perf_counter()
                continue
            n += len(batch["image"])
            timed += 1
            if timed >= batches:
                break
        seconds += time.perf_counter() - t0
        counts.append(n)
        epoch += 1
    return counts, seconds


def run(args: argparse.Namespace) -> int:
    import torch

    ds = _dataset(args)
    rows = []
    for workers in args.workers:
        rates = []
        for r in range(args.repeats):
            counts, seconds = loader_counts(ds, workers, args.batches, args.batch_size, r)
            rates.append(sum(counts) / seconds)
        rate = float(np.median(rates))
        rows.append({"workers": workers, "samples_per_s": rate, "per_worker": rate / max(workers, 1),
                     "ms_per_sample": 1e3 / rate})
    step_row = _train_step(args) if args.train_step else None
    base = rows[0]["samples_per_s"] if rows else 1.0
    print(f"training samples: {len(ds)} images of {ds.source}, {args.input_size}x{args.input_size} crops, "
          f"augmentation {'off' if args.no_augmentation else 'on'}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'workers':>7}  {'samples/s':>9}  {'per worker':>10}  {'ms/sample':>9}  {'vs first':>8}")
    for r in rows:
        print(f"{r['workers']:>7}  {r['samples_per_s']:9.1f}  {r['per_worker']:10.1f}  {r['ms_per_sample']:9.2f}  "
              f"{r['samples_per_s'] / base:8.2f}")
    if step_row is not None:
        print(f"train step {step_row['arch']} on {step_row['device']} (amp {step_row['amp']}), batch "
              f"{args.batch_size} x {args.input_size}px: {step_row['step_ms_median']:.0f} ms/step median, "
              f"{step_row['images_per_s']:.2f} images/s")
    rounded = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    print(json.dumps({"bench": "loader", "train_step": step_row, "input_size": args.input_size,
                      "batch_size": args.batch_size, "augmentation": not args.no_augmentation, "rows": rounded,
                      "cpu_cores": os.cpu_count(), "host": platform.node()}))
    return 0
