"""Packaging a trained checkpoint for shipping (``gopose models package``): the embedded default model is made so.

A training checkpoint carries the optimizer state, the data position and every limb the network was trained on.
``package_checkpoint`` keeps what inference needs: the network with the offset channels of one skeleton only (a
network trained on the 50-limb ``all`` skeleton keeps, say, the 31 limbs of ``redundant``; the rest of the network
is unchanged, so its outputs on those channels are bit-identical), float16 weights, the codec with the decoder
defaults and input size chosen for it, the training config (to reproduce it) and the metrics measured on it.
``--average`` makes the weights the mean of several checkpoints of one network (a weight average of runs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from core.errors import InputError
from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.factory import build_model

#: the weights of the offset head, whose output channels are (dx, dy) per limb
_OFFSET_HEAD = "headnets.1.reg_convs."


def keep_skeleton(model: torch.nn.Module, skeleton: str) -> torch.nn.Module:
    """The same network predicting only the limbs of ``skeleton`` (a part of the model's skeleton)."""
    try:
        codec, index = model.codec.with_skeleton(skeleton)
    except (KeyError, ValueError) as exc:
        raise InputError(f"cannot keep skeleton {skeleton!r}: {exc.args[0] if exc.args else exc}") from None
    config = ModelConfig(model.config.arch, codec.contract, dict(model.config.kwargs))
    out = build_model(config)
    channels = torch.as_tensor([c for i in index.tolist() for c in (2 * i, 2 * i + 1)])
    state = {k: (v.index_select(0, channels) if k.startswith(_OFFSET_HEAD) else v)
             for k, v in model.state_dict().items()}
    out.load_state_dict(state)
    out.codec = codec
    return out


def average_weights(model: torch.nn.Module, others: Sequence[tuple[torch.nn.Module, str]]) -> None:
    """Replace ``model``'s floating-point weights (and batch-norm statistics) by their mean over ``model`` and
    ``others`` (``(network, its file)``, the same architecture and output contract): a uniform weight average of
    runs from one starting point, which often scores above each of them."""
    want = model.config.to_dict()
    for other, name in others:
        if other.config.to_dict() != want:
            raise InputError(f"cannot average {name} with the packaged checkpoint: its network "
                             f"{other.config.to_dict()} differs from {want}")
    states = [model.state_dict()] + [other.state_dict() for other, _ in others]
    model.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                           if v.is_floating_point() else v for k, v in states[0].items()})


def package_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, skeleton: str | None = None,
                       half: bool = True, long_edge: int | None = None, decoder: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, Any] | None = None, average: Sequence[str | os.PathLike] = (),
                       arch: str | None = None) -> Path:
    """Write ``src`` as a shippable checkpoint at ``dst``: one skeleton, no training state, fp16 weights, the codec's
    ``long_edge`` and ``decoder`` defaults replaced where given, ``metrics`` recorded; with ``average``, the
    weights are the mean of ``src``'s and those checkpoints' (see :func:`average_weights`). ``arch`` names the
    architecture of checkpoints in the authors' format (ours describe themselves)."""
    model, info = load_checkpoint(src, arch=arch)
    skeleton = skeleton or model.contract.skeleton_name
    if skeleton != model.contract.skeleton_name:
        model = keep_skeleton(model, skeleton)
    others = []
    for path in average:
        other, _ = load_checkpoint(path, arch=arch)
        if skeleton != other.contract.skeleton_name:
            try:
                other = keep_skeleton(other, skeleton)
            except InputError as exc:
                raise InputError(f"cannot average {path} with the packaged checkpoint: {exc}") from None
        others.append((other, str(path)))
    average_weights(model, others)
    codec = model.codec
    try:
        if decoder:
            codec = codec.replace(decoder=codec.decoder_config(**dict(decoder)))
        if long_edge:
            codec = codec.replace(long_edge=int(long_edge))
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid decoder or input setting: {exc}") from None
    model.codec = codec
    recorded = dict(info.get("metrics") or {})
    recorded.update(dict(metrics or {}))
    extra: dict[str, Any] = {"packaged_from": Path(src).name}
    if average:
        extra["averaged_with"] = [Path(p).name for p in average]
    return save_checkpoint(dst, model, epoch=info.get("epoch"), step=info.get("step"), metrics=recorded,
                           train_config=info.get("train_config"), extra=extra, half=half)
