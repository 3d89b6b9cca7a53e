"""The output contract of a pose network: one object the network, encoder, decoder and checkpoint share."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from core.errors import InputError
from core.keypoints import KeypointSpec, Skeleton, get_spec

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def checked(value: Any, kind: type, name: str) -> Any:
    """``value`` as a ``kind`` (bool, int, float or str), or an ``InputError`` naming ``name``: a stored or
    overridden setting of the wrong type is never silently converted (``bool("false")`` is True, ``int(4.7)`` 4).
    Integers are accepted for floats and integral floats for integers; NaN is no number."""
    if kind is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif isinstance(value, (bool, np.bool_)):
        ok = False
    elif kind is int:
        ok = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not math.isnan(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise InputError(f"{name} must be {_KINDS.get(kind, kind.__name__)}, got {type(value).__name__} {value!r}")
    return kind(value)


def checked_mapping(data: Any, name: str, known: Any = None) -> Mapping[str, Any]:
    """``data`` if it is a mapping with only ``known`` keys (any keys when None), else an ``InputError``."""
    if not isinstance(data, Mapping):
        raise InputError(f"{name} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known)) if known is not None else []
    if unknown:
        raise InputError(f"unknown {name} field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return data


@dataclass(frozen=True)
class PoseContract:
    """What a network outputs at ``stride``: K heatmaps, 2L guiding offsets, optionally K keypoint scales.

    Offsets are stored per limb as channels ``(2l, 2l+1) = (dx, dy)`` in input pixels; heatmap and scale
    channels follow the spec's keypoint order.
    """

    spec: KeypointSpec
    skeleton_name: str = "default"
    stride: int = 4
    with_scale: bool = False

    def __post_init__(self) -> None:
        self.spec.skeleton(self.skeleton_name)  # validates the name
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def skeleton(self) -> Skeleton:
        return self.spec.skeleton(self.skeleton_name)

    @cached_property
    def limbs(self) -> np.ndarray:
        """``(L, 2)`` int64 array of (start, end) keypoint indices."""
        return np.asarray(self.skeleton, dtype=np.int64).reshape(-1, 2)

    @property
    def n_keypoints(self) -> int:
        return self.spec.n_keypoints

    @property
    def n_limbs(self) -> int:
        return len(self.skeleton)

    @property
    def heatmap_channels(self) -> int:
        return self.n_keypoints

    @property
    def offset_channels(self) -> int:
        return 2 * self.n_limbs

    @property
    def scale_channels(self) -> int:
        return self.n_keypoints if self.with_scale else 0

    @cached_property
    def limb_flip(self) -> tuple[np.ndarray, np.ndarray]:
        """For each limb: the index of its mirror limb (-1 when the mirror is absent or reversed) and a
        boolean "mirror found" mask. A limb whose mirror is only present reversed (e.g. shoulder->shoulder)
        has no usable flipped offset field, because its field lives at the other keypoint."""
        perm = self.spec.flip_permutation
        index = {tuple(limb): i for i, limb in enumerate(self.skeleton)}
        mirror = np.full(self.n_limbs, -1, dtype=np.int64)
        for i, (a, b) in enumerate(self.skeleton):
            mirror[i] = index.get((perm[a], perm[b]), -1)
        return mirror, mirror >= 0

    def limb_indices(self, skeleton_name: str) -> np.ndarray:
        """Index in this contract's skeleton of every limb of the spec's skeleton ``skeleton_name`` (same order);
        ``ValueError`` when one is missing. Decoding a network through a sub-skeleton uses these channels."""
        index = {tuple(limb): i for i, limb in enumerate(self.skeleton)}
        wanted = self.spec.skeleton(skeleton_name)
        missing = [limb for limb in wanted if tuple(limb) not in index]
        if missing:
            raise ValueError(f"skeleton {skeleton_name!r} is not part of {self.skeleton_name!r}: limbs {missing[:3]} "
                             "are missing")
        return np.asarray([index[tuple(limb)] for limb in wanted], np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.name, "skeleton": self.skeleton_name, "stride": self.stride,
                "with_scale": self.with_scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PoseContract":
        """The contract ``to_dict`` stored; a missing ``spec``, an unknown field or one of the wrong type is an
        ``InputError`` naming the field."""
        data = checked_mapping(data, "contract", ("spec", "skeleton", "stride", "with_scale"))
        if "spec" not in data:
            raise InputError("contract has no 'spec' field")

        def field(key: str, kind: type, default: Any) -> Any:
            return checked(data.get(key, default), kind, f"contract field {key!r}")

        return cls(spec=get_spec(field("spec", str, None)), skeleton_name=field("skeleton", str, "default"),
                   stride=field("stride", int, 4), with_scale=field("with_scale", bool, False))
