"""The trainer: one process or many under torchrun (DDP), native AMP, Adam with warm-up and step/cosine decay,
atomic checkpoints that resume exactly, periodic validation through the eval package, JSON-lines logs, and an
optional moving average of the weights (``optim.ema_decay``) that checkpoints store, validation scores and
``best.pt`` keeps.

``Trainer(cfg).train()`` runs a whole training; ``Trainer(cfg, resume=RUN_DIR)`` continues the newest
checkpoint of ``RUN_DIR`` at the exact sample where it stopped (the data order depends only on the seed and the
epoch, the optimizer / scaler / scheduler / RNG states are restored).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.io.files import copy_atomic, write_text_atomic
from core.contract import PoseContract
from core.codec import Codec
from core.errors import InputError
from core.keypoints import get_spec
from models.precision import native_bf16, training_amp
from train import distributed as D
from train import state as S
from train.config import TrainConfig, dump_config
from train.datasets import TARGET_KEYS, PoseDataset
from train.ema import WeightAverage
from train.loader import ResumableSampler, make_loader, start_batches

LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- small helpers
def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps (warm-up x decay)."""
    sch = cfg.schedule
    factor = 1.0
    if sch.kind == "step":
        epoch = step // max(steps_per_epoch, 1)
        factor = sch.gamma ** sum(1 for m in sch.milestones if epoch >= m)
    elif sch.kind == "cosine":
        total = max(sch.epochs * steps_per_epoch, 1)
        t = min(step / total, 1.0)
        factor = sch.min_lr_factor + (1.0 - sch.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if sch.warmup_steps > 0 and step < sch.warmup_steps:
        factor *= sch.warmup_factor + (1.0 - sch.warmup_factor) * step / sch.warmup_steps
    return factor


def train_paths(cfg: TrainConfig) -> tuple[Path, Path]:
    """Training annotation file and image folder of a single-source config (``data.train_images`` defaults to
    the ``images`` folder beside the annotations)."""
    d = cfg.data
    if not d.train_annotations:
        raise InputError("the config names no training data: set data.train_annotations (and data.train_images) "
                         "or data.sources")
    ann = Path(d.train_annotations)
    return ann, Path(d.train_images) if d.train_images else ann.parent / "images"


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (running statistics used and kept)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _has_local_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer that normalises with this process's batch alone (not SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
               for m in model.modules())


def head_parameter_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith("headnets.")}


def _first_line(exc: BaseException) -> str:
    """A one-line reason for ``exc``: the OS error behind it when there is one (torch's zip writer wraps a
    failed write, e.g. ENOSPC, in a RuntimeError whose own text says nothing)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_log_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a line that does not parse (cut short by a full disk or a crash) is
    skipped with a warning."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            LOG.warning("%s line %d is not a complete JSON record (cut short?): skipped", path, number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` exists and its last byte is not a newline (a record cut short)."""
    try:
        with path.open("rb") as fh:
            fh.seek(-1, 2)
            return fh.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


def _set_aside(path: Path, aside: Path) -> None:
    """Rename ``path`` (a file or a folder) to ``aside``, replacing what ``aside`` held; nothing when it is absent."""
    if not path.exists():
        return
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    elif aside.exists() or aside.is_symlink():
        aside.unlink()
    path.replace(aside)
    LOG.warning("%s belonged to a run without checkpoints: kept as %s", path, aside)


def _set_aside_dead_run(run_dir: Path) -> None:
    """A new run in a folder whose earlier run died before its first checkpoint: that run's ``log.jsonl`` becomes
    ``log.abandoned.jsonl`` and its ``tensorboard/`` folder ``tensorboard.abandoned/`` (each replacing an older
    one), so the folder's log and TensorBoard scalars are the new run's only."""
    _set_aside(run_dir / "log.jsonl", run_dir / "log.abandoned.jsonl")
    _set_aside(run_dir / "tensorboard", run_dir / "tensorboard.abandoned")


