"""Reading and writing checkpoints: ours (self-describing) and the authors' (``PoseNet_*_epoch.pth``).

Every file is read with ``torch.load(weights_only=True)``: a pickle that needs arbitrary Python objects is
refused, never executed. Ours stores the model config (architecture, keyword arguments, keypoint spec,
skeleton, heads), the codec (``core.codec``: heatmap sigma, offset window, decoder defaults; files written before
it get sigma and window from their training config), the training config, epoch/step, metrics and a format version;
the authors' format is
``{'epoch', 'train_loss', 'model_state_dict', 'optimizer_state_dict', 'amp'}`` with keys possibly prefixed
``module.`` and needs the architecture name (the contract is read from the head shapes).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from core.codec import Codec
from core.contract import PoseContract
from core.errors import InputError
from core.io.files import AtomicFile
from core.keypoints import SPECS
from models.base import PoseNet
from models.config import ModelConfig
from models.factory import build_model

LOG = logging.getLogger(__name__)

FORMAT = "gopose"
FORMAT_VERSION = 1


class CheckpointError(InputError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model; the message names it."""


# ---------------------------------------------------------------------------------------------- saving
def _plain(obj: Any, where: str = "value") -> Any:
    """Convert to types ``torch.load(weights_only=True)`` accepts (dict/list/str/number/bool/None/tensor)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name), f"{where}.{f.name}") for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        bad = [k for k in obj if not isinstance(k, (str, int, float, bool, type(None)))]
        if bad:
            raise TypeError(f"cannot store {where} with a key of type {type(bad[0]).__name__} in a checkpoint")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (str, int, float, bool, type(None), torch.Tensor)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot store {where} of type {type(obj).__name__} in a checkpoint")


def _unwrap(model: torch.nn.Module) -> PoseNet:
    inner = getattr(model, "module", model)  # DataParallel / DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    if not isinstance(inner, PoseNet):
        raise TypeError(f"expected a PoseNet, got {type(inner).__name__}")
    if getattr(inner, "fused_for_inference", False):
        raise ValueError("this model was fused for inference (batch norms folded); save the unfused model")
    return inner


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file beside ``path`` and a rename (never a truncated checkpoint)."""
    with AtomicFile(path, "wb") as f:
        torch.save(obj, f.handle)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, epoch: int | None = None,
                    step: int | None = None, metrics: Mapping[str, Any] | None = None,
                    train_config: Any = None, extra: Mapping[str, Any] | None = None,
                    optimizer_state: Mapping[str, Any] | None = None, half: bool = False,
                    weights: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write our self-describing checkpoint atomically; returns the path. ``half`` stores floating-point weights
    as float16 (half the file; loading widens them back to the model's float32). ``weights`` (a state dict of
    ``model``'s keys, e.g. a moving average of them) are stored instead of the model's own."""
    net = _unwrap(model)
    state = {k: v.detach().cpu() for k, v in (net.state_dict() if weights is None else weights).items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": net.config.to_dict(),
        "codec": net.codec.to_dict(),
        "model_state_dict": state,
        "epoch": epoch,
        "step": step,
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "train_config": _plain(train_config, "train_config"),
        "extra": _plain(dict(extra or {}), "extra"),
        "optimizer_state_dict": _plain(optimizer_state, "optimizer_state") if optimizer_state else None,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
    }
    return atomic_torch_save(payload, path)


# --------------------------------------------------------------------------------------------- reading
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first object of torch.save's pre-zip format


def _pickle_imports(path: Path, limit: int = 1 << 24) -> list[str]:
    """The ``module.name`` globals a plain pickle would import (read with ``pickletools``, never executed)."""
    import pickletools

    found, strings = [], []
    try:
        with open(path, "rb") as fh:
            for op, arg, _pos in pickletools.genops(fh.read(limit)):
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - a damaged pickle: report what was found before the damage
        pass
    return list(dict.fromkeys(found))


def _damaged_member(zf: zipfile.ZipFile) -> str | None:
    """The first member whose bytes fail their recorded CRC-32, or None. torch reads the archive without checking
    them (a damaged weight would load as garbage); members recorded with CRC 0, as torch writes them after
    ``set_crc32_options(False)``, have nothing to check."""
    for info in zf.infolist():
        if info.CRC == 0:
            continue
        try:
            with zf.open(info) as fh:
                while fh.read(1 << 22):
                    pass
        except zipfile.BadZipFile:  # zipfile checks the CRC when a member is read to its end
            return info.filename
    return None


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a file written by ``torch.save`` (zip archive with ``data.pkl``, or the legacy
    pickle starting with torch's magic number), or None when it may be one."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        return f"cannot read checkpoint {path}: the file is empty (not a PyTorch checkpoint)"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                bad = _damaged_member(zf) if any(n.endswith("data.pkl") for n in names) else None
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError):
            return f"cannot read checkpoint {path}: the file is truncated or damaged (unreadable zip archive)"
        if not any(n.endswith("data.pkl") for n in names):
            return (f"cannot read checkpoint {path}: it is a zip archive but not a PyTorch checkpoint "
                    f"(no data.pkl inside)")
        if any(n.endswith("/constants.pkl") for n in names):  # how torch itself tells TorchScript apart
            return (f"cannot read checkpoint {path}: it is a TorchScript archive (torch.jit.save), not a checkpoint "
                    f"of weights; save its state_dict() with torch.save and use that file (with --arch)")
        if bad is not None:
            return f"cannot read checkpoint {path}: the file is damaged ({bad} fails its checksum)"
        return None
    if head[:1] == b"\x80":  # a pickle; torch's legacy format pickles its magic number first (LONG1 opcode)
        n = head[3] if len(head) > 3 and head[2] == 0x8A else 0
        if n and int.from_bytes(head[4:4 + n], "little") == _TORCH_LEGACY_MAGIC:
            return None
        imports = _pickle_imports(path)
        if imports:
            return (f"refusing {path}: it is not a PyTorch checkpoint but a plain Python pickle that imports "
                    f"{', '.join(imports[:3])}; loading it would run arbitrary Python code")
        return (f"cannot read checkpoint {path}: it is not a PyTorch checkpoint but a plain Python pickle (not a "
                f"file written by torch.save)")
    return (f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (neither torch.save's zip format nor "
            f"its legacy format)")


def _torch_reason(exc: BaseException) -> str:
    """The informative line of a torch.load error (without its generic advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    generic = ("Weights only load failed", "Check the documentation", "Please file an issue", "In PyTorch 2.6")
    useful = [line for line in lines if not line.startswith(generic)]
    text = useful[-1] if useful else lines[0] if lines else ""
    if not isinstance(exc, (RuntimeError, pickle.UnpicklingError)):  # e.g. struct.error, KeyError: name the kind
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:300]


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The raw contents of a checkpoint, loaded weights-only; ``CheckpointError`` when unsafe or unreadable
    (a file that is not a PyTorch checkpoint at all is told apart before torch reads it)."""
    import warnings

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists()
                              else f"checkpoint {path} is not a file")
    try:
        why = _not_a_checkpoint(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if why is not None:
        raise CheckpointError(why)
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols is not for our users
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        unsafe = next((line for line in lines if "GLOBAL" in line), None)
        if unsafe is None:  # garbage rather than a forbidden object
            raise CheckpointError(f"cannot read checkpoint {path}: {_torch_reason(exc)} "
                                  f"(truncated or damaged?)") from None
        raise CheckpointError(
            f"refusing checkpoint {path}: it is not a weights-only file ({unsafe}). Loading it would run "
            f"arbitrary Python code. If you trust its source, load it once with torch.load(weights_only=False), "
            f"re-save only its tensors (e.g. its 'model_state_dict') and use that file.") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file makes torch.load raise almost anything
        raise CheckpointError(f"cannot read checkpoint {path}: {_torch_reason(exc)} (truncated or damaged?)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, expected a dict")
    return data


def checkpoint_kind(data: Mapping[str, Any]) -> str:
    """``'gopose'``, ``'authors'`` (``model_state_dict`` + ``epoch``...), ``'state_dict'`` (bare tensors)."""
    if data.get("format") == FORMAT:
        return FORMAT
    if isinstance(data.get("model_state_dict"), Mapping):
        return "authors"
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return "state_dict"
    return "unknown"


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop the DataParallel/DDP prefix from every key that has it."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def infer_contract(state_dict: Mapping[str, torch.Tensor], spec: str | None = None,
                   skeleton: str | None = None) -> PoseContract:
    """Recover the output contract from the head shapes of an authors'-layout state dict."""
    try:
        n_kp = state_dict["headnets.0.hp_convs.0.weight"].shape[0]
        n_off = state_dict["headnets.1.reg_convs.0.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"state dict has no head weights {exc.args[0]!r}; not a GOPose/authors' layout") from None
    with_scale = "headnets.1.scale_convs.0.weight" in state_dict
    candidates = [SPECS[spec]] if spec else [s for s in SPECS.values() if s.n_keypoints == n_kp]
    for sp in candidates:
        names = [skeleton] if skeleton else ["default"] + [n for n in sp.skeletons if n != "default"]
        for name in names:
            if name in sp.skeletons and sp.n_keypoints == n_kp and 2 * len(sp.skeletons[name]) == n_off:
                return PoseContract(sp, skeleton_name=name, with_scale=with_scale)
    raise CheckpointError(f"no keypoint spec/skeleton gives {n_kp} heatmaps and {n_off} offset channels "
                          f"(spec={spec}, skeleton={skeleton})")


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load; every missing, unexpected and mis-shaped key is listed in one ``CheckpointError``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def block(title: str, items: list[str]) -> str:
            if not items:
                return ""
            more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(items[:20]) + more
        raise CheckpointError(f"{source} does not fit the {getattr(model, 'arch', type(model).__name__)} model:"
                              + block("missing keys", missing) + block("unexpected keys", unexpected)
                              + block("shape mismatches", shapes))
    model.load_state_dict(state_dict, strict=True)


def _stored_codec(data: Mapping[str, Any], model: PoseNet, path: Any) -> Codec:
    """The codec a GOPose checkpoint stores; for files older than codecs, sigma and window of its training config."""
    stored = data.get("codec")
    try:
        if stored is None:
            return Codec.from_train_config(model.contract, data.get("train_config"))
        codec = Codec.from_dict(stored, contract=model.contract)
        contract = PoseContract.from_dict(stored["contract"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid codec: {exc}") from None
    if contract != model.contract:
        raise CheckpointError(f"checkpoint {path}: its codec's contract {stored['contract']} differs from its "
                              f"model's {model.contract.to_dict()}")
    return codec


def _tensors(state: Any, path: Any) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict, checked to map names to tensors, ``module.`` prefixes removed."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path}: its model_state_dict is a {type(state).__name__}, expected a dict")
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path}: its model_state_dict entry {bad!r} is a "
                              f"{type(state[bad]).__name__}, not a tensor")
    return strip_prefix(state)


def _build(config: ModelConfig, path: Any) -> PoseNet:
    """The network ``config`` describes; a config this GOPose cannot build is an error naming the file."""
    try:
        return build_model(config)
    except (InputError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: cannot build its {config.arch!r} model: {exc}") from None


def load_checkpoint(path: str | os.PathLike, arch: str | None = None, map_location: Any = "cpu", *,
                    spec: str | None = None, skeleton: str | None = None) -> tuple[PoseNet, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights; returns ``(model, info)``.

    ``arch`` is required for the authors' format (and bare state dicts), optional for ours (checked if given).
    ``info`` holds ``kind``, ``format_version``, ``epoch``, ``step``, ``metrics``, ``train_config``, ``extra``,
    ``train_loss``, ``optimizer_state_dict``, ``model_config`` and ``path``.
    """
    data = read_checkpoint(path, map_location)
    kind = checkpoint_kind(data)
    info: dict[str, Any] = {"kind": kind, "format": kind, "path": str(path)}
    if kind == FORMAT:
        version = data.get("format_version", 0)
        if not isinstance(version, int):
            raise CheckpointError(f"checkpoint {path} has an invalid format version {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {path} has format version {version}; this GOPose reads up to "
                                  f"{FORMAT_VERSION}")
        try:
            config = ModelConfig.from_dict(data["model_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from None
        if arch is not None and arch != config.arch:
            raise CheckpointError(f"checkpoint {path} holds a {config.arch!r} model, not {arch!r}")
        state = _tensors(data.get("model_state_dict"), path)
        info.update({k: data.get(k) for k in ("format_version", "epoch", "step", "metrics", "train_config",
                                               "extra", "optimizer_state_dict", "saved_at")})
    elif kind in ("authors", "state_dict"):
        if arch is None:
            raise CheckpointError(f"checkpoint {path} is in the authors' format (no model description); "
                                  f"name its architecture (e.g. arch='hourglass104' / --arch hourglass104)")
        state = _tensors(data["model_state_dict"] if kind == "authors" else data, path)
        try:
            contract = infer_contract(state, spec, skeleton)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
        config = ModelConfig(arch, contract, {})
        info.update({"format_version": None, "epoch": data.get("epoch"), "step": None, "metrics": {},
                     "train_config": None, "extra": {}, "train_loss": data.get("train_loss"),
                     "optimizer_state_dict": data.get("optimizer_state_dict"), "amp": data.get("amp")})
    else:
        raise CheckpointError(f"checkpoint {path} is neither a GOPose checkpoint nor the authors' format "
                              f"(top-level keys: {sorted(map(str, data))[:10]})")
    model = _build(config, path)
    load_weights(model, state, source=f"checkpoint {path}")
    model.codec = _stored_codec(data, model, path) if kind == FORMAT else Codec(model.contract)
    info["codec"] = model.codec.to_dict()
    info["model_config"] = model.config.to_dict()
    LOG.info("loaded %s checkpoint %s (%s, epoch %s)", kind, path, config.arch, info.get("epoch"))
    return model, info
