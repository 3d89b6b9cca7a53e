"""Training losses of the paper: focal L2 heatmaps, person-scale-normalised offset L1, keypoint-scale L1.

Per stack s (weights ``w_s`` normalised to sum 1) and a batch of N images:

* heatmaps: ``sum over non-ignored cells of 0.5 (p - t)^2 |1 - q|^gamma`` with ``q = p`` where ``t >= tau``
  and ``q = 1 - p`` elsewhere (focal L2), summed over the batch and divided by N;
* offsets: per channel ``e = |p / S - t / S|`` (S = the person scale that won the cell) over cells with an
  offset target outside ignored regions; errors below ``offset_margin`` are dropped, the rest square-rooted
  (``sqrt_re``) and averaged as ``sum / (1 + count)``, then divided by N (the authors' ``offset_instance_l1_loss``);
* keypoint scales: ``|p - t|`` over cells with a scale target, same margin / square-root / average rule with
  ``scale_margin``.

The total is ``heatmap_weight * H + offset_weight * O + scale_weight * S`` (paper recipe 1 / 10000 / 10).
With no people in the batch the offset and scale terms are exactly 0 (never NaN).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from core.errors import InputError


@dataclass(frozen=True)
class LossConfig:
    tau: float = 0.01            # foreground threshold of the focal L2 heatmap loss
    gamma: float = 2.0           # focal exponent (the paper trains with 2)
    heatmap_weight: float = 1.0
    offset_weight: float = 10000.0
    scale_weight: float = 10.0
    stack_weights: tuple[float, ...] | None = None  # None: equal weights over the network's stacks
    sqrt_re: bool = True         # square-root rescale of offset and scale errors
    offset_margin: float = 1e-5  # offset errors (after normalisation) below this are not punished
    scale_margin: float = 0.1    # keypoint-scale errors below this are not punished

    def __post_init__(self) -> None:
        weights = self.stack_weights
        if weights is None:
            return
        if not all(isinstance(w, numbers.Real) and not isinstance(w, bool) and w >= 0 for w in weights):
            raise InputError(f"loss stack_weights must be numbers >= 0, got {list(weights)}")
        if weights and sum(weights) <= 0:
            raise InputError(f"loss stack_weights must sum to a positive number, got {list(weights)}")


def focal_l2(pred: torch.Tensor, target: torch.Tensor, tau: float, gamma: float) -> torch.Tensor:
    """Element-wise focal L2: ``0.5 (p - t)^2 |1 - q|^gamma``, q = p on foreground (t >= tau), 1 - p elsewhere."""
    q = torch.where(target >= tau, pred, 1.0 - pred)
    return 0.5 * (pred - target).square() * _focal_factor((1.0 - q).abs(), gamma)


def _focal_factor(d: torch.Tensor, gamma: float) -> torch.Tensor:
    """``d ** gamma`` for ``d >= 0`` with a finite gradient at ``d == 0`` (there: 0) also for ``0 < gamma < 1``,
    where the plain power's derivative is infinite and turns the loss's gradient into NaN (0 x inf)."""
    if gamma == 0:
        return torch.ones_like(d)
    if gamma >= 1:  # the derivative is finite everywhere: the plain power (no extra passes over the maps)
        return d.pow(gamma)
    nonzero = d > 0
    safe = torch.where(nonzero, d, torch.ones_like(d))
    return torch.where(nonzero, safe.pow(gamma), torch.zeros_like(d))


def _margin_mean(errors: torch.Tensor, valid: torch.Tensor, margin: float, sqrt_re: bool) -> torch.Tensor:
    """``sum(f(e)) / (1 + count)`` over valid errors ``e >= margin``; f = sqrt when ``sqrt_re``. NaN-free."""
    keep = valid & (errors >= margin)
    safe = torch.where(keep, errors, torch.ones_like(errors))  # keeps sqrt's gradient finite where unused
    values = safe.sqrt() if sqrt_re else safe
    values = torch.where(keep, values, torch.zeros_like(values))
    return values.sum() / (1.0 + keep.sum().to(values.dtype))


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor, tau: float = 0.01,
                 gamma: float = 2.0, keypoint_ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Focal L2 summed over non-ignored cells of ``(N, K, h, w)`` heatmaps (not yet divided by N);
    ``keypoint_ignore`` ``(N, K, h, w)`` additionally excludes single channels."""
    keep = ~ignore.unsqueeze(1)
    if keypoint_ignore is not None:
        keep = keep & ~keypoint_ignore.bool()
    return torch.where(keep, focal_l2(pred, target, tau, gamma), torch.zeros_like(pred)).sum()


