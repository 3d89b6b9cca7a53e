"""File primitives every layer shares: atomic writes and COCO-style keypoint annotation loading (no upper-layer
imports, so ``models``, ``train``, ``eval`` and ``app`` can all use them)."""
