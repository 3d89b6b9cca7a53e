"""Training configuration: YAML files validated into nested dataclasses, single fields overridden with ``a.b=value``.

``load_config(path, overrides)`` reads a YAML file (sections ``data``, ``augmentation``, ``model``, ``loss``,
``optim``, ``schedule``, ``run``), rejects unknown keys and wrong types with an ``InputError`` naming the key,
and applies ``--set`` overrides the same way. Every option has a default that works: an empty config trains the
real-time network on the shared mini COCO set.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError
from core.keypoints import get_spec


@dataclass
class DataConfig:
    """Where the images and annotations are, and how batches are formed."""

    dataset: str = "coco"                 # coco | crowdpose
    train_annotations: str = ""           # "" = the shared mini COCO set (../shared/data/coco/train2017_mini)
    train_images: str = ""
    sources: list = field(default_factory=list)  # a mix instead of train_annotations: [{annotations, images,
                                          # repeat: 1, split: ""}, ...] (split selects images by their 'split')
    val_annotations: str = ""             # "" = no validation (or the training set when run.val_on_train)
    val_images: str = ""
    val_split: str = ""                   # validate on the images whose 'split' field is this ("" = all)
    image_ids: list = field(default_factory=list)  # restrict training to these image ids ([] = all)
    min_keypoints: int = 1                # keep images with a person having at least this many keypoints (0 = all)
    input_size: int = 512                 # side of the square training crop (multiple of the model's input_multiple)
    batch_size: int = 8                   # per process
    workers: int = 2                      # DataLoader worker processes per training process
    worker_start: str = "spawn"           # spawn | forkserver | fork (fork can dead-lock in OpenCV's thread pool)
    target_sigma: float = 7.0             # Gaussian sigma of the keypoint heatmaps, input pixels
    target_window: int = 7                # cells around a limb start that receive guiding offsets
    drop_last: bool = True


OCCLUDER_MIN = 0.15   # smallest occluder size (the geometric mean of its sides), fraction of the person's box side


@dataclass
class AugmentationConfig:
    """One random affine warp per sample plus colour jitter (``enabled: false`` = fit the image, no jitter)."""

    enabled: bool = True
    rotation_deg: float = 45.0            # uniform in [-r, r]
    scale_min: float = 0.5                # scale relative to fitting the image's long edge in the crop
    scale_max: float = 2.0                # (log-uniform between min and max)
    stretch: float = 0.2                  # per-axis aspect stretch: x * e^a, y / e^a, |a| <= log(1 + stretch)
    translate: float = 0.25               # crop-centre shift, fraction of the crop side
    flip_prob: float = 0.5
    brightness: float = 0.25              # colour jitter amplitudes (0 = off)
    contrast: float = 0.25
    saturation: float = 0.25
    hue_deg: float = 5.0
    mosaic_prob: float = 0.0              # share of samples made of a 2x2 mosaic of four images (small people)
    occlusion_prob: float = 0.0           # share of images (mosaic tiles) where one person is partly covered
    occlusion_size: float = 0.5           # largest occluder size (mean of its sides), fraction of the person's box side


@dataclass
class ModelSection:
    """The network: architecture, output contract and initialisation."""

    arch: str = "realtime"                # realtime | hourglass104 | any name models.factory knows
    skeleton: str = "default"             # skeleton of the dataset's keypoint spec
    with_scale: bool = False              # predict keypoint scales
    kwargs: dict = field(default_factory=dict)  # extra keyword arguments for the architecture
    backbone_weights: str = ""            # ImageNet backbone weights (.npz) for an arch with a loadable backbone
    init_checkpoint: str = ""             # start from these weights (ours or the authors')
    init_arch: str = ""                   # arch of an authors' checkpoint (when it is not ours)
    reinit_heads: bool = False            # re-initialise the output heads after loading init_checkpoint
    init_widen: bool = False              # grow a narrower init_checkpoint into this wider network, function intact
    freeze_backbone: bool = False         # train the heads only
    freeze_bn: bool = False               # BatchNorm layers use (and keep) their running statistics
    sync_bn: bool = False                 # SyncBatchNorm across processes (GPU only)


@dataclass
class LossSection:
    """``models.losses.PoseLoss`` settings (defaults: the paper's recipe)."""

    heatmap_weight: float = 1.0
    offset_weight: float = 10000.0
    scale_weight: float = 10.0
    stack_weights: list = field(default_factory=list)  # [] = every stack weighted equally
    gamma: float = 2.0                    # focal L2 exponent
    tau: float = 0.01                     # focal L2 foreground threshold
    sqrt_re: bool = True                  # square-root rescaling of offset / scale errors
    offset_margin: float = 1e-5
    scale_margin: float = 0.1
    per_sample: bool = False              # normalise offset/scale terms per image instead of per batch: the loss
                                          # then does not depend on how a global batch is split over processes


@dataclass
class OptimConfig:
    """Adam with a learning rate per process scaled by the world size."""

    lr: float = 1.25e-4                   # per process (the paper: 1.25e-4 per GPU)
    scale_lr_with_world_size: bool = True
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    backbone_lr_factor: float = 1.0       # learning rate of the backbone's parameters relative to the others
    grad_clip: float = 0.0                # max gradient norm (0 = off)
    ema_decay: float = 0.0                # moving average of the weights, evaluated and saved (0 = off; e.g. 0.999)
    ema_warmup_steps: float = 0.0         # the decay ramps up as 1 - exp(-step / this) (0 = full decay at once)


@dataclass
class ScheduleConfig:
    """Epochs, warm-up and the learning-rate decay."""

    epochs: int = 100
    max_steps: int = 0                    # stop after this many optimizer steps in total (0 = no limit)
    warmup_steps: int = 0                 # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.1
    kind: str = "step"                    # step | cosine | constant
    milestones: list = field(default_factory=list)  # epochs where a step schedule multiplies lr by gamma
    gamma: float = 0.1
    min_lr_factor: float = 0.0            # cosine: final lr = min_lr_factor * lr


@dataclass
class RunConfig:
    """Where a run writes, how often it checkpoints, validates and logs."""

    output_dir: str = "runs"
    name: str = ""                        # "" = a time stamp
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    amp: str = "none"                     # none | fp16 (CUDA, with GradScaler) | bf16 | auto (bf16 where native)
    checkpoint_every_epochs: int = 1      # checkpoint at the end of every N-th epoch (and always at the end)
    checkpoint_every_steps: int = 0       # also checkpoint every N steps (0 = off)
    keep_last: int = 3                    # step/epoch checkpoints kept besides best.pt
    val_every_epochs: int = 1             # 0 = never validate
    val_images: int = 100                 # validation subset: the first N images with people (0 = all)
    val_input_size: int = 512             # long edge of validation inputs
    val_on_train: bool = False            # validate on the training images when no val set is given
    log_every_steps: int = 10
    progress: bool = True                 # tqdm progress bar (rank 0)
    tensorboard: bool = True              # when the tensorboard package is installed
    threads: int = 0                      # torch CPU threads per process (0 = torch's default)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    "data.dataset": ("coco", "crowdpose"),
    "data.worker_start": ("spawn", "forkserver", "fork"),
    "schedule.kind": ("step", "cosine", "constant"),
    "run.amp": ("none", "fp16", "bf16", "auto"),
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _increasing_epochs(values: list) -> bool:
    """Whether ``values`` are integer epochs >= 0, each above the one before (a learning-rate milestone list: a
    negative one decayed the rate before the first step, an unsorted or repeated one is most likely a typo)."""
    epochs = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    return len(epochs) == len(values) and all(a < b for a, b in zip(epochs, epochs[1:]))


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check ``value`` against the field type ``typ``; ints are accepted for floats."""
    origin = typing.get_origin(typ) or typ
    if origin in (typing.Union, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
        origin = typing.get_origin(typ) or typ
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, (list, tuple)),
        dict: isinstance(value, dict),
    }.get(origin)
    if ok is None:
        raise TypeError(f"unsupported config type {typ} for {key}")
    if origin is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value, ok = str(value), True
    if origin is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            value, ok = float(value), True
        except ValueError:
            pass
    if not ok:
        raise InputError(f"config key {key} must be {origin.__name__}, got {type(value).__name__} {value!r}")
    if origin is float:
        value = float(value)
    if origin is list:
        value = list(value)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise InputError(f"config key {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"config section {prefix or 'root'} must be a mapping, got {type(data).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise InputError(f"unknown config key {where}{unknown[0]} (known: {', '.join(sorted(types_))})")
    kwargs = {}
    for name, typ in types_.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            continue
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, data[name], key)
        else:
            kwargs[name] = _coerce(data[name], typ, key)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a nested dict into a ``TrainConfig`` (missing keys keep their defaults)."""
    cfg = _build(TrainConfig, data, "")
    validate(cfg)
    return cfg


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans several, with a caret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=2e-4"`` -> ``("optim.lr", 2e-4)``; the value is parsed as YAML (``[1, 2]``, ``true``, ...)."""
    if "=" not in text:
        raise InputError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise InputError(f"override {key}: cannot parse value {raw!r}: {_yaml_problem(exc)}") from None
    return key, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``section.key=value`` entries in a nested config dict (keys are checked against the dataclasses)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        cls: Any = TrainConfig
        node = out
        for i, part in enumerate(parts):
            types_ = _field_types(cls)
            if part not in types_:
                where = ".".join(parts[:i]) or "root"
                raise InputError(f"override {key}: unknown key {part!r} in {where} "
                                 f"(known: {', '.join(sorted(types_))})")
            typ = types_[part]
            last = i == len(parts) - 1
            if dataclasses.is_dataclass(typ):
                if last:
                    raise InputError(f"override {key}: {key} is a section, set one of its keys")
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InputError(f"config section {'.'.join(parts[:i + 1])} must be a mapping")
                cls = typ
            elif not last:
                if typ is dict or typing.get_origin(typ) is dict:  # free-form dict: model.kwargs.width=64
                    sub = node.setdefault(part, {})
                    for j in range(i + 1, len(parts)):  # sub is the value at parts[:j]
                        if not isinstance(sub, dict):
                            raise InputError(f"override {key}: {'.'.join(parts[:j])} is not a mapping")
                        if j < len(parts) - 1:
                            sub = sub.setdefault(parts[j], {})
                        else:
                            sub[parts[j]] = value
                    break
                raise InputError(f"override {key}: {'.'.join(parts[:i + 1])} is not a section")
            else:
                node[part] = _coerce(value, typ, key)
    return out


def validate(cfg: TrainConfig) -> None:
    """Range checks that the types alone do not express; errors name the key."""
    checks = [
        (cfg.data.input_size >= 32, "data.input_size must be >= 32"),
        (cfg.data.batch_size >= 1, "data.batch_size must be >= 1"),
        (cfg.run.seed >= 0, "run.seed must be >= 0"),
        (cfg.data.workers >= 0, "data.workers must be >= 0"),
        (cfg.data.target_sigma > 0, "data.target_sigma must be > 0"),
        (cfg.data.target_window >= 1, "data.target_window must be >= 1"),
        (0 < cfg.augmentation.scale_min <= cfg.augmentation.scale_max,
         "augmentation.scale_min must be > 0 and <= augmentation.scale_max"),
        (0 <= cfg.augmentation.flip_prob <= 1, "augmentation.flip_prob must be in [0, 1]"),
        (0 <= cfg.augmentation.mosaic_prob <= 1, "augmentation.mosaic_prob must be in [0, 1]"),
        (0 <= cfg.augmentation.occlusion_prob <= 1, "augmentation.occlusion_prob must be in [0, 1]"),
        (OCCLUDER_MIN < cfg.augmentation.occlusion_size <= 2,
         f"augmentation.occlusion_size must be in ({OCCLUDER_MIN}, 2]"),
        (cfg.augmentation.stretch >= 0, "augmentation.stretch must be >= 0"),
        *((getattr(cfg.augmentation, k) >= 0, f"augmentation.{k} must be >= 0")  # ranges are [-a, a]
          for k in ("rotation_deg", "translate", "brightness", "contrast", "saturation", "hue_deg")),
        (cfg.optim.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        *((getattr(cfg.loss, k) >= 0, f"loss.{k} must be >= 0")
          for k in ("heatmap_weight", "offset_weight", "scale_weight")),
        (cfg.run.val_input_size >= 32, "run.val_input_size must be >= 32"),
        (cfg.run.val_images >= 0, "run.val_images must be >= 0 (0: all)"),
        (cfg.run.val_every_epochs >= 0, "run.val_every_epochs must be >= 0 (0: never)"),
        (cfg.data.min_keypoints >= 0, "data.min_keypoints must be >= 0"),
        (cfg.run.threads >= 0, "run.threads must be >= 0 (0: torch's default)"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (len(cfg.optim.betas) == 2 and all(_number(b) and 0 <= b < 1 for b in cfg.optim.betas),
         "optim.betas must hold two numbers in [0, 1)"),
        (all(_number(w) and w >= 0 for w in cfg.loss.stack_weights), "loss.stack_weights must be numbers >= 0"),
        (cfg.loss.gamma >= 0, "loss.gamma must be >= 0"),  # a negative exponent weights the easy cells most
        (0 < cfg.loss.tau <= 1, "loss.tau must be in (0, 1]"),  # targets are in [0, 1]
        (cfg.optim.grad_clip >= 0, "optim.grad_clip must be >= 0"),
        (0 <= cfg.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1)"),
        (cfg.optim.ema_warmup_steps >= 0, "optim.ema_warmup_steps must be >= 0"),
        (cfg.optim.backbone_lr_factor >= 0, "optim.backbone_lr_factor must be >= 0"),
        (cfg.schedule.epochs >= 1, "schedule.epochs must be >= 1"),
        (cfg.schedule.max_steps >= 0, "schedule.max_steps must be >= 0"),
        (cfg.schedule.warmup_steps >= 0, "schedule.warmup_steps must be >= 0"),
        (0 < cfg.schedule.warmup_factor <= 1, "schedule.warmup_factor must be in (0, 1]"),
        (_increasing_epochs(cfg.schedule.milestones),
         f"schedule.milestones must be epochs (integers >= 0) in increasing order, without repeats; "
         f"got {cfg.schedule.milestones!r}"),
        (cfg.schedule.gamma > 0, "schedule.gamma must be > 0"),
        (0 <= cfg.schedule.min_lr_factor <= 1, "schedule.min_lr_factor must be in [0, 1]"),
        (cfg.run.keep_last >= 1, "run.keep_last must be >= 1"),
        (cfg.run.checkpoint_every_epochs >= 1, "run.checkpoint_every_epochs must be >= 1"),
        (cfg.run.checkpoint_every_steps >= 0, "run.checkpoint_every_steps must be >= 0"),
        (cfg.run.log_every_steps >= 1, "run.log_every_steps must be >= 1"),
        (all(isinstance(i, int) for i in cfg.data.image_ids), "data.image_ids must be a list of integer ids"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    skeletons = get_spec(cfg.data.dataset).skeletons
    if cfg.model.skeleton not in skeletons:
        raise InputError(f"model.skeleton {cfg.model.skeleton!r} is not a {cfg.data.dataset} skeleton "
                         f"(known: {', '.join(sorted(skeletons))})")
    for i, src in enumerate(cfg.data.sources):
        known = {"annotations", "images", "repeat", "split"}
        if not isinstance(src, dict) or "annotations" not in src:
            raise InputError(f"data.sources[{i}] must be a mapping with at least 'annotations'")
        unknown = sorted(set(src) - known)
        if unknown:
            raise InputError(f"data.sources[{i}]: unknown key {unknown[0]} (known: {', '.join(sorted(known))})")
        if not isinstance(src.get("repeat", 1), int) or src.get("repeat", 1) < 1:
            raise InputError(f"data.sources[{i}].repeat must be an integer >= 1")
        for key in ("annotations", "images", "split"):
            if src.get(key) is not None and not isinstance(src[key], str):
                raise InputError(f"data.sources[{i}].{key} must be a string, got {src[key]!r}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One YAML config as a dict; a top-level ``base: FILE`` (relative to this file) is read first and this file's
    keys are merged over it, section by section."""
    if not path.is_file():
        raise InputError(f"config file {path} is a folder, not a YAML file" if path.is_dir()
                         else f"config file {path} does not exist")
    if path.resolve() in seen:
        raise InputError(f"config file {path} is its own base (cycle: {' -> '.join(str(s) for s in seen)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a mapping of sections")
    base = data.pop("base", None)
    try:  # keys and types checked per file: an error names the file that holds the key, not the one above it
        _build(TrainConfig, data, "")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise InputError(f"config file {path}: base must be a file name, not {base!r}")
    base_path = path.parent / base
    if not base_path.exists():
        raise InputError(f"config file {path}: base {base_path} does not exist")
    return _merged(_read_yaml(base_path, (*seen, path.resolve())), data)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, everything else (lists too) is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (``None`` = all defaults; ``base: FILE`` inherits another) and apply ``section.key=value``
    overrides."""
    data = _read_yaml(Path(path)) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    try:
        return config_from_dict(data)
    except InputError as exc:
        if path is not None:
            raise InputError(f"{path}: {exc}") from None
        raise


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
