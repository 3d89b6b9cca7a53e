"""Function-preserving widening: start a wider network from a narrower one's weights (Net2Net-style growth).

A checkpoint tensor that is smaller than the network's along channel dimensions is copied into the leading block
of the network's (freshly initialised) tensor. New output channels keep their fresh weights; the weights that feed
new input channels into old output channels are zeroed. Layers that act channel by channel (batch norm, ReLU,
depthwise convolutions, upsampling, addition) keep old and new channels apart, so the widened network computes
exactly the checkpoint's outputs at step 0 and training can use the new channels from there.
"""
from __future__ import annotations

import torch


def fits_inside(small: torch.Tensor, big: torch.Tensor) -> bool:
    """True when ``small`` can grow into ``big``: same rank and kernel (dims 2+), no channel dimension larger."""
    if small.dim() != big.dim() or small.shape == big.shape or small.shape[2:] != big.shape[2:]:
        return False
    return all(s <= b for s, b in zip(small.shape[:2], big.shape[:2]))


def widened(small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    """``big`` (a fresh initialisation) with ``small`` in its leading block and new inputs to old outputs at zero."""
    out = big.detach().clone()
    if out.dim() >= 2:
        out[: small.shape[0], small.shape[1]:] = 0
    out[tuple(slice(0, n) for n in small.shape)] = small.to(out.dtype)
    return out
