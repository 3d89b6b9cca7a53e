"""Build any GOPose network from a ``ModelConfig`` (architecture name + keyword arguments + contract)."""
from __future__ import annotations

from typing import Any, Callable

from core.contract import PoseContract
from core.errors import InputError
from core.keypoints import get_spec
from models.base import PoseNet
from models.config import ModelConfig

__all__ = ["ModelConfig", "ARCHS", "build_model", "make_config", "arch_names"]


def _hourglass104(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.hourglass import HourglassNet
    return HourglassNet(contract, **kwargs)


def _realtime(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.realtime import RealtimeNet
    return RealtimeNet(contract, **kwargs)


def _mobilenet(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.mobilenet import MobileNetPose
    return MobileNetPose(contract, **kwargs)


def _midsize(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.realtime import MidsizeNet
    return MidsizeNet(contract, **kwargs)


#: architecture name -> builder(contract, **kwargs); each builder imports its module lazily.
ARCHS: dict[str, Callable[..., PoseNet]] = {
    "hourglass104": _hourglass104,
    "realtime": _realtime,
    "midsize": _midsize,
    "mobilenet": _mobilenet,
}


def arch_names() -> list[str]:
    return list(ARCHS)


def build_model(config: ModelConfig) -> PoseNet:
    """Build the network ``config`` describes (random initialisation)."""
    if config.arch not in ARCHS:
        raise InputError(f"unknown architecture {config.arch!r}; choose from {', '.join(ARCHS)}")
    _check_sizes(config.kwargs)
    try:
        model = ARCHS[config.arch](config.contract, **config.kwargs)
    except TypeError as exc:  # bad keyword argument
        raise InputError(f"architecture {config.arch!r}: {exc}") from None
    model.config = ModelConfig(config.arch, config.contract, dict(model.config.kwargs))
    return model


def _check_sizes(kwargs: dict[str, Any]) -> None:
    """``ValueError`` for a width, depth or count below 1 (every integer option of every architecture is one):
    torch would build zero-channel layers, with a warning, and fail only later."""
    for key, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
            raise ValueError(f"{key} must be >= 1, got {value}")


def make_config(arch: str, spec: str = "coco", skeleton: str = "default", with_scale: bool = False,
                **kwargs: Any) -> ModelConfig:
    """Convenience: a ``ModelConfig`` from plain names (as the command line gives them)."""
    try:
        contract = PoseContract(get_spec(spec), skeleton_name=skeleton, with_scale=with_scale)
    except KeyError as exc:
        raise InputError(str(exc.args[0]) if exc.args else str(exc)) from None
    if arch not in ARCHS:
        raise InputError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    return ModelConfig(arch, contract, kwargs)
