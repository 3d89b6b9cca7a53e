"""Keypoint specifications: names, OKS sigmas, left/right flip permutation and skeletons.

A skeleton is an ordered tuple of limbs ``(start, end)``; the order is the order in which the
greedy decoder grows people, and limb ``l`` owns offset channels ``2l`` (x) and ``2l + 1`` (y).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

Limb = tuple[int, int]
Skeleton = tuple[Limb, ...]

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)

# The paper's default skeleton (19 limbs, the authors' order): head, shoulders, arms, torso, legs.
COCO_SKELETON_19: Skeleton = (
    (0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (5, 6), (4, 6), (3, 5),
    (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12), (11, 13),
    (13, 15), (12, 14), (14, 16),
)
# The same limbs grown from the ankles up (the authors' "down-up" ordering).
COCO_SKELETON_DOWNUP: Skeleton = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12),
    (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2),
    (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# The paper's skeleton with redundant connections (31 limbs).
COCO_SKELETON_REDUNDANT: Skeleton = COCO_SKELETON_19 + (
    (1, 5), (2, 6), (5, 12), (6, 11), (11, 14), (12, 13),
    (5, 9), (6, 10), (11, 15), (12, 16), (5, 0), (6, 0),
)
# The paper's densest variant (44 limbs).
COCO_SKELETON_DENSE: Skeleton = (
    (0, 1), (0, 2), (1, 2), (0, 3), (0, 4), (3, 4), (0, 5), (0, 6), (1, 5),
    (2, 6), (1, 3), (2, 4), (3, 5), (4, 6), (5, 6), (5, 11), (6, 12), (5, 12),
    (6, 11), (11, 12), (5, 7), (6, 8), (7, 9), (8, 10), (5, 9), (6, 10), (7, 8),
    (9, 10), (9, 11), (10, 12), (9, 13), (10, 14), (13, 11), (14, 12),
    (11, 14), (12, 13), (11, 15), (12, 16), (15, 13), (16, 14),
    (13, 16), (14, 15), (13, 14), (15, 16),
)
# Every limb of the three above, once per direction used (50 limbs): train on it once, then compare the skeletons
# on the trained network's own output by decoding their limbs' channels (``PoseContract.limb_indices``).
COCO_SKELETON_ALL: Skeleton = COCO_SKELETON_REDUNDANT + tuple(
    limb for limb in COCO_SKELETON_DENSE if limb not in COCO_SKELETON_REDUNDANT)

CROWDPOSE_KEYPOINTS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)
CROWDPOSE_SIGMAS = (
    0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
    0.087, 0.087, 0.089, 0.089, 0.079, 0.079,
)
# 15 limbs: head->neck, neck->shoulders, shoulders, hips, arms, torso sides, legs.
CROWDPOSE_SKELETON_15: Skeleton = (
    (12, 13), (13, 0), (13, 1), (0, 1), (6, 7), (0, 2), (2, 4), (1, 3),
    (3, 5), (0, 6), (1, 7), (6, 8), (8, 10), (7, 9), (9, 11),
)
# Ours: the 15 limbs plus crossing torso, hip-knee and shoulder-wrist redundancies.
CROWDPOSE_SKELETON_DENSE: Skeleton = CROWDPOSE_SKELETON_15 + (
    (12, 0), (12, 1), (0, 7), (1, 6), (0, 4), (1, 5), (6, 9), (7, 8),
    (6, 10), (7, 11), (13, 6), (13, 7),
)


def _mirror_name(name: str) -> str:
    """The name of a keypoint's mirror image (left <-> right, others unchanged)."""
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


def _flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    """Index of each keypoint's mirror image (left <-> right, others unchanged)."""
    return tuple(names.index(_mirror_name(name)) for name in names)


@dataclass(frozen=True)
class KeypointSpec:
    """A keypoint layout: names, OKS sigmas, flip permutation and named skeletons."""

    name: str
    keypoints: tuple[str, ...]
    sigmas: tuple[float, ...]
    skeletons: Mapping[str, Skeleton] = field(hash=False, compare=False)
    default_skeleton: str = "default"

    def __post_init__(self) -> None:
        if len(self.sigmas) != len(self.keypoints):
            raise ValueError(f"spec {self.name!r}: {len(self.sigmas)} sigmas for {len(self.keypoints)} keypoints")
        unpaired = [n for n in self.keypoints if _mirror_name(n) not in self.keypoints]
        if unpaired:
            raise ValueError(f"spec {self.name!r}: keypoint {unpaired[0]!r} has no {_mirror_name(unpaired[0])!r} "
                             "(the flip test needs both)")
        for sk_name, skeleton in self.skeletons.items():
            for i, (a, b) in enumerate(skeleton):
                if not (0 <= a < self.n_keypoints and 0 <= b < self.n_keypoints) or a == b:
                    raise ValueError(f"spec {self.name!r}: skeleton {sk_name!r} has invalid limb {(a, b)}")
                if (a, b) in skeleton[:i]:  # limb l owns offset channels 2l, 2l+1: a copy has no channels of its own
                    raise ValueError(f"spec {self.name!r}: skeleton {sk_name!r} repeats limb {(a, b)}")

    @property
    def n_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        return _flip_permutation(self.keypoints)

    def skeleton(self, name: str | None = None) -> Skeleton:
        """The named skeleton (the spec's default when ``name`` is None)."""
        key = name or self.default_skeleton
        if key not in self.skeletons:
            raise KeyError(f"spec {self.name!r} has no skeleton {key!r}; choose from {sorted(self.skeletons)}")
        return self.skeletons[key]


COCO = KeypointSpec(
    name="coco",
    keypoints=COCO_KEYPOINTS,
    sigmas=COCO_SIGMAS,
    skeletons={
        "default": COCO_SKELETON_19,
        "downup": COCO_SKELETON_DOWNUP,
        "redundant": COCO_SKELETON_REDUNDANT,
        "dense": COCO_SKELETON_DENSE,
        "all": COCO_SKELETON_ALL,
    },
)

CROWDPOSE = KeypointSpec(
    name="crowdpose",
    keypoints=CROWDPOSE_KEYPOINTS,
    sigmas=CROWDPOSE_SIGMAS,
    skeletons={"default": CROWDPOSE_SKELETON_15, "dense": CROWDPOSE_SKELETON_DENSE},
)

SPECS: dict[str, KeypointSpec] = {"coco": COCO, "crowdpose": CROWDPOSE}


def get_spec(name: str) -> KeypointSpec:
    """Look up a keypoint spec by name (``coco`` or ``crowdpose``)."""
    try:
        return SPECS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown keypoint spec {name!r}; choose from {sorted(SPECS)}") from None