class JsonLog:
    """Append-only JSON-lines log (one record per line, flushed) plus TensorBoard scalars when available.

    ``purge_step`` (a resumed run: the first step it logs) makes TensorBoard hide the scalars the folder's earlier
    event files hold from that step on: those the run logged after its last checkpoint, logged again now."""

    def __init__(self, path: Path | None, tensorboard_dir: Path | None, purge_step: int | None = None) -> None:
        self.path = path
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(tensorboard_dir), purge_step=purge_step)
            except Exception as exc:  # noqa: BLE001 - tensorboard is an optional extra
                LOG.info("TensorBoard logging off (%s)", exc)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        start = "\n" if _ends_mid_line(self.path) else ""  # a record cut short stays on a line of its own
        with self.path.open("a") as fh:
            fh.write(start + json.dumps(record) + "\n")
        if self.writer is not None and "step" in record:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{k}", v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class StopFlag:
    """SIGINT / SIGTERM ask the trainer to stop after the current step (with a checkpoint); a second SIGINT
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        LOG.warning("signal %d: stopping after this step (a checkpoint will be written)", signum)
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator["StopFlag"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)


# ------------------------------------------------------------------------------------------------- the trainer
def _check_target_sigma(codec: Codec) -> None:
    """Refuse a heatmap sigma so narrow that keypoints between cells would be encoded below the threshold."""
    threshold, peak = codec.decoder.threshold, codec.lowest_peak()
    if peak < threshold:
        lowest = codec.contract.stride / (2.0 * math.sqrt(math.log(1.0 / threshold)))
        raise InputError(f"data.target_sigma {codec.sigma:g} px is too narrow for stride {codec.contract.stride}: a "
                         f"keypoint between heatmap cells peaks at {peak:.2f}, below the decoder's "
                         f"threshold {threshold:g}; use at least {math.ceil(lowest * 10) / 10:g}")


class Trainer:
    """Builds model, data, loss, optimizer and schedule from a ``TrainConfig`` and runs the training loop."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, resume: str | Path | None = None,
                 info: D.DistInfo | None = None) -> None:
        self.cfg = cfg
        self.info = info or D.init_distributed(cfg.run.device)
        self.device = self.info.device
        self.amp = self._resolve_amp()
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.amp)
        self.run_dir = self._resolve_run_dir(run_dir, resume)

        self.contract = PoseContract(get_spec(cfg.data.dataset), skeleton_name=cfg.model.skeleton,
                                     with_scale=cfg.model.with_scale)
        self.codec = Codec(self.contract, sigma=cfg.data.target_sigma, window=cfg.data.target_window,
                           long_edge=cfg.run.val_input_size)
        _check_target_sigma(self.codec)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
            torch.manual_seed(cfg.run.seed)
            self.model = self._build_model()
        self.dataset = self._build_dataset()
        self.sampler = ResumableSampler(self.dataset, num_replicas=self.info.world_size, rank=self.info.rank,
                                        shuffle=True, seed=cfg.run.seed, drop_last=False)
        self.global_batch = cfg.data.batch_size * self.info.world_size
        per_rank = self.sampler.num_samples
        self.steps_per_epoch = per_rank // cfg.data.batch_size if cfg.data.drop_last else \
            math.ceil(per_rank / cfg.data.batch_size)
        if self.steps_per_epoch < 1:
            raise InputError(f"data.batch_size {cfg.data.batch_size} is larger than the {per_rank} training images "
                             f"per process; lower it or set data.drop_last=false")
        self._check_batchnorm_batches(per_rank)
        self.loss_fn = self._build_loss()
        self.loss_fn.stack_weights(self.model.n_stacks)  # weights that do not fit stop here, not at the first step
        self.lr = cfg.optim.lr * (self.info.world_size if cfg.optim.scale_lr_with_world_size else 1)
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=self.lr, betas=tuple(cfg.optim.betas),
                                          weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(cfg, s, self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.ddp = self._wrap_ddp()
        self.average = self._new_average()

        self.step = 0
        self.epoch = 0
        self.batches_done = 0            # batches of the current epoch already trained on
        self.best_ap = -1.0
        self.skipped_images = 0
        self.nonfinite_steps = 0
        self._nonfinite = torch.zeros((), dtype=torch.int64, device=self.device)  # read at log time
        self.last_losses: dict[str, float] = {}
        self.step_lr = 0.0               # learning rate of the last step (of the first parameter group)
        self.history: list[dict[str, Any]] = []
        self._val_gt: tuple[Path, Path] | None = None  # (subset file written in the run, image folder)
        self._val_subset: tuple[dict[str, Any], Path] | None = None  # (subset, image folder) before it is written
        self._check_validation_set()
        self._create_run_dir()
        if resume is not None:
            self.load(S.latest_checkpoint(self.run_dir))
        main = self.info.is_main
        if main:  # only now: a resume that fails leaves the run's config as it was
            write_text_atomic(self.run_dir / "config.yaml", dump_config(cfg))
            if resume is None:
                _set_aside_dead_run(self.run_dir)
        self.log = JsonLog(self.run_dir / "log.jsonl" if main else None,
                           self.run_dir / "tensorboard" if main and cfg.run.tensorboard else None,
                           purge_step=self.step + 1 if resume is not None else None)
        self._last_saved_step = self.step if resume is not None else -1

    # ------------------------------------------------------------------------------------------------ building
    def _resolve_amp(self) -> str:
        """``run.amp`` for this device (``auto`` resolved); warns when bf16 would be emulated (many times slower)."""
        native = native_bf16(self.device)
        amp = training_amp(self.cfg.run.amp, self.device.type, native)
        if amp == "bf16" and not native:
            LOG.warning("run.amp=bf16 on a %s without bf16 instructions: emulated, several times slower (10x on "
                        "an AVX2 CPU); run.amp=auto picks %s here", self.device.type,
                        training_amp("auto", self.device.type, native))
        if self.cfg.run.amp == "auto":
            LOG.info("run.amp=auto: %s on this %s", amp, self.device.type)
        return amp

    def _resolve_run_dir(self, run_dir: str | Path | None, resume: str | Path | None) -> Path:
        if resume is not None:
            path = Path(resume)
        elif run_dir is not None:
            path = Path(run_dir)
        else:
            name = self.cfg.run.name or time.strftime("%Y%m%d-%H%M%S")
            path = Path(self.cfg.run.output_dir) / name
        problem = self._run_dir_problem(path, resume is not None) if self.info.is_main else None
        where, problem = D.broadcast_object((str(path), problem), self.info)  # every process fails alike
        if problem:
            raise InputError(problem)
        return Path(where)

    def _create_run_dir(self) -> None:
        """Make the run folder once the run is built: a config that fails leaves no folder behind."""
        if self.info.is_main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        D.barrier(self.info)

    @staticmethod
    def _run_dir_problem(path: Path, resume: bool) -> str | None:
        """Why ``path`` cannot hold this run (None when it can): a resumed run needs its checkpoints, a new run
        a folder without another run's (they would mix with its own, and pruning would delete the newer)."""
        if resume:
            try:
                S.latest_checkpoint(path)
            except InputError as exc:
                return str(exc)
            return None
        held = S.list_checkpoints(path)
        if held:
            return (f"run folder {path} already holds a run ({held[-1].name}): continue it with --resume {path}, "
                    f"or write the new run to another folder")
        return None

    def _build_model(self) -> nn.Module:
        from models.factory import build_model, make_config

        mc = self.cfg.model
        config = make_config(mc.arch, spec=self.contract.spec.name, skeleton=mc.skeleton, with_scale=mc.with_scale,
                             **mc.kwargs)
        model = build_model(config)
        model.codec = self.codec  # stored in every checkpoint: what the decoder must know about the targets
        if mc.backbone_weights:
            backbone = getattr(model, "backbone", None)
            if backbone is None or not hasattr(backbone, "load_npz"):
                raise InputError(f"model.backbone_weights: {mc.arch} has no backbone that loads ImageNet weights")
            n = backbone.load_npz(mc.backbone_weights)
            LOG.info("backbone initialised from %s (%d tensors)", mc.backbone_weights, n)
        if mc.init_checkpoint:
            self._init_from_checkpoint(model)
        if mc.freeze_backbone:
            heads = head_parameter_names(model)
            if not heads:
                raise InputError(f"model.freeze_backbone: {mc.arch} has no headnets.* parameters")
            for name, p in model.named_parameters():
                p.requires_grad_(name in heads)
        if mc.sync_bn and self.info.distributed:
            if self.device.type != "cuda":
                raise InputError("model.sync_bn needs CUDA (torch's SyncBatchNorm is GPU-only); "
                                 "use model.freeze_bn=true for multi-process CPU runs")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.device)

    def _init_from_checkpoint(self, model: nn.Module) -> None:
        """Copy matching weights from ``model.init_checkpoint`` (ours or the authors'); heads optionally fresh.

        With ``model.init_widen`` a narrower checkpoint grows into this network (``widened``).
        """
        from models.checkpoint import load_checkpoint
        from models.widen import fits_inside, widened

        mc = self.cfg.model
        source, _ = load_checkpoint(mc.init_checkpoint, arch=mc.init_arch or None, map_location="cpu")
        own = model.state_dict()
        take, skipped = {}, []
        for key, value in source.state_dict().items():
            if mc.reinit_heads and key.startswith("headnets."):
                continue
            if key in own and own[key].shape == value.shape:
                take[key] = value
            elif mc.init_widen and key in own and fits_inside(value, own[key]):
                take[key] = widened(value, own[key])
            else:
                skipped.append(key)
        if not take:
            raise InputError(f"model.init_checkpoint {mc.init_checkpoint}: no weight matches a {mc.arch} network")
        missing = [k for k in own if k not in take]
        model.load_state_dict(take, strict=False)
        LOG.info("initialised %d tensors from %s; %d kept fresh (%s), %d of the checkpoint unused (%s)",
                 len(take), mc.init_checkpoint, len(missing), ", ".join(missing[:4]), len(skipped),
                 ", ".join(skipped[:4]))
        if skipped and not mc.reinit_heads:
            LOG.warning("model.init_checkpoint: %d tensors did not match by name/shape, e.g. %s", len(skipped),
                        skipped[0])

    def _param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters; the backbone's in a group of its own when ``optim.backbone_lr_factor != 1``."""
        factor = self.cfg.optim.backbone_lr_factor
        names = getattr(self.model, "backbone_parameter_names", lambda: set())()
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if factor == 1.0:
            return [{"params": [p for _, p in trainable]}]
        if not names:
            raise InputError(f"optim.backbone_lr_factor {factor}: {self.cfg.model.arch} has no backbone with a "
                             f"learning rate of its own (the mobilenet arch has); set it to 1")
        return [{"params": [p for n, p in trainable if n not in names]},
                {"params": [p for n, p in trainable if n in names], "lr": self.lr * factor}]

    def _build_dataset(self) -> PoseDataset:
        d = self.cfg.data
        encoder = self.codec.encoder()
        multiple = int(getattr(self.model, "input_multiple", 32))
        if d.input_size % multiple:
            raise InputError(f"data.input_size {d.input_size} must be a multiple of {multiple} "
                             f"for {self.cfg.model.arch}")
        common = dict(input_size=d.input_size, augmentation=self.cfg.augmentation, encoder=encoder,
                      seed=self.cfg.run.seed, image_ids=d.image_ids or None, min_keypoints=d.min_keypoints)
        if d.sources:
            sources = [(f"data.sources[{i}].annotations", Path(src["annotations"]),
                        Path(src["images"]) if src.get("images") else Path(src["annotations"]).parent / "images",
                        src.get("split") or None, int(src.get("repeat", 1))) for i, src in enumerate(d.sources)]
        else:
            ann, images = train_paths(self.cfg)
            sources = [("data.train_annotations", Path(ann), Path(images), None, 1)]
        parts = []
        for key, ann, images, split, repeat in sources:
            if not ann.is_file():
                raise InputError(f"{key} {ann} is a folder, not an annotation file" if ann.is_dir()
                                 else f"{key} {ann} does not exist")
            parts.append(PoseDataset(ann, images, self.contract, split=split, repeat=repeat, **common))
        # run.val_on_train validates on the first source's training images (one annotation file per evaluation)
        self.train_annotations, self.train_images = sources[0][1], sources[0][2]
        self._train_ids = set(parts[0].image_ids)
        return parts[0] if len(parts) == 1 else PoseDataset.merge(parts)

    def _check_batchnorm_batches(self, per_rank: int) -> None:
        """Refuse a step of one image when the network's deepest feature map is 1x1 (``data.input_size`` equal to
        its ``input_multiple``, the deepest stride of every arch here): a training-mode BatchNorm layer would get
        one value per channel and crash at that step (with ``data.drop_last=false``, at the last, partial batch of
        the first epoch). Frozen BatchNorm and SyncBatchNorm over several processes take it."""
        d, arch = self.cfg.data, self.cfg.model.arch
        multiple = int(getattr(self.model, "input_multiple", 32))
        if d.input_size > multiple or self.cfg.model.freeze_bn or not _has_local_batchnorm(self.model):
            return
        deepest = (f"{arch}'s deepest feature map is 1x1, so its BatchNorm layers would normalise a single value "
                   f"per channel")
        if d.batch_size == 1:
            raise InputError(f"data.batch_size 1 with data.input_size {d.input_size}: {deepest}; use "
                             f"data.batch_size >= 2, data.input_size >= {2 * multiple} or model.freeze_bn=true")
        if not d.drop_last and per_rank % d.batch_size == 1:
            raise InputError(f"data.drop_last=false leaves a last batch of 1 image per process ({per_rank} images, "
                             f"data.batch_size {d.batch_size}) and with data.input_size {d.input_size} {deepest}; "
                             f"set data.drop_last=true, another data.batch_size or data.input_size >= {2 * multiple}")

    def _build_loss(self) -> nn.Module:
        from models.losses import LossConfig, PoseLoss

        lc = self.cfg.loss
        return PoseLoss(LossConfig(tau=lc.tau, gamma=lc.gamma, heatmap_weight=lc.heatmap_weight,
                                   offset_weight=lc.offset_weight, scale_weight=lc.scale_weight,
                                   stack_weights=tuple(lc.stack_weights) or None, sqrt_re=lc.sqrt_re,
                                   offset_margin=lc.offset_margin, scale_margin=lc.scale_margin))

    def compute_loss(self, outputs: list[dict[str, torch.Tensor]],
                     targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``PoseLoss`` on the batch, or (``loss.per_sample``) the mean of its value on each image."""
        if not self.cfg.loss.per_sample:
            return self.loss_fn(outputs, targets)
        n = targets["heatmaps"].shape[0]
        total, terms = None, {}
        for i in range(n):
            one_out = [{k: v[i:i + 1] for k, v in out.items()} for out in outputs]
            one_tgt = {k: v[i:i + 1] for k, v in targets.items()}
            t, tm = self.loss_fn(one_out, one_tgt)
            total = t if total is None else total + t
            for k, v in tm.items():
                terms[k] = terms.get(k, 0) + v
        return total / n, {k: v / n for k, v in terms.items()}

    def _wrap_ddp(self) -> nn.Module:
        if not self.info.distributed:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)

    def _new_average(self) -> WeightAverage | None:
        """The moving average of the weights (``optim.ema_decay``), starting at the current weights."""
        o = self.cfg.optim
        return WeightAverage(self.model, o.ema_decay, o.ema_warmup_steps) if o.ema_decay > 0 else None

    # ------------------------------------------------------------------------------------------------- stepping
    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def set_train_mode(self) -> None:
        self.model.train()
        if self.cfg.model.freeze_bn:
            freeze_batchnorm(self.model)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One optimizer step on ``batch``; returns the loss terms as detached device tensors (no host sync:
        they are averaged and read at log time). Gradients with a non-finite value are zeroed on the device
        (the step then moves by Adam's momentum only) and counted; the count is read at log time."""
        dev = self.device
        images = batch["image"].to(dev, non_blocking=True)
        targets = {k: batch[k].to(dev, non_blocking=True) for k in TARGET_KEYS if k in batch}
        targets = {k: v.float() if v.is_floating_point() else v for k, v in targets.items()}
        x = self.model.normalize(images)
        with self._autocast():
            outputs = self.ddp(x)
        outputs = [{k: v.float() for k, v in out.items()} for out in outputs]
        loss, terms = self.compute_loss(outputs, targets)
        self.scaler.scale(loss).backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not self.scaler.is_enabled():  # fp16's GradScaler skips non-finite steps itself
            # after DDP's all-reduce every rank holds the same gradients, so all decide alike (no collective)
            finite = torch.stack([g.isfinite().all() for g in grads]).all()
            self._nonfinite = self._nonfinite + (~finite).to(self._nonfinite.dtype)
            for g in grads:
                torch.where(finite, g, torch.zeros((), dtype=g.dtype, device=g.device), out=g)
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.step_lr = self.optimizer.param_groups[0]["lr"]  # what this step trains with (logged)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.average is not None:
            self.average.update(self.model)
        out = {"loss": loss.detach()}
        out.update({k: v for k, v in terms.items() if k != "total"})
        return out

    # ---------------------------------------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        """Train until ``schedule.epochs`` or ``schedule.max_steps``; returns a summary dict."""
        cfg = self.cfg
        stop = StopFlag()
        reason = "epochs"
        t_start = time.perf_counter()
        start_step = self.step
        if self.info.is_main:
            LOG.info("run %s: %d images, %d steps/epoch, global batch %d, lr %.3g, world %d, device %s",
                     self.run_dir, len(self.dataset), self.steps_per_epoch, self.global_batch, self.lr,
                     self.info.world_size, self.device)
        with stop.installed():
            if self._validation_interrupted():  # the run stopped while validating its last epoch: finish that
                self.validate()
            while self.epoch < cfg.schedule.epochs and not self._max_steps_reached():
                if self._run_epoch(stop):
                    self.epoch += 1
                    self.batches_done = 0
                    validate = self._validation_due()
                    step_due = cfg.run.checkpoint_every_steps and self.step % cfg.run.checkpoint_every_steps == 0
                    if validate or step_due or self.epoch % cfg.run.checkpoint_every_epochs == 0:
                        self.save()
                    if validate:
                        self.validate()
                if self._stop_requested(stop):
                    reason = "signal"
                    break
            if reason != "signal" and self._max_steps_reached():
                reason = "max_steps"
            if self._last_saved_step != self.step:
                self.save()
        self.log.close()
        elapsed = time.perf_counter() - t_start
        summary = {"run_dir": str(self.run_dir), "step": self.step, "epoch": self.epoch, "stopped": reason,
                   "best_ap": self.best_ap if self.best_ap >= 0 else None, "losses": self.last_losses,
                   "seconds": elapsed, "steps_this_session": self.step - start_step,
                   "skipped_images": self.skipped_images, "nonfinite_steps": self.nonfinite_steps}
        if self.info.is_main:
            self.log.write({"kind": "end", **summary})
        return summary

    def _validation_due(self) -> bool:
        """True at the end of an epoch that is validated (``run.val_every_epochs``)."""
        every = self.cfg.run.val_every_epochs
        return bool(every) and self.batches_done == 0 and self.epoch > 0 and self.epoch % every == 0

    def _validation_interrupted(self) -> bool:
        """True when this run resumed at the end of a validated epoch whose validation was never logged (it was
        killed while validating)."""
        log = self.run_dir / "log.jsonl"
        if self._last_saved_step != self.step or not self._validation_due() or not log.is_file():
            return False
        done = False
        if self.info.is_main:
            records = read_log_records(log)
            done = any(r.get("kind") == "val" and r.get("step") == self.step for r in records)
        return not D.broadcast_object(done, self.info)

    def _max_steps_reached(self) -> bool:
        return 0 < self.cfg.schedule.max_steps <= self.step

    def _stop_requested(self, stop: StopFlag) -> bool:
        """Whether any process received SIGINT / SIGTERM (a collective when there are several)."""
        if not self.info.distributed:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _run_epoch(self, stop: StopFlag) -> bool:
        """Train the rest of the current epoch; False when stopped early (max_steps or a signal)."""
        cfg = self.cfg
        bs = cfg.data.batch_size
        self.sampler.set_position(self.epoch, self.batches_done * bs)
        self.dataset.set_epoch(self.epoch)
        loader = make_loader(self.dataset, self.sampler, bs, cfg.data.workers, cfg.run.seed, self.epoch,
                             rank=self.info.rank, drop_last=cfg.data.drop_last,
                             pin_memory=self.device.type == "cuda", start_method=cfg.data.worker_start)
        self.set_train_mode()
        bar = None
        if cfg.run.progress and self.info.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=self.batches_done, unit="step", dynamic_ncols=True,
                       desc=f"epoch {self.epoch + 1}/{cfg.schedule.epochs}", leave=False)
        window_t, window_n = time.perf_counter(), 0
        sums: dict[str, torch.Tensor] = {}
        skipped = 0  # images this process skipped since the last count over all processes
        try:
            for batch in start_batches(loader):
                skipped += int(batch["skipped"].sum())
                losses = self.train_step(batch)
                self.step += 1
                self.batches_done += 1
                window_n += 1
                sums = {k: sums[k] + v if k in sums else v for k, v in losses.items()}
                if bar is not None:
                    bar.update(1)
                # host syncs and collectives only every log_every_steps (and at the end of the epoch)
                poll = self.step % cfg.run.log_every_steps == 0 or self.batches_done >= self.steps_per_epoch
                if poll:
                    now = time.perf_counter()
                    ips = window_n * self.global_batch / max(now - window_t, 1e-9)
                    self.skipped_images += D.all_reduce_sum_int(skipped, self.info)
                    skipped = 0
                    self.last_losses = D.all_reduce_mean({k: float(v) / window_n for k, v in sums.items()},
                                                         self.info)
                    self._log_train(self.last_losses, ips)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in self.last_losses.items()} | {"img/s": f"{ips:.1f}"},
                                        refresh=False)
                    window_t, window_n, sums = now, 0, {}
                if cfg.run.checkpoint_every_steps and self.step % cfg.run.checkpoint_every_steps == 0 \
                        and self.batches_done < self.steps_per_epoch:
                    self.save()
                # a single process looks at the signal flag every step; several agree on it at log steps only
                if self._max_steps_reached() or ((poll or not self.info.distributed) and self._stop_requested(stop)):
                    if window_n:  # every process stops at this same step: the collectives are safe
                        self.skipped_images += D.all_reduce_sum_int(skipped, self.info)
                        self.last_losses = D.all_reduce_mean({k: float(v) / window_n for k, v in sums.items()},
                                                             self.info)
                    return self.batches_done >= self.steps_per_epoch
        finally:
            if bar is not None:
                bar.close()
        return True

    def _log_train(self, values: dict[str, float], images_per_s: float) -> None:
        """Log the losses (already averaged over the processes) and counters of the last window."""
        nonfinite = int(self._nonfinite.item())
        if nonfinite > self.nonfinite_steps:
            LOG.warning("%d step(s) with non-finite gradients before step %d (their gradients were zeroed)",
                        nonfinite - self.nonfinite_steps, self.step)
        self.nonfinite_steps = nonfinite
        record = {"kind": "train", "step": self.step, "epoch": self.epoch, "lr": self.step_lr,
                  **values, "images_per_s": images_per_s, "skipped_images": self.skipped_images,
                  "time": time.time()}
        self.history.append(record)
        if self.info.is_main:
            self.log.write(record)

    # ----------------------------------------------------------------------------------------------- checkpoints
    def train_state(self) -> dict[str, Any]:
        state = {
            "step": self.step, "epoch": self.epoch, "batches_done": self.batches_done,
            "batch_size": self.cfg.data.batch_size, "world_size": self.info.world_size,
            "optimizer": S.pack_optimizer_state(self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": S.rng_state(), "best_ap": self.best_ap,
            "skipped_images": self.skipped_images,
        }
        if self.average is not None:  # the checkpoint's weights are the average; these are the trained ones
            state["trained_weights"] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            state["average_updates"] = self.average.updates
        return state

    def save(self) -> Path | None:
        """Write ``checkpoints/ckpt_<step>.pt`` (rank 0, atomically) and prune old ones."""
        from models.checkpoint import save_checkpoint

        path = S.checkpoint_path(self.run_dir, self.step)
        problem = None
        if self.info.is_main:
            content = dict(epoch=self.epoch, step=self.step,
                           metrics={"loss": self.last_losses.get("loss")} if self.last_losses else None,
                           train_config=self.cfg.to_dict(), extra={"train_state": self.train_state()},
                           weights=self.average.weights if self.average is not None else None)
            try:
                save_checkpoint(path, self.model, **content)
                S.prune(self.run_dir, self.cfg.run.keep_last)
                LOG.info("checkpoint %s", path)
            except (OSError, RuntimeError) as exc:  # a full disk: torch's zip writer reports it as a RuntimeError
                problem = (f"cannot write checkpoint {path} ({_first_line(exc)}; is the disk full?): the older "
                           f"checkpoints are kept, make room and continue with --resume {self.run_dir}")
        # every process learns whether it was written (this waits for rank 0, as a barrier would) and stops with
        # the same line, instead of the others failing on a lost connection
        problem = D.broadcast_object(problem, self.info)
        if problem is not None:
            raise InputError(problem)
        self._last_saved_step = self.step
        return path

    def load(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, scaler, data position and RNG states from a run checkpoint."""
        ckpt = S.load_training_state(path, map_location="cpu")
        st = ckpt["extra"]["train_state"]
        if st["batch_size"] != self.cfg.data.batch_size or st["world_size"] != self.info.world_size:
            LOG.warning("resuming with batch %d x %d processes, the run used %d x %d: the data position is "
                        "kept in samples, the continuation is not bit-exact", self.cfg.data.batch_size,
                        self.info.world_size, st["batch_size"], st["world_size"])
        saved = ckpt["model_state_dict"]  # the weight average when the run kept one, else the trained weights
        try:
            self.model.load_state_dict(st.get("trained_weights", saved))
        except RuntimeError as exc:  # another arch, width, skeleton or scale head than the run trained
            details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
            raise InputError(f"cannot resume {path}: its weights do not fit this config's network "
                             f"({(details or [_first_line(exc)])[0][:200].rstrip('.')}); model.arch, model.kwargs, "
                             f"model.skeleton or model.with_scale changed: resume with the run's values") from None
        self.average = self._new_average()
        if self.average is not None and "trained_weights" in st:
            self.average.load_state_dict({"updates": st["average_updates"], "weights": saved})
        base_lrs = list(self.scheduler.base_lrs)  # this config's learning rates
        try:
            self.optimizer.load_state_dict(S.unpack_optimizer_state(st["optimizer"]))
        except ValueError as exc:  # other parameter groups: the run trained other parameters, or split them so
            raise InputError(f"cannot resume {path}: its optimizer state does not fit this config's trainable "
                             f"parameters ({exc}); optim.backbone_lr_factor, model.freeze_backbone or the model "
                             f"changed: resume with the run's values") from None
        self.scheduler.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        S.set_rng_state(st["rng"])
        self.step, self.epoch = int(st["step"]), int(st["epoch"])
        samples = int(st["batches_done"]) * int(st["batch_size"]) * int(st["world_size"])
        self.batches_done = samples // (self.cfg.data.batch_size * self.info.world_size)
        self._restart_schedule(base_lrs)
        self.best_ap = float(st.get("best_ap", -1.0))
        best = self.run_dir / "best.json"
        if best.is_file():
            self.best_ap = max(self.best_ap, float(json.loads(best.read_text()).get("AP", -1.0)))
        self.skipped_images = int(st.get("skipped_images", 0))
        if self.info.is_main:
            LOG.info("resumed %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batches_done)

    def _restart_schedule(self, base_lrs: list[float]) -> None:
        """Continue the schedule at the resumed data position with this config's rates and length (--set
        optim.lr or schedule.epochs on resume), counted in this config's steps per epoch: another batch size or
        world size keeps the schedule where the data is. The same numbers as before when nothing changed."""
        self.scheduler.base_lrs = base_lrs
        self.scheduler.last_epoch = self.epoch * self.steps_per_epoch + self.batches_done
        for group, base, factor in zip(self.optimizer.param_groups, base_lrs, self.scheduler.lr_lambdas):
            group["initial_lr"], group["lr"] = base, base * factor(self.scheduler.last_epoch)

    # ------------------------------------------------------------------------------------------------ validation
    def validation_set(self) -> tuple[Path, Path] | None:
        """(subset annotation file, image folder) for validation, or None when there is nothing to validate."""
        if self._val_gt is None:
            subset = self._val_subset or self._validation_subset()
            if subset is None:
                return None
            raw, images = subset
            path = self.run_dir / "val_subset.json"
            write_text_atomic(path, json.dumps(raw))
            self._val_gt, self._val_subset = (path, images), None
        return self._val_gt

    def _validation_subset(self) -> tuple[dict[str, Any], Path] | None:
        """(COCO-style subset, image folder) to validate on, or None; ``InputError`` when it cannot be made."""
        d, r = self.cfg.data, self.cfg.run
        if d.val_annotations:
            ann = Path(d.val_annotations)
            images = Path(d.val_images) if d.val_images else ann.parent / "images"
            ids, key = None, "data.val_annotations"
            if not images.is_dir():  # found now, not by the first validation after an epoch of training
                where = "data.val_images" if d.val_images else f"data.val_images (default beside {ann})"
                raise InputError(f"{where} {images} " + ("is not a folder" if images.exists() else "does not exist"))
        elif r.val_on_train:
            ann, images, ids = self.train_annotations, self.train_images, self._train_ids
            key = "data.sources[0].annotations" if d.sources else "data.train_annotations"
        else:
            return None
        from core.io.annotations import load_keypoint_annotations, subset_coco_dict

        gt = load_keypoint_annotations(ann, self.contract.spec)
        split = {int(r["id"]): r.get("split") for r in gt.raw["images"]}
        if d.val_split and d.val_split not in split.values():
            names = ", ".join(sorted({str(v) for v in split.values() if v is not None})) or "none"
            raise InputError(f"data.val_split {d.val_split!r}: no image of {ann} has it (its splits: {names})")
        pool = [img.id for img in gt.images if img.n_people > 0 and (ids is None or img.id in ids)
                and (not d.val_split or split[img.id] == d.val_split)]
        if not pool:
            where = f" of data.val_split {d.val_split!r}" if d.val_split else ""
            raise InputError(f"{key} {ann}: no image with people{where} to validate on")
        if r.val_images:
            pool = pool[:r.val_images]
        return subset_coco_dict(gt.raw, pool), images

    def _check_validation_set(self) -> None:
        """A validation set that cannot be read (a missing file, an unknown ``data.val_split``) fails now, on
        every process, not after the first epoch, and before the run folder is made."""
        problem = None
        if self.info.is_main and self.cfg.run.val_every_epochs:
            try:
                self._val_subset = self._validation_subset()
            except InputError as exc:
                problem = str(exc)
        problem = D.broadcast_object(problem, self.info)
        if problem:
            raise InputError(problem)

    def validate(self, checkpoint: Path | None = None) -> dict[str, Any] | None:
        """COCO / CrowdPose AP of the newest checkpoint on the validation subset (rank 0; others wait)."""
        target = self.validation_set() if self.info.is_main else None
        metrics = None
        if self.info.is_main and target is not None:
            from eval.runner import EvalOptions, run_evaluation

            ann, images = target
            ckpt = checkpoint or S.checkpoint_path(self.run_dir, self.step)
            out = self.run_dir / "val" / f"step_{self.step:08d}"
            opts = EvalOptions(annotations=ann, images=images, out=out, dataset=self.cfg.data.dataset,
                               checkpoint=ckpt, long_edge=self.cfg.run.val_input_size, workers=0,
                               device=str(self.device), batch_size=1)
            t0 = time.perf_counter()
            result = run_evaluation(opts)
            metrics = result.summary["metrics"]
            record = {"kind": "val", "step": self.step, "epoch": self.epoch, "AP": metrics["AP"],
                      "AP50": metrics["AP50"], "n_images": result.summary["n_images"],
                      "seconds": time.perf_counter() - t0, "time": time.time()}
            self.history.append(record)
            self.log.write(record)
            LOG.info("validation at step %d: AP %.4f AP50 %.4f", self.step, metrics["AP"], metrics["AP50"])
            if metrics["AP"] > self.best_ap:
                self.best_ap = float(metrics["AP"])
                copy_atomic(ckpt, self.run_dir / "best.pt")
                write_text_atomic(self.run_dir / "best.json",
                                    json.dumps({"AP": self.best_ap, "step": self.step, "epoch": self.epoch}))
        D.barrier(self.info)
        if self.info.distributed:
            self.best_ap = float(D.broadcast_object(self.best_ap, self.info))
        return metrics
