"""``gopose train``: train a pose network from a YAML config (one process, or many under torchrun)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

HELP = "train a network from a YAML config (--set section.key=value overrides; --resume RUN_DIR); torchrun-ready"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML training config (resources/configs/*.yaml); default: every option's default, "
                             "or RUN_DIR/config.yaml with --resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config field, e.g. --set optim.lr=2e-4 --set data.batch_size=4 "
                             "(repeatable)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue the newest checkpoint of this run folder exactly where it stopped")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="write the run here, a folder without another run's checkpoints (default: "
                             "run.output_dir/run.name or a time stamp); not with --resume, which continues in RUN_DIR")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def demo_data(cfg):
    """A config without training data trains on the shared mini set (COCO train2017_mini or CrowdPose mini): a
    demo default of the command line, never of the trainer."""
    from eval.shared_data import shared_path

    demo = ("crowdpose/mini/test_crowdpose.json", "crowdpose/mini") if cfg.data.dataset == "crowdpose" else \
        ("coco/train2017_mini/annotations.json", "coco/train2017_mini/images")
    cfg.data.train_annotations, cfg.data.train_images = (str(shared_path(p)) for p in demo)
    logging.getLogger(__name__).info("no training data in the config: the demo set %s", cfg.data.train_annotations)
    return cfg


def run(args: argparse.Namespace) -> int:
    from core.errors import InputError
    from train.config import dump_config, load_config
    from train.distributed import cleanup, env_world

    config_path = args.config
    if args.resume is not None and args.run_dir is not None and args.run_dir.resolve() != args.resume.resolve():
        raise InputError(f"--run-dir {args.run_dir} cannot be combined with --resume {args.resume}: a resumed run "
                         f"continues in its own folder")
    if args.resume is not None and config_path is None:
        config_path = args.resume / "config.yaml"
        if not args.resume.is_dir():
            raise InputError(f"run folder {args.resume} does not exist")
        if not config_path.is_file():
            raise InputError(f"run folder {args.resume} has no config.yaml (not a gopose training run?)")
    cfg = load_config(config_path, args.overrides)
    if not cfg.data.train_annotations and not cfg.data.sources:
        cfg = demo_data(cfg)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    rank, _, _ = env_world()
    if rank != 0:  # other ranks stay quiet below warnings
        logging.getLogger().setLevel(logging.WARNING)
    elif logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    from train.trainer import Trainer

    if cfg.run.threads > 0:  # the process's thread count is the command's choice (the Trainer leaves it alone)
        import torch

        torch.set_num_threads(cfg.run.threads)
    try:
        trainer = Trainer(cfg, run_dir=args.run_dir, resume=args.resume)
        summary = trainer.train()
    finally:
        cleanup()
    if rank == 0:
        print(json.dumps({k: summary[k] for k in ("run_dir", "step", "epoch", "stopped", "best_ap", "losses",
                                                  "seconds", "skipped_images")}))
    return 0
