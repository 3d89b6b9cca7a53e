"""Build any GOPose network from a ``ModelConfig`` (architecture name + keyword arguments + contract)."""
from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

from core.contract import PoseContract
from core.errors import InputError
from core.keypoints import get_spec
from models.base import PoseNet
from models.config import ModelConfig

__all__ = ["ModelConfig", "ARCHS", "NetworkOptionError", "build_model", "make_config", "arch_names"]


class NetworkOptionError(InputError):
    """An architecture keyword argument (``--set`` of ``models init``, ``model.kwargs`` of a training config) that
    the network refuses; the message names the option."""


def _hourglass104(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.hourglass import HourglassNet
    return _construct(HourglassNet, contract, kwargs)


def _realtime(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.realtime import RealtimeNet
    return _construct(RealtimeNet, contract, kwargs)


def _mobilenet(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.mobilenet import MobileNetPose
    return _construct(MobileNetPose, contract, kwargs)


def _midsize(contract: PoseContract, **kwargs: Any) -> PoseNet:
    from models.realtime import MidsizeNet
    return _construct(MidsizeNet, contract, kwargs)


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
    try:
        model = ARCHS[config.arch](config.contract, **config.kwargs)
    except TypeError as exc:  # bad keyword argument
        raise InputError(f"architecture {config.arch!r}: {exc}") from None
    except InputError:
        raise
    except ValueError as exc:  # an option of the right kind the network refuses (e.g. 3 widths for 4 stages)
        raise NetworkOptionError(str(exc)) from None
    model.config = ModelConfig(config.arch, config.contract, dict(model.config.kwargs))
    return model


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_option(key: str, value: Any, default: Any) -> None:
    """``NetworkOptionError`` naming ``key`` when ``value`` is not of its default's kind: counts (int defaults: widths,
    depths, channels...) are integers >= 1 (torch builds zero-channel layers with a warning and fails only later,
    and a float reaches it as a channel count), multipliers (float defaults: alpha, offset_gain) numbers > 0."""
    if _is_int(default):
        if not (_is_int(value) and value >= 1):
            raise NetworkOptionError(f"{key} must be an integer >= 1, got {value!r}")
    elif isinstance(default, float):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0):
            raise NetworkOptionError(f"{key} must be a number > 0, got {value!r}")
    elif isinstance(default, (list, tuple)) and all(_is_int(d) for d in default):
        if not (isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 1 for v in value)):
            raise NetworkOptionError(f"{key} must be a list of integers >= 1, got {value!r}")


def _construct(cls: type[PoseNet], contract: PoseContract, kwargs: dict[str, Any]) -> PoseNet:
    """``cls(contract, **kwargs)`` after checking each option against the constructor's default for it (an
    unknown option is left to the constructor's ``TypeError``)."""
    params = inspect.signature(cls.__init__).parameters
    for key, value in kwargs.items():
        if key in params and params[key].default is not inspect.Parameter.empty:
            _check_option(key, value, params[key].default)
    return cls(contract, **kwargs)


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
