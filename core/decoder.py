"""Greedy offset-guided decoding: stride-4 heatmaps and guiding offsets to people.

Pipeline (all per batch in torch, CPU or CUDA, then a small integer-exact grouping per image in NumPy):

1. keypoint candidates: 3x3 peaks of each heatmap, top-K per channel above ``threshold``;
2. sub-pixel localisation: a parabola through the log-heatmap at the peak and its neighbours (exact for
   Gaussian peaks), so nothing is upsampled;
3. limb candidates: for limb (a, b), each start candidate's cell centre plus the offset stored there is the
   guided point; every end candidate within the acceptance distance of it forms a candidate scored as in the
   paper, ``s_a * s_b * exp(-d / limb_length)``;
4. greedy grouping over limbs in skeleton order: within a limb type the best-scored candidates are taken first and
   each candidate keypoint is used once; people are grown, joined or merged by exact candidate ids;
5. leftover candidates become single-keypoint people and every person is scored and sorted.

``peak_mode='upsample'`` reproduces the paper's way (upsample the maps by the stride, then take peaks) for
comparisons; the grouping is the same.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from core.contract import PoseContract, checked
from core.encoder import DEFAULT_SIGMA
from core.poses import Poses


_FIELD_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder settings; the defaults are the paper's evaluation settings where it has them."""

    topk: int = 32                   # candidates per keypoint type
    threshold: float = 0.04          # minimum heatmap peak value
    dist_max: float = 40.0           # limb acceptance: max distance (input px) guided point <-> end keypoint
    min_limb_length: float = 3.0     # floor of the limb length in the score exp(-d / length)
    person_threshold: float = 0.0    # drop people scoring below this
    person_score: str = "linked"     # 'linked': sum over keypoints of score x its best link's agreement exp(-d/len),
                                     # / K; 'coverage': sum of keypoint scores / K; 'mean': mean over present ones
    single_keypoints: bool = True    # leftover candidates become single-keypoint people
    single_threshold: float = 0.1    # ... if their peak is at least this
    max_people: int = 100            # keep at most this many people per image
    refine: bool = True              # sub-pixel peak localisation
    nms_kernel: int = 3
    sigma: float = DEFAULT_SIGMA     # heatmap Gaussian sigma (input px) the network was trained with (edge peaks);
                                     # a model's codec sets it
    peak_mode: str = "stride4"       # 'stride4' (ours) or 'upsample' (the paper's: maps upsampled by the stride)
    limb_norm: str = "predicted"     # divisor of d in exp(-d / length): 'predicted' (the guiding offset's length),
                                     # 'distance' (between the two candidates: rewards far ends) or 'constant'
    limb_length: float = 16.0        # the 'constant' divisor, and the floor of 'predicted', in input px
    order: str = "score"             # group all links best-first ('score') or limb types in skeleton order
    single_radius: float = 8.0       # no single-keypoint person within this many px of a same-type keypoint

    def __post_init__(self) -> None:
        for f in fields(self):  # a stored or overridden setting of the wrong type names itself; 32.0 becomes 32
            value = checked(getattr(self, f.name), _FIELD_KINDS[f.type], f"decoder setting {f.name!r}")
            object.__setattr__(self, f.name, value)
        rules = ((self.topk >= 1, "topk", "must be >= 1"),
                 (0 < self.threshold <= 1, "threshold", "must be in (0, 1] (heatmap peaks are)"),
                 (self.dist_max > 0, "dist_max", "must be > 0"),
                 (self.nms_kernel >= 1 and self.nms_kernel % 2 == 1, "nms_kernel", "must be an odd number >= 1"))
        for ok, name, rule in rules:
            if not ok:
                raise ValueError(f"decoder setting {name!r} {rule}, got {getattr(self, name)!r}")
        if self.max_people < 0:  # a negative slice bound would silently drop the last people
            raise ValueError(f"decoder setting 'max_people' must be >= 0, got {self.max_people}")
        if self.person_score not in ("coverage", "mean", "linked"):
            raise ValueError(f"person_score must be 'coverage', 'mean' or 'linked', got {self.person_score!r}")
        if self.peak_mode not in ("stride4", "upsample"):
            raise ValueError(f"peak_mode must be 'stride4' or 'upsample', got {self.peak_mode!r}")
        if self.limb_norm not in ("predicted", "distance", "constant") or self.limb_length <= 0:
            raise ValueError(f"limb_norm must be predicted, distance or constant with limb_length > 0, "
                             f"got {self.limb_norm!r}, {self.limb_length}")
        if self.order not in ("skeleton", "score"):
            raise ValueError(f"order must be 'skeleton' or 'score', got {self.order!r}")

    def with_(self, **fields) -> "DecoderConfig":
        return replace(self, **fields)


