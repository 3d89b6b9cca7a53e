"""The codec: a model's output contract plus every parameter its target encoder and decoder must share.

One object describes how people become maps (training) and maps become people (inference): the keypoint spec,
skeleton, stride and heads (``PoseContract``), the heatmap Gaussian's sigma, the offset window and the decoder's
defaults (thresholds tuned for the model, ``long_edge``: the input size it is meant to run at). Every checkpoint
stores it; the encoder (``Codec.encoder``), the decoder (``Codec.decoder_config`` / ``Codec.decode``) and the
oracle all take their parameters from it, so they cannot drift apart. No global state: a codec is a frozen value.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from core.contract import PoseContract, checked, checked_mapping
from core.decoder import DecoderConfig, decode
from core.encoder import DEFAULT_SIGMA, DEFAULT_WINDOW, TargetEncoder
from core.errors import InputError
from core.poses import Poses

#: decoder fields a checkpoint's codec may set (``sigma`` always comes from the codec itself)
_DECODER_FIELDS = tuple(f.name for f in dataclasses.fields(DecoderConfig) if f.name != "sigma")
#: the fields ``Codec.to_dict`` writes
_CODEC_FIELDS = ("contract", "sigma", "window", "min_heat", "decoder", "long_edge")


@dataclass(frozen=True)
class Codec:
    """``contract`` + encoder parameters (``sigma`` in input px, offset ``window`` in cells, ``min_heat``) +
    the decoder's defaults + the input ``long_edge`` the model is meant to run at."""

    contract: PoseContract
    sigma: float = DEFAULT_SIGMA
    window: int = DEFAULT_WINDOW
    min_heat: float = 0.01
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    long_edge: int = 512

    def __post_init__(self) -> None:
        if not 0 < self.sigma < float("inf") or self.window < 1 or not 0 < self.min_heat < 1 or self.long_edge < 32:
            raise ValueError(f"invalid codec: sigma={self.sigma}, window={self.window}, min_heat={self.min_heat}, "
                             f"long_edge={self.long_edge}")
        if self.decoder.sigma != self.sigma:  # the decoder localises peaks with the Gaussian the encoder drew
            object.__setattr__(self, "decoder", self.decoder.with_(sigma=float(self.sigma)))

    def lowest_peak(self) -> float:
        """The heatmap peak the encoder draws for a keypoint halfway between cell centres on both axes (the
        Gaussian is evaluated at cell centres only): a sigma much below the stride leaves such peaks under the
        decoder's threshold."""
        return float(np.exp(-self.contract.stride ** 2 / (4.0 * self.sigma ** 2)))

    # ------------------------------------------------------------------ encoding and decoding
    def encoder(self) -> TargetEncoder:
        return TargetEncoder(self.contract, sigma=self.sigma, window=self.window, min_heat=self.min_heat)

    def decoder_config(self, **overrides: Any) -> DecoderConfig:
        """The model's decoder defaults with ``overrides`` (None values are ignored); sigma stays the codec's."""
        fields = {k: v for k, v in overrides.items() if v is not None}
        if "sigma" in fields:
            raise ValueError("the decoder's sigma is the codec's heatmap sigma; change the codec instead")
        return self.decoder.with_(**fields) if fields else self.decoder

    def decode(self, heatmaps, offsets, scales=None, config: DecoderConfig | None = None) -> list[Poses]:
        """``core.decoder.decode`` with this codec's contract and (by default) decoder settings."""
        return decode(heatmaps, offsets, self.contract, config or self.decoder, scales=scales)

    # ------------------------------------------------------------------ variants
    def replace(self, **fields: Any) -> "Codec":
        return dataclasses.replace(self, **fields)

    def with_skeleton(self, skeleton: str) -> tuple["Codec", np.ndarray]:
        """The codec of a sub-skeleton and the indices of its limbs among this one's (for ``select_limbs``)."""
        index = self.contract.limb_indices(skeleton)
        contract = PoseContract(self.contract.spec, skeleton_name=skeleton, stride=self.contract.stride,
                                with_scale=self.contract.with_scale)
        return self.replace(contract=contract), index

    @staticmethod
    def select_limbs(offsets: torch.Tensor, limb_index: np.ndarray) -> torch.Tensor:
        """The ``(N, 2L', h, w)`` offset channels of the limbs ``limb_index`` of ``(N, 2L, h, w)`` offsets."""
        idx = torch.as_tensor(np.stack([2 * limb_index, 2 * limb_index + 1], 1).reshape(-1), device=offsets.device)
        return offsets.index_select(1, idx)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        decoder = {k: getattr(self.decoder, k) for k in _DECODER_FIELDS}
        return {"contract": self.contract.to_dict(), "sigma": self.sigma, "window": self.window,
                "min_heat": self.min_heat, "decoder": decoder, "long_edge": self.long_edge}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], contract: PoseContract | None = None) -> "Codec":
        """Rebuild a stored codec (``contract`` replaces the stored one when given); an unknown field, a decoder
        setting or field of the wrong type is an ``InputError`` naming it, missing ones keep their defaults."""
        data = checked_mapping(data, "codec", _CODEC_FIELDS)
        decoder = checked_mapping(data.get("decoder") or {}, "codec field 'decoder'", _DECODER_FIELDS)
        if contract is None:
            if "contract" not in data:
                raise InputError("codec has no 'contract' field")
            contract = PoseContract.from_dict(data["contract"])

        def field(key: str, kind: type, default: Any) -> Any:
            return checked(data.get(key, default), kind, f"codec field {key!r}")

        return cls(contract=contract, sigma=field("sigma", float, DEFAULT_SIGMA),
                   window=field("window", int, DEFAULT_WINDOW), min_heat=field("min_heat", float, 0.01),
                   decoder=DecoderConfig(**decoder), long_edge=field("long_edge", int, 512))

    @classmethod
    def from_train_config(cls, contract: PoseContract, train_config: Mapping[str, Any] | None) -> "Codec":
        """The codec of a checkpoint written before codecs were stored: sigma and window from its training
        config where it has one, the defaults otherwise."""
        config = checked_mapping(train_config or {}, "train_config")
        data = checked_mapping(config.get("data") or {}, "train_config field 'data'")
        return cls(contract, sigma=checked(data.get("target_sigma", DEFAULT_SIGMA), float, "data.target_sigma"),
                   window=checked(data.get("target_window", DEFAULT_WINDOW), int, "data.target_window"))
