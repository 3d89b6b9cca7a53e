"""Inference precision, device and layout helpers: BN folding, fp16/bf16 weights, channels-last, the check of
a ``cuda:N`` index.

Policy (measured, see docs/performance.md): fp32 on CPU by default (bf16 is available and faster on CPUs with
AMX/AVX512-BF16, but not the default until its accuracy is validated), fp16 on CUDA by default, bf16 where
asked (inference casts the fused network's weights once; training uses autocast); BN folding and channels-last
memory format by default on every device. Training's ``run.amp=auto`` (``training_amp``) takes bf16 only where
the hardware computes it (``native_bf16``): emulated bf16 was 10x slower than fp32 for a training step on an
AVX2-only CPU.
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from core.errors import InputError

LOG = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the convolution that feeds it (in place)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.data = conv.weight.detach() * scale.view(-1, 1, 1, 1).to(conv.weight.dtype)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())


def fuse_for_inference(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Eval-mode copy with every ``Conv2d`` directly followed (in registration order) by a matching
    ``BatchNorm2d`` folded into it and the BN replaced by ``Identity``. All GOPose networks apply each such
    BN right after its conv, so outputs are unchanged (up to float rounding). Not for training or saving."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for parent in model.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                    and bn.num_features == conv.out_channels):
                _fold(conv, bn)
                parent._modules[b] = nn.Identity()
    model.fused_for_inference = True
    return model


def resolve_precision(device: torch.device | str, precision: str = "auto") -> str:
    """``auto`` -> fp16 on CUDA, fp32 elsewhere; fp16 on CPU is refused (no fast CPU kernels); bf16 where the
    hardware lacks it is allowed with a warning."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "auto":
        return "fp16" if kind == "cuda" else "fp32"
    if precision == "fp16" and kind != "cuda":
        raise InputError("fp16 inference needs a CUDA device; use fp32 (or bf16) on CPU")
    if precision == "bf16" and not native_bf16(device):
        LOG.warning("bf16 on a %s without bf16 instructions is emulated and several times slower than fp32", kind)
    return precision


def check_cuda_index(device: torch.device, what: str) -> None:
    """An ``InputError`` naming ``device`` when it is ``cuda:N`` beyond the machine's GPUs (torch would fail
    later, inside the first operation, with a CUDA traceback)."""
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"{what} {device} requested but this machine has {count} CUDA device"
                         f"{'' if count == 1 else 's'} (cuda:0 to cuda:{count - 1})")


def native_bf16(device: torch.device | str) -> bool:
    """True where the device computes bf16 in hardware: CUDA GPUs with bf16 support, CPUs with AVX512-BF16 or AMX.

    Elsewhere (an AVX2-only CPU, say) torch emulates bf16 and autocast runs many times slower than fp32.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def training_amp(requested: str, device_type: str, bf16_native: bool) -> str:
    """The mixed precision a training run uses for ``run.amp`` (``none``, ``fp16``, ``bf16`` or ``auto``).

    ``auto``: bf16 where the hardware has it, else fp16 on CUDA (with a GradScaler) and none (fp32) on a CPU.
    An explicit choice is kept; fp16 on a CPU is refused (no GradScaler there).
    """
    if requested == "auto":
        return "bf16" if bf16_native else ("fp16" if device_type == "cuda" else "none")
    if requested == "fp16" and device_type != "cuda":
        raise InputError("run.amp=fp16 needs a CUDA device (GradScaler); use run.amp=bf16 or auto on CPU")
    return requested


class InferenceModel:
    """A network prepared for inference on one device: fused BNs, channels-last, fp16/bf16 weights.

    ``__call__(x)`` returns ``model.infer(x)`` with float32 outputs whatever the compute precision. ``model`` is the
    fused float32 network (what exports, INT8 builds and weight digests read); fp16 and bf16 run a copy of it with
    its weights cast once, not autocast, which casts every weight again on every call (the casts cost more than
    they save at batch 1 on a GPU: docs/performance.md).
    """

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", precision: str = "auto",
                 channels_last: bool | None = None, fuse: bool = True) -> None:
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, precision)
        # channels-last measured 2-3x faster for the fused nets on the CPU (oneDNN) and standard on CUDA; unfused
        # batch norms in channels-last hit a slow CPU path, so the default follows ``fuse``
        self.channels_last = fuse if channels_last is None else channels_last
        net = fuse_for_inference(model) if fuse else copy.deepcopy(model).eval()
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.model = net
        self.contract = net.contract
        self._dtype = _DTYPES.get(self.precision)
        self._net = net if self._dtype is None else copy.deepcopy(net).to(self._dtype)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        x = x.to(self.device, non_blocking=True)
        if self._dtype is not None:
            x = x.to(self._dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self._net.infer(x)
        return {k: (v.float() if v is not None else None) for k, v in out.items()}