def offset_loss(pred: torch.Tensor, target: torch.Tensor, offset_mask: torch.Tensor, person_scale: torch.Tensor,
                ignore: torch.Tensor, margin: float = 1e-5, sqrt_re: bool = True) -> torch.Tensor:
    """Person-scale-normalised L1 of ``(N, 2L, h, w)`` guiding offsets (the authors' instance L1)."""
    valid = (offset_mask & ~ignore.unsqueeze(1)).repeat_interleave(2, dim=1)
    scale = torch.where(valid, person_scale.repeat_interleave(2, dim=1).to(pred.dtype), torch.ones_like(pred))
    scale = scale.clamp_min(1e-6)
    errors = (pred / scale - target / scale).abs()
    return _margin_mean(errors, valid, margin, sqrt_re)


def scale_loss(pred: torch.Tensor, target: torch.Tensor, scale_mask: torch.Tensor, ignore: torch.Tensor,
               margin: float = 0.1, sqrt_re: bool = True) -> torch.Tensor:
    """L1 of ``(N, K, h, w)`` keypoint scales where a scale target exists."""
    valid = scale_mask & ~ignore.unsqueeze(1)
    errors = torch.where(valid, (pred - target).abs(), torch.zeros_like(pred))
    return _margin_mean(errors, valid, margin, sqrt_re)


TARGET_FIELDS = ("heatmaps", "offsets", "offset_mask", "person_scale", "keypoint_scale", "keypoint_scale_mask",
                 "ignore", "keypoint_ignore")


class PoseLoss(torch.nn.Module):
    """Combined loss over all stacks; ``forward(outputs, targets) -> (total, terms)``.

    ``outputs`` is the network's list of per-stack dicts; ``targets`` maps the encoder's ``Targets`` field
    names to batched tensors (``heatmaps (N,K,h,w)``, ``offsets (N,2L,h,w)``, ``offset_mask (N,L,h,w)``,
    ``person_scale (N,L,h,w)``, ``keypoint_scale`` and ``keypoint_scale_mask (N,K,h,w)``, ``ignore (N,h,w)``,
    optionally ``keypoint_ignore (N,K,h,w)``).
    ``terms`` holds the stack-weighted, batch-averaged ``heatmap``, ``offset``, ``scale`` losses (before
    task weights) and ``total``, all as detached tensors.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def stack_weights(self, n_stacks: int) -> list[float]:
        """The configured stack weights normalised to sum 1; ``InputError`` when they do not fit the network."""
        weights: Sequence[float] = self.config.stack_weights or [1.0] * n_stacks
        if len(weights) != n_stacks:
            raise InputError(f"loss stack_weights: {len(weights)} weights for a network with {n_stacks} "
                             f"stack{'s' if n_stacks != 1 else ''}")
        total = float(sum(weights))
        return [float(w) / total for w in weights]

    def forward(self, outputs: Sequence[Mapping[str, torch.Tensor]],
                targets: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        missing = [f for f in ("heatmaps", "offsets", "offset_mask", "person_scale", "ignore") if f not in targets]
        if missing:
            raise KeyError(f"targets lack {missing}")
        batch = targets["heatmaps"].shape[0]
        ignore = targets["ignore"].bool()
        zero = outputs[-1]["heatmaps"].new_zeros((), dtype=torch.promote_types(outputs[-1]["heatmaps"].dtype,
                                                                                torch.float32))
        hmp, off, scl = zero, zero, zero
        for w, raw in zip(self.stack_weights(len(outputs)), outputs):
            # fp16/bf16 outputs under autocast: compute the loss in (at least) float32, sums overflow in fp16
            out = {k: (v.float() if v is not None and v.dtype in (torch.float16, torch.bfloat16) else v)
                   for k, v in raw.items()}
            hmp = hmp + w * heatmap_loss(out["heatmaps"], targets["heatmaps"], ignore, cfg.tau, cfg.gamma,
                                         targets.get("keypoint_ignore"))
            off = off + w * offset_loss(out["offsets"], targets["offsets"], targets["offset_mask"].bool(),
                                        targets["person_scale"], ignore, cfg.offset_margin, cfg.sqrt_re)
            if out.get("scales") is not None and "keypoint_scale" in targets:
                scl = scl + w * scale_loss(out["scales"], targets["keypoint_scale"],
                                           targets["keypoint_scale_mask"].bool(), ignore, cfg.scale_margin,
                                           cfg.sqrt_re)
        hmp, off, scl = hmp / batch, off / batch, scl / batch
        total = cfg.heatmap_weight * hmp + cfg.offset_weight * off + cfg.scale_weight * scl
        terms = {"heatmap": hmp.detach(), "offset": off.detach(), "scale": scl.detach(), "total": total.detach()}
        return total, terms
