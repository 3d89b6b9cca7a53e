"""Training targets at the network's output stride: keypoint heatmaps, guiding offsets, scales, ignore mask.

Everything is vectorised over people, keypoints and limbs: each person-keypoint (or person-limb) writes a small
window of output cells, and the windows are merged with one scatter per map (maximum for heatmaps; for offsets the
limb whose start keypoint is nearest the cell, so overlapping people keep their own limbs at their own keypoints;
for scales the nearest keypoint).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.contract import PoseContract
from core.poses import keypoint_box_areas


@dataclass
class Targets:
    """Targets of one sample on an ``h x w`` grid (``h = H // stride``). Offsets are in input pixels."""

    heatmaps: np.ndarray            # (K, h, w) float32
    offsets: np.ndarray             # (2L, h, w) float32, (dx, dy) per limb, 0 where no target
    offset_mask: np.ndarray         # (L, h, w) bool, True where an offset target exists
    person_scale: np.ndarray        # (L, h, w) float32, scale of the person whose offset won the cell (0: none)
    keypoint_scale: np.ndarray      # (K, h, w) float32, person scale x OKS sigma around each keypoint (0: none)
    keypoint_scale_mask: np.ndarray  # (K, h, w) bool
    ignore: np.ndarray              # (h, w) bool, True = excluded from the losses
    keypoint_ignore: np.ndarray     # (K, h, w) bool, True = this heatmap channel is excluded here (presence unknown)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)


def cell_centers(n: int, stride: int) -> np.ndarray:
    """Input-pixel coordinate of the centre of each of ``n`` output cells."""
    return np.arange(n, dtype=np.float32) * stride + (stride - 1) / 2.0


def person_scales_from_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Fallback person scale: square root of the area of the box around the annotated keypoints (at least 1)."""
    return np.sqrt(keypoint_box_areas(keypoints)).astype(np.float32)


#: default heatmap Gaussian sigma (input px) and offset window (cells); ``core.codec.Codec`` carries a model's own
DEFAULT_SIGMA = 7.0
DEFAULT_WINDOW = 7


class TargetEncoder:
    """Encode people into the maps a network with ``contract`` is trained on.

    ``sigma`` is the Gaussian's standard deviation in input pixels, evaluated at output-cell centres and clipped
    below ``min_heat``; ``window`` is the side, in cells, of the square around a limb's start keypoint (and around
    each keypoint for scales) that receives targets.
    """

    def __init__(self, contract: PoseContract, sigma: float = DEFAULT_SIGMA, window: int = DEFAULT_WINDOW,
                 min_heat: float = 0.01,
                 min_person_scale: float = 1.0):
        if sigma <= 0 or window < 1 or not 0 < min_heat < 1:
            raise ValueError(f"invalid encoder settings: sigma={sigma}, window={window}, min_heat={min_heat}")
        self.contract = contract
        self.sigma = float(sigma)
        self.window = int(window)
        self.min_heat = float(min_heat)
        self.min_person_scale = float(min_person_scale)
        stride = contract.stride
        radius_px = sigma * math.sqrt(2.0 * math.log(1.0 / min_heat))
        self._heat_radius = int(math.ceil(radius_px / stride)) + 1
        self._sigmas = np.asarray(contract.spec.sigmas, np.float32)

    def output_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        w, h = input_size
        s = self.contract.stride
        if w < s or h < s:
            raise ValueError(f"input {w}x{h} is smaller than the stride {s}")
        return w // s, h // s

    def encode(self, keypoints: np.ndarray, input_size: tuple[int, int], person_scales: np.ndarray | None = None,
               ignore_mask: np.ndarray | None = None, ignore_boxes: np.ndarray | None = None,
               keypoint_ignore_boxes: np.ndarray | None = None) -> Targets:
        """Targets for people ``keypoints`` ``(P, K, 3)`` (input pixels, ``v > 0`` = annotated) on an input of
        ``input_size = (W, H)``. Keypoints outside the input are treated as absent.

        ``ignore_mask`` ``(H, W)`` and ``ignore_boxes`` ``(M, 4)`` (x0, y0, x1, y1) exclude regions from every
        loss; ``keypoint_ignore_boxes`` ``(M, 5)`` (k, x0, y0, x1, y1) exclude heatmap channel k in a box (a
        keypoint whose presence near a person is unknown is neither trained as present nor as absent)."""
        c = self.contract
        K, L = c.n_keypoints, c.n_limbs
        w, h = self.output_size(input_size)
        kps = self._people(keypoints, K)
        W, H = input_size
        valid = (kps[:, :, 2] > 0) & (kps[:, :, 0] >= -0.5) & (kps[:, :, 0] < W - 0.5) \
            & (kps[:, :, 1] >= -0.5) & (kps[:, :, 1] < H - 0.5) & np.isfinite(kps[:, :, :2]).all(-1)
        if person_scales is None:  # from the annotated keypoints with finite coordinates
            finite = np.isfinite(kps[:, :, :2]).all(-1)
            scales = person_scales_from_keypoints(np.where(finite[:, :, None], kps, 0.0))
        else:
            scales = np.asarray(person_scales, np.float32).reshape(-1)
            if len(scales) != len(kps):
                raise ValueError(f"{len(scales)} person scales for {len(kps)} people")
        scales = np.maximum(scales, self.min_person_scale)

        heatmaps = self._heatmaps(kps, valid, K, w, h)
        offsets, offset_mask, person_scale = self._offsets(kps, valid, scales, L, w, h)
        kp_scale, kp_scale_mask = self._keypoint_scales(kps, valid, scales, K, w, h)
        ignore = self._ignore(ignore_mask, ignore_boxes, input_size, w, h)
        keypoint_ignore = self._keypoint_ignore(keypoint_ignore_boxes, K, w, h)
        return Targets(heatmaps, offsets, offset_mask, person_scale, kp_scale, kp_scale_mask, ignore,
                       keypoint_ignore)

    def _people(self, keypoints: np.ndarray, K: int) -> np.ndarray:
        """``keypoints`` as ``(P, K, 3)`` float32 (one person may come as ``(K, 3)``); another shape is an error,
        never a reshape (17 people of a 14-keypoint spec have as many values as 14 people of a 17-keypoint one)."""
        kps = np.asarray(keypoints, np.float32)
        if kps.size == 0:
            return kps.reshape(0, K, 3)
        if kps.ndim == 2:
            kps = kps[None]
        if kps.ndim != 3 or kps.shape[1:] != (K, 3):
            raise ValueError(f"keypoints must be (persons, {K}, 3) for spec {self.contract.spec.name!r}, "
                             f"got {kps.shape}")
        return kps

    # -- heatmaps -------------------------------------------------------------------------------------------
    def _heatmaps(self, kps: np.ndarray, valid: np.ndarray, K: int, w: int, h: int) -> np.ndarray:
        stride, r = self.contract.stride, self._heat_radius
        out = np.zeros(K * h * w, np.float32)
        p_idx, k_idx = np.nonzero(valid)
        if len(p_idx) == 0:
            return out.reshape(K, h, w)
        xy = kps[p_idx, k_idx, :2]                                      # (V, 2)
        base = np.floor((xy + 0.5) / stride).astype(np.int64) - r       # (V, 2) first cell of each window
        span = np.arange(2 * r + 1)
        cx = base[:, 0:1] + span                                         # (V, S)
        cy = base[:, 1:2] + span
        inv = -0.5 / self.sigma ** 2
        gx = np.exp(inv * (cx * stride + (stride - 1) / 2.0 - xy[:, 0:1]) ** 2).astype(np.float32)
        gy = np.exp(inv * (cy * stride + (stride - 1) / 2.0 - xy[:, 1:2]) ** 2).astype(np.float32)
        gx[(cx < 0) | (cx >= w)] = 0.0
        gy[(cy < 0) | (cy >= h)] = 0.0
        vals = gy[:, :, None] * gx[:, None, :]                          # (V, S, S)
        flat = (k_idx[:, None, None] * h + np.clip(cy, 0, h - 1)[:, :, None]) * w + np.clip(cx, 0, w - 1)[:, None, :]
        keep = vals >= self.min_heat
        np.maximum.at(out, flat[keep], vals[keep])
        return out.reshape(K, h, w)

    # -- nearest-wins scatter shared by offsets and keypoint scales ------------------------------------------
    def _window_cells(self, anchors: np.ndarray, w: int, h: int):
        """Cells of the ``window`` x ``window`` square around each anchor: (N, S*S) cx, cy and in-bounds mask."""
        stride, half = self.contract.stride, self.window // 2
        span = np.arange(self.window) - half
        ax = np.floor((anchors[:, 0] + 0.5) / stride).astype(np.int64)   # the cell containing the anchor
        ay = np.floor((anchors[:, 1] + 0.5) / stride).astype(np.int64)
        cx = (ax[:, None, None] + span[None, None, :]).repeat(self.window, 1).reshape(len(anchors), -1)
        cy = (ay[:, None, None] + span[None, :, None]).repeat(self.window, 2).reshape(len(anchors), -1)
        inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        return cx, cy, inside

    @staticmethod
    def _nearest_wins(flat: np.ndarray, length: np.ndarray, tie: np.ndarray | None = None) -> np.ndarray:
        """Indices of the entries with the smallest ``length`` at their flat cell, exactly one per cell (then the
        smallest ``tie``, then the earlier entry). A sort, with no per-instance state, so one encoder is safe to
        share between threads."""
        keys = (length, flat) if tie is None else (tie, length, flat)
        order = np.lexsort(keys)
        cells = flat[order]
        first = np.ones(len(order), bool)
        first[1:] = cells[1:] != cells[:-1]
        return order[first]

    def _offsets(self, kps, valid, scales, L, w, h):
        stride = self.contract.stride
        limbs = self.contract.limbs
        offsets = np.zeros((L, 2, h * w), np.float32)
        mask = np.zeros(L * h * w, bool)
        pscale = np.zeros(L * h * w, np.float32)
        both = valid[:, limbs[:, 0]] & valid[:, limbs[:, 1]]           # (P, L)
        p_idx, l_idx = np.nonzero(both)
        if len(p_idx):
            start = kps[p_idx, limbs[l_idx, 0], :2]
            end = kps[p_idx, limbs[l_idx, 1], :2]
            cx, cy, inside = self._window_cells(start, w, h)
            ccx, ccy = cx * stride + (stride - 1) / 2.0, cy * stride + (stride - 1) / 2.0
            vx, vy = end[:, 0:1] - ccx, end[:, 1:2] - ccy
            # a cell guides from the limb start nearest to it (then the shorter vector): where people overlap,
            # each keypoint's own cell keeps its own limb, so its guided point is its own person's end keypoint
            near = np.hypot(start[:, 0:1] - ccx, start[:, 1:2] - ccy)
            flat = l_idx[:, None] * (h * w) + cy * w + cx
            sel = inside.reshape(-1)
            flat_s = flat.reshape(-1)[sel]
            win = self._nearest_wins(flat_s, near.reshape(-1)[sel], np.hypot(vx, vy).reshape(-1)[sel])
            f = flat_s[win]
            lw, cw = f // (h * w), f % (h * w)
            offsets[lw, 0, cw] = vx.reshape(-1)[sel][win]
            offsets[lw, 1, cw] = vy.reshape(-1)[sel][win]
            mask[f] = True
            pscale[f] = np.repeat(scales[p_idx], cx.shape[1])[sel][win]
        return offsets.reshape(2 * L, h, w), mask.reshape(L, h, w), pscale.reshape(L, h, w)

    def _keypoint_scales(self, kps, valid, scales, K, w, h):
        stride = self.contract.stride
        out = np.zeros(K * h * w, np.float32)
        mask = np.zeros(K * h * w, bool)
        p_idx, k_idx = np.nonzero(valid)
        if len(p_idx):
            xy = kps[p_idx, k_idx, :2]
            cx, cy, inside = self._window_cells(xy, w, h)
            length = np.hypot(xy[:, 0:1] - (cx * stride + (stride - 1) / 2.0),
                              xy[:, 1:2] - (cy * stride + (stride - 1) / 2.0))
            flat = (k_idx[:, None] * h + cy) * w + cx
            sel = inside.reshape(-1)
            flat_s, length_s = flat.reshape(-1)[sel], length.reshape(-1)[sel]
            win = self._nearest_wins(flat_s, length_s)
            values = np.repeat(scales[p_idx] * self._sigmas[k_idx], cx.shape[1])[sel][win]
            out[flat_s[win]] = values
            mask[flat_s[win]] = True
        return out.reshape(K, h, w), mask.reshape(K, h, w)

    # -- ignore -------------------------------------------------------------------------------------------
    @staticmethod
    def _box_cells(boxes: np.ndarray, w: int, h: int, stride: int) -> np.ndarray:
        """``(M, h, w)`` bool: the cells whose centres lie inside each ``(x0, y0, x1, y1)`` box (input px)."""
        xs, ys = cell_centers(w, stride), cell_centers(h, stride)
        in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] <= boxes[:, 2:3])
        in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] <= boxes[:, 3:4])
        return in_y[:, :, None] & in_x[:, None, :]

    def _keypoint_ignore(self, boxes: np.ndarray | None, K: int, w: int, h: int) -> np.ndarray:
        out = np.zeros((K, h, w), bool)
        if boxes is None or len(boxes) == 0:
            return out
        b = np.asarray(boxes, np.float32).reshape(-1, 5)
        k = b[:, 0].astype(np.int64)
        if (k < 0).any() or (k >= K).any():
            raise ValueError(f"keypoint ignore boxes name channels outside 0..{K - 1}")
        cells = self._box_cells(b[:, 1:], w, h, self.contract.stride)
        np.logical_or.at(out, k, cells)
        return out

    def _ignore(self, ignore_mask, ignore_boxes, input_size, w, h) -> np.ndarray:
        stride = self.contract.stride
        ignore = np.zeros((h, w), bool)
        if ignore_mask is not None:
            m = np.asarray(ignore_mask)
            W, H = input_size
            if m.shape != (H, W):
                raise ValueError(f"ignore mask is {m.shape[1]}x{m.shape[0]}, input is {W}x{H}")
            block = m[:h * stride, :w * stride].reshape(h, stride, w, stride)
            ignore |= block.mean(axis=(1, 3), dtype=np.float32) > 0.5
        if ignore_boxes is not None and len(ignore_boxes):
            b = np.asarray(ignore_boxes, np.float32).reshape(-1, 4)      # x0, y0, x1, y1 in input pixels
            ignore |= self._box_cells(b, w, h, stride).any(0)
        return ignore