@dataclass
class _Candidates:
    """Per batch: candidate keypoints and limb candidates, as NumPy arrays."""

    xy: np.ndarray          # (N, K, T, 2) input pixels
    score: np.ndarray       # (N, K, T), 0 where below threshold
    limb_score: np.ndarray  # (N, L, T, T), 0 where not an acceptable limb


def _as_tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x


def _check_shapes(heatmaps: torch.Tensor, offsets: torch.Tensor, contract: PoseContract, scales) -> None:
    if heatmaps.ndim != 4 or offsets.ndim != 4:
        raise ValueError(f"heatmaps and offsets must be (N, C, h, w), got {tuple(heatmaps.shape)} and "
                         f"{tuple(offsets.shape)}")
    if heatmaps.shape[1] != contract.heatmap_channels or offsets.shape[1] != contract.offset_channels:
        raise ValueError(f"expected {contract.heatmap_channels} heatmap and {contract.offset_channels} offset "
                         f"channels for {contract.spec.name}/{contract.skeleton_name}, got {heatmaps.shape[1]} "
                         f"and {offsets.shape[1]}")
    if heatmaps.shape[0] != offsets.shape[0] or heatmaps.shape[2:] != offsets.shape[2:]:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} and offsets {tuple(offsets.shape)} do not match")
    if scales is not None and scales.shape != heatmaps.shape:
        raise ValueError(f"scales {tuple(scales.shape)} do not match heatmaps {tuple(heatmaps.shape)}")


