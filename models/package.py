"""Packaging a trained checkpoint for shipping (``gopose models package``): the embedded default model is made so.

A training checkpoint carries the optimizer state, the data position and every limb the network was trained on.
``package_checkpoint`` keeps what inference needs: the network with the offset channels of one skeleton only (a
network trained on the 50-limb ``all`` skeleton keeps, say, the 31 limbs of ``redundant``; the rest of the network
is unchanged, so its outputs on those channels are bit-identical), float16 weights, the codec with the decoder
defaults and input size chosen for it, the training config (to reproduce it) and the metrics measured on it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

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


def package_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, skeleton: str | None = None,
                       half: bool = True, long_edge: int | None = None, decoder: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``src`` as a shippable checkpoint at ``dst``: one skeleton, no training state, fp16 weights, the codec's
    ``long_edge`` and ``decoder`` defaults replaced where given, ``metrics`` recorded."""
    model, info = load_checkpoint(src)
    if skeleton and skeleton != model.contract.skeleton_name:
        model = keep_skeleton(model, skeleton)
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
    return save_checkpoint(dst, model, epoch=info.get("epoch"), step=info.get("step"), metrics=recorded,
                           train_config=info.get("train_config"), extra={"packaged_from": Path(src).name},
                           half=half)
