"""torch.distributed set-up for training launched by ``torchrun`` (or one plain process).

``torchrun`` exports ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; when they are
present ``init_distributed`` joins the process group (NCCL on CUDA, gloo on CPU) and picks ``cuda:LOCAL_RANK``.
Without them the run is a single process and nothing is initialised.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from core.errors import InputError
from models.precision import check_cuda_index

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, the world size and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = ""
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; explicit names are checked."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = torch.device(f"cuda:{local_rank}")
        check_cuda_index(device, "run.device auto (one GPU per process)")
        return device
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"run.device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"run.device {name} requested but CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        check_cuda_index(device, "run.device")
    return device


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"torchrun environment: {name} must be an integer, got {text!r}") from None


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the torchrun environment (0, 0, 1 when absent); ``InputError`` when it
    is partial (``RANK`` without ``WORLD_SIZE`` or the reverse) or malformed."""
    given = [name for name in ("RANK", "WORLD_SIZE") if name in os.environ]
    if len(given) == 1:
        other = "WORLD_SIZE" if given[0] == "RANK" else "RANK"
        raise InputError(f"torchrun environment: {given[0]} is set but {other} is not (launch with torchrun, or "
                         f"unset {given[0]} for one process)")
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1:
        raise InputError(f"torchrun environment: WORLD_SIZE must be at least 1, got {world}")
    if not 0 <= rank < world:
        raise InputError(f"torchrun environment: RANK {rank} is not in [0, {world})")
    return rank, local, world


def init_distributed(device_name: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); return this process's ``DistInfo``."""
    rank, local_rank, world = env_world()
    device = resolve_device(device_name, local_rank)
    if world <= 1:
        return DistInfo(device=device)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing and not dist.is_initialized():
        raise InputError(f"torchrun environment: WORLD_SIZE is {world} but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set (launch with torchrun)")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
        LOG.info("joined process group: rank %d/%d (%s) on %s", rank, world, backend, device)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, backend=backend, device=device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean of scalar ``values`` over all ranks (for logging)."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def all_reduce_sum_int(value: int, info: DistInfo) -> int:
    if not info.distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=info.device)
    dist.all_reduce(t)
    return int(t.item())


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=info.device if info.backend == "nccl" else None)
    return box[0]