def _subpixel(flat: torch.Tensor, idx: torch.Tensor, w: int, h: int, sigma_cells: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak position inside its cell, per axis, in cells: the vertex of the parabola through the log-map at the
    peak and its two neighbours (exact for a Gaussian). On the map's edge, where one neighbour is missing, the
    parabola's curvature is taken from the Gaussian's ``sigma_cells``, so border keypoints are localised too."""
    last = flat.shape[-1] - 1
    logc = torch.log(flat.gather(-1, idx).clamp_min(1e-6))
    curv = sigma_cells ** 2

    def axis(lo_ok, hi_ok, step):
        lo = torch.log(flat.gather(-1, (idx - step).clamp(0, last)).clamp_min(1e-6))
        hi = torch.log(flat.gather(-1, (idx + step).clamp(0, last)).clamp_min(1e-6))
        den = lo - 2 * logc + hi
        both = torch.where(den < -1e-9, 0.5 * (lo - hi) / den.clamp(max=-1e-9), torch.zeros_like(den))
        only_hi = 0.5 + curv * (hi - logc)       # left/top edge: Gaussian through peak and next cell
        only_lo = -0.5 - curv * (lo - logc)      # right/bottom edge
        d = torch.where(lo_ok & hi_ok, both,
                        torch.where(hi_ok, only_hi, torch.where(lo_ok, only_lo, torch.zeros_like(both))))
        return d.clamp(-0.5, 0.5)

    x, y = idx % w, idx // w
    return axis(x > 0, x < w - 1, 1), axis(y > 0, y < h - 1, w)


def _peaks(hm: torch.Tensor, kernel: int) -> torch.Tensor:
    """Cells that are the maximum of their ``kernel`` x ``kernel`` neighbourhood, exactly one per plateau: a cell
    must be >= its later neighbours (raster order) and > its earlier ones. Shifted comparisons, no indices (a
    max-pool computes indices it never uses)."""
    r = kernel // 2
    h, w = hm.shape[-2:]
    padded = F.pad(hm, (r, r, r, r), value=float("-inf"))
    peak = torch.ones_like(hm, dtype=torch.bool)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy == 0 and dx == 0:
                continue
            nb = padded[..., r + dy:r + dy + h, r + dx:r + dx + w]
            peak &= (hm > nb) if (dy, dx) < (0, 0) else (hm >= nb)
    return peak


def _keypoints(hm: torch.Tensor, grid: int, cfg: DecoderConfig
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keypoint candidates of float ``(N, K, h, w)`` heatmaps with cells of ``grid`` input px: positions
    ``(N, K, T, 2)`` in input px, scores ``(N, K, T)`` (0 below the threshold) and flat cell indices."""
    n, k, h, w = hm.shape
    peaks = _peaks(hm, cfg.nms_kernel)
    flat = hm.reshape(n, k, h * w)
    masked = torch.where(peaks.reshape(n, k, h * w), flat, torch.full_like(flat, -1.0))
    score, idx = masked.topk(min(cfg.topk, h * w), dim=-1)                   # (N, K, T)
    score = torch.where(score >= cfg.threshold, score.clamp_min(1e-6), torch.zeros_like(score))
    cx, cy = (idx % w).float(), (idx // w).float()
    if cfg.refine:
        dx, dy = _subpixel(flat, idx, w, h, cfg.sigma / grid)
        cx, cy = cx + dx, cy + dy
    half = (grid - 1) / 2.0
    return torch.stack((cx * grid + half, cy * grid + half), dim=-1), score, idx


def _candidates(heatmaps: torch.Tensor, offsets: torch.Tensor, contract: PoseContract, cfg: DecoderConfig,
                scales: torch.Tensor | None) -> _Candidates:
    n, k, h, w = heatmaps.shape
    grid = contract.stride
    if cfg.peak_mode == "upsample":  # the paper's way: bring the maps to input resolution first
        heatmaps = F.interpolate(heatmaps, scale_factor=grid, mode="bicubic", align_corners=False)
        offsets = F.interpolate(offsets, scale_factor=grid, mode="bilinear", align_corners=False)
        if scales is not None:
            scales = F.interpolate(scales, scale_factor=grid, mode="bilinear", align_corners=False)
        h, w, grid = h * grid, w * grid, 1
    hm = heatmaps.float()
    xy, score, idx = _keypoints(hm, grid, cfg)
    t = idx.shape[-1]
    half = (grid - 1) / 2.0
    cell_xy = torch.stack(((idx % w).float() * grid + half, (idx // w).float() * grid + half), dim=-1)

    limbs = torch.as_tensor(contract.limbs, device=hm.device)
    a, b = limbs[:, 0], limbs[:, 1]
    L = len(limbs)
    off = offsets.float().reshape(n, L, 2, h * w)
    start_idx = idx[:, a]                                                        # (N, L, T)
    gathered = off.gather(-1, start_idx.unsqueeze(2).expand(n, L, 2, t))        # (N, L, 2, T)
    guided = cell_xy[:, a] + gathered.permute(0, 1, 3, 2)                       # (N, L, T, 2)
    end_xy = xy[:, b]                                                            # (N, L, T, 2)
    exact = "donot_use_mm_for_euclid_dist"  # the matmul form loses precision for near-zero distances
    d = torch.cdist(guided, end_xy, compute_mode=exact)                          # (N, L, T, T)
    if cfg.limb_norm == "distance":  # the paper's: rewards ends far from the start when offsets are noisy
        length = torch.cdist(xy[:, a], end_xy, compute_mode=exact).clamp_min(cfg.min_limb_length)
    elif cfg.limb_norm == "predicted":  # the guiding offset's own length: the same for every end candidate
        length = gathered.norm(dim=2).clamp_min(cfg.limb_length).unsqueeze(-1)   # (N, L, T, 1)
    else:
        length = torch.full_like(d, cfg.limb_length)
    limit = torch.full_like(d, cfg.dist_max)
    if scales is not None:  # the paper's rule with a scale head: the end keypoint's scale may widen the limit
        sc = scales.float().reshape(n, k, h * w).gather(-1, idx)                # (N, K, T)
        limit = torch.maximum(limit, sc[:, b].unsqueeze(2).expand_as(d))
    s = score[:, a].unsqueeze(-1) * score[:, b].unsqueeze(-2) * torch.exp(-d / length)
    s = torch.where(d < limit, s, torch.zeros_like(s))
    # one device-to-host copy for the three arrays
    host = torch.cat([xy.reshape(n, -1), score.reshape(n, -1), s.reshape(n, -1)], 1).cpu().numpy()
    n_xy, n_s = k * t * 2, k * t
    return _Candidates(host[:, :n_xy].reshape(n, k, t, 2), host[:, n_xy:n_xy + n_s].reshape(n, k, t),
                       host[:, n_xy + n_s:].reshape(n, L, t, t))


def _links(limb_score: np.ndarray, order: str) -> Iterable[tuple[int, int, int]]:
    """``(limb, start candidate, end candidate)`` of every acceptable link, in grouping order: limb types in
    skeleton order and the best-scored first within each (``skeleton``), or all links best-scored first
    (``score``). Exact score ties keep the lower candidate ids first (a stable sort)."""
    li, ta, tb = np.nonzero(limb_score > 0)
    if len(li) == 0:
        return []
    values = limb_score[li, ta, tb]
    keys = (-values, li) if order == "skeleton" else (-values,)
    idx = np.lexsort(keys)  # last key is primary: limb type first, then score
    return zip(li[idx].tolist(), ta[idx].tolist(), tb[idx].tolist())


def _group(xy: np.ndarray, score: np.ndarray, limb_score: np.ndarray, contract: PoseContract,
           cfg: DecoderConfig) -> Poses:
    """Greedy grouping of one image's limb candidates into people, with exact integer candidate ids.

    The loop visits thousands of links per frame, so it works on Python lists and ints, not NumPy scalars."""
    K, T = score.shape
    limb_ends = [(int(a), int(b)) for a, b in contract.limbs]
    owner = [-1] * (K * T)                        # candidate id (k * T + t) -> person
    members: list[list[int]] = []                 # person -> K candidate ids, -1 = empty
    types: list[int] = []                         # person -> bit mask of the keypoint types it holds
    used = bytearray(2 * len(limb_ends) * T)      # (limb, end, candidate): each candidate in one link per limb end
    accepted: list[tuple[int, int, int, int, int]] = []   # (limb, start, end, start id, end id) of kept links
    for li, sa, sb in _links(limb_score, cfg.order):
        ua, ub = (2 * li) * T + sa, (2 * li + 1) * T + sb
        if used[ua] or used[ub]:
            continue
        a, b = limb_ends[li]
        ia, ib = a * T + sa, b * T + sb
        pa, pb = owner[ia], owner[ib]
        if pa < 0 and pb < 0:
            person = [-1] * K
            person[a], person[b] = ia, ib
            owner[ia] = owner[ib] = len(members)
            members.append(person)
            types.append((1 << a) | (1 << b))
        elif pb < 0 and not types[pa] >> b & 1:
            members[pa][b] = ib
            owner[ib] = pa
            types[pa] |= 1 << b
        elif pa < 0 and pb >= 0 and not types[pb] >> a & 1:
            members[pb][a] = ia
            owner[ia] = pb
            types[pb] |= 1 << a
        elif pa >= 0 and pb >= 0 and pa != pb and not types[pa] & types[pb]:
            keep, drop = members[pa], members[pb]     # disjoint keypoint types: one person in two pieces
            for k, cid in enumerate(drop):
                if cid >= 0:
                    keep[k] = cid
                    owner[cid] = pa
                    drop[k] = -1
            types[pa] |= types[pb]
            types[pb] = 0
        elif pa < 0 or pb < 0 or pa != pb:
            continue  # a rejected link leaves both candidates free for this limb's other links
        used[ua] = used[ub] = 1
        accepted.append((li, sa, sb, ia, ib))
    people = [np.array(m, np.int64) for m, held in zip(members, types) if held]
    if cfg.single_keypoints:
        people += _singles(xy, score, np.array(owner, np.int64), people, cfg)
    if not people:
        return Poses.empty(K)
    ids = np.stack(people)                                              # (P, K)
    present = ids >= 0
    safe = np.where(present, ids, 0)
    kp_xy = xy.reshape(K * T, 2)[safe]
    kp_s = np.where(present, score.reshape(-1)[safe], 0.0)
    keypoints = np.concatenate([kp_xy, kp_s[..., None]], axis=-1).astype(np.float32)
    keypoints[~present] = 0.0
    if cfg.person_score == "coverage":
        person_scores = kp_s.sum(1) / K
    elif cfg.person_score == "linked":
        support = _support(score.reshape(-1), limb_score, accepted)
        person_scores = (kp_s * np.where(present, support[safe], 0.0)).sum(1) / K
    else:
        person_scores = kp_s.sum(1) / np.maximum(present.sum(1), 1)
    order = np.argsort(-person_scores, kind="stable")
    order = order[person_scores[order] >= cfg.person_threshold][: cfg.max_people]
    return Poses(keypoints[order], person_scores[order])


def _support(flat_score: np.ndarray, limb_score: np.ndarray, accepted: list[tuple[int, int, int, int, int]]
             ) -> np.ndarray:
    """Per candidate id: the best geometric agreement ``exp(-d / length)`` among its accepted links (a link's
    score over its two keypoint scores), 1 for a candidate without links."""
    support = np.ones(len(flat_score))
    if not accepted:
        return support
    li, sa, sb, ia, ib = np.array(accepted, np.int64).T
    agreement = limb_score[li, sa, sb] / np.maximum(flat_score[ia] * flat_score[ib], 1e-12)
    ids, values = np.concatenate([ia, ib]), np.concatenate([agreement, agreement])
    order = np.lexsort((-values, ids))                        # by candidate, its best agreement first
    first = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1]])
    support[ids[order][first]] = values[order][first]
    return support


def _singles(xy: np.ndarray, score: np.ndarray, owner: np.ndarray, people: list[np.ndarray],
             cfg: DecoderConfig) -> list[np.ndarray]:
    """Leftover candidates as single-keypoint people, except those within ``single_radius`` px of a grouped
    keypoint of the same type (a second peak of the same joint, not another person)."""
    K, T = score.shape
    free = np.nonzero((owner < 0) & (score.reshape(-1) >= max(cfg.single_threshold, cfg.threshold)))[0]
    if len(free) == 0:
        return []
    flat_xy = xy.reshape(K * T, 2)
    taken = np.concatenate([p[p >= 0] for p in people]) if people else np.zeros(0, np.int64)
    out = []
    for cid in free:
        k = cid // T
        same = taken[taken // T == k]
        if len(same) and np.min(np.hypot(*(flat_xy[same] - flat_xy[cid]).T)) < cfg.single_radius:
            continue
        person = np.full(K, -1, np.int64)
        person[k] = cid
        out.append(person)
    return out


@torch.no_grad()
def decode(heatmaps, offsets, contract: PoseContract, config: DecoderConfig | None = None,
           scales=None) -> list[Poses]:
    """Decode ``(N, K, h, w)`` heatmaps and ``(N, 2L, h, w)`` guiding offsets (input pixels) of a network with
    ``contract`` into one :class:`Poses` per image, in network-input pixel coordinates."""
    cfg = config or DecoderConfig()
    heatmaps, offsets = _as_tensor(heatmaps), _as_tensor(offsets)
    scales = _as_tensor(scales) if scales is not None else None
    _check_shapes(heatmaps, offsets, contract, scales)
    if heatmaps.shape[0] == 0:
        return []
    cand = _candidates(heatmaps, offsets, contract, cfg, scales)
    return [_group(cand.xy[i], cand.score[i], cand.limb_score[i], contract, cfg) for i in range(len(cand.xy))]


@torch.no_grad()
def keypoint_candidates(heatmaps, contract: PoseContract, config: DecoderConfig | None = None
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The keypoint candidates the grouping of :func:`decode` starts from, per image: positions ``(K, T, 2)``
    in network-input pixels and scores ``(K, T)``, 0 where a slot holds no candidate."""
    cfg = config or DecoderConfig()
    heatmaps = _as_tensor(heatmaps)
    grid = contract.stride
    if cfg.peak_mode == "upsample":
        heatmaps = F.interpolate(heatmaps.float(), scale_factor=grid, mode="bicubic", align_corners=False)
        grid = 1
    xy, score, _ = _keypoints(heatmaps.float(), grid, cfg)
    xy, score = xy.cpu().numpy(), score.cpu().numpy()
    return [(xy[i], score[i]) for i in range(len(xy))]


@torch.no_grad()
def merge_flip(heatmaps, offsets, flipped_heatmaps, flipped_offsets, contract: PoseContract, scales=None,
               flipped_scales=None):
    """Flip test: average the maps of an input and of its horizontal mirror.

    Mirror heatmaps are un-flipped and their left/right channels swapped; mirror offsets are un-flipped, their x
    negated and their limbs permuted to the mirror limb. A limb whose mirror exists only reversed keeps its own
    offsets (its mirror field lives at the other keypoint). Returns ``(heatmaps, offsets, scales)``.
    """
    heatmaps, offsets = _as_tensor(heatmaps), _as_tensor(offsets)
    fh, fo = _as_tensor(flipped_heatmaps), _as_tensor(flipped_offsets)
    if fh.shape != heatmaps.shape or fo.shape != offsets.shape:
        raise ValueError("flipped maps must have the shapes of the maps they are merged with")
    perm = torch.as_tensor(contract.spec.flip_permutation, device=heatmaps.device)
    hm = 0.5 * (heatmaps + fh.flip(-1)[:, perm])
    n, _, h, w = offsets.shape
    L = contract.n_limbs
    mirror, found = contract.limb_flip
    off = offsets.reshape(n, L, 2, h, w).clone()
    if found.any():
        src = torch.as_tensor(mirror[found], device=offsets.device)
        dst = torch.as_tensor(np.nonzero(found)[0], device=offsets.device)
        un = fo.reshape(n, L, 2, h, w)[:, src].flip(-1)
        un = torch.stack((-un[:, :, 0], un[:, :, 1]), dim=2)
        off[:, dst] = 0.5 * (off[:, dst] + un)
    sc = None
    if scales is not None and flipped_scales is not None:
        sc = 0.5 * (_as_tensor(scales) + _as_tensor(flipped_scales).flip(-1)[:, perm])
    elif scales is not None:
        sc = _as_tensor(scales)
    return hm, off.reshape(n, 2 * L, h, w), sc
