"""The output contract of a pose network: one object the network, encoder, decoder and checkpoint share."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from core.keypoints import KeypointSpec, Skeleton, get_spec


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
    def from_dict(cls, data: dict[str, Any]) -> "PoseContract":
        return cls(spec=get_spec(data["spec"]), skeleton_name=data.get("skeleton", "default"),
                   stride=int(data.get("stride", 4)), with_scale=bool(data.get("with_scale", False)))
