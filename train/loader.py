"""DataLoader for training: a resumable ``DistributedSampler`` and worker seeding per worker and per epoch.

Augmentation randomness is keyed by ``(seed, epoch, index)`` inside the dataset, so batches do not depend on
the number of workers; ``worker_init_fn`` additionally seeds Python, NumPy and torch in each worker from
``(seed, epoch, worker id)`` for any other library randomness. Workers are not persistent: they are started
per epoch and see the dataset's current epoch.
"""
from __future__ import annotations

import functools
import multiprocessing
import random
import signal
import threading
from multiprocessing import resource_tracker
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torch.utils.data.distributed import DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by seed + epoch, one shard per rank) that can start mid-epoch:
    ``set_position(epoch, start)`` skips the ``start`` samples of this rank already consumed (batches done times
    the batch size)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Epoch ``epoch``, beginning at this rank's ``start``-th sample."""
        self.set_epoch(epoch)
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


def seed_worker(worker_id: int, seed: int, epoch: int, rank: int) -> None:
    """Seed Python, NumPy and torch in a DataLoader worker from (seed, epoch, rank, worker id)."""
    s = np.random.SeedSequence([seed, epoch, rank, worker_id]).generate_state(2)
    random.seed(int(s[0]))
    np.random.seed(int(s[1]) % (2 ** 32))
    torch.manual_seed(int(s[0]) << 32 | int(s[1]))
    import cv2
    cv2.setNumThreads(1)  # workers are processes already; OpenCV threads would oversubscribe the cores


def init_worker(worker_id: int, seed: int, epoch: int, rank: int) -> None:
    """A DataLoader worker's start: ignore SIGINT and SIGTERM, then :func:`seed_worker`. Ctrl-C in a terminal
    reaches every process of the foreground group, and Slurm, systemd or ``kill -- -PGID`` send SIGTERM to every
    process of the job; the trainer stops after the current step (and writes its checkpoint), so the workers must
    go on loading that step's batch, and they end with the loader as usual. (Ignored, not handled: Python puts
    its own handlers back to the default while a worker exits, and a SIGTERM then killed it.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # held back since its start: start_batches
    seed_worker(worker_id, seed, epoch, rank)


def start_batches(loader: DataLoader) -> Iterator:
    """``iter(loader)``, its workers started with SIGTERM held back: they inherit the block (through spawn's exec
    too) until :func:`init_worker` has set their handler, so a SIGTERM sent to the whole job while they import
    torch no longer kills them. Here a SIGTERM that came meanwhile is delivered once they are started."""
    if not loader.num_workers or threading.current_thread() is not threading.main_thread():
        return iter(loader)
    # the first spawned process starts multiprocessing's resource tracker, which unblocks SIGTERM after it
    resource_tracker.ensure_running()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def worker_context(start: str = "spawn"):
    """The multiprocessing context for DataLoader workers. ``fork`` is fastest to start but a forked child can
    dead-lock in OpenCV's (or OpenMP's) thread pool when the parent used it before (validation, a previous
    epoch in-process); ``spawn`` / ``forkserver`` start clean processes, equally fast once torch is imported.
    ``spawn`` is the default: its workers are the trainer's own children, while ``forkserver``'s are the
    children of a server process that a SIGTERM sent to the whole job ends, and with it every worker."""
    if start not in ("fork", "forkserver", "spawn"):
        raise ValueError(f"unknown worker start method {start!r}")
    if start not in multiprocessing.get_all_start_methods():
        start = "spawn"
    return multiprocessing.get_context(start)


def collate_samples(samples: list[dict]) -> dict:
    """Stack samples into a batch: tensors with ``np.stack`` (a single-threaded memory copy: torch's
    multi-threaded stack of these multi-megabyte targets is several times slower on a busy CPU), in a worker
    straight into shared memory as ``default_collate`` does; numbers into int64 tensors."""
    out = {}
    in_worker = torch.utils.data.get_worker_info() is not None
    for key, first in samples[0].items():
        if torch.is_tensor(first):
            if in_worker:
                out[key] = default_collate([s[key] for s in samples])
            else:
                out[key] = torch.from_numpy(np.stack([s[key].numpy() for s in samples]))
        else:
            out[key] = torch.tensor([s[key] for s in samples])
    return out


def make_loader(dataset: Dataset, sampler: ResumableSampler, batch_size: int, workers: int, seed: int,
                epoch: int, rank: int = 0, drop_last: bool = True, pin_memory: bool = False,
                start_method: str = "spawn") -> DataLoader:
    """A DataLoader for one epoch (call ``sampler.set_position`` and ``dataset.set_epoch`` first)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_samples,
                      worker_init_fn=functools.partial(init_worker, seed=seed, epoch=epoch, rank=rank),
                      drop_last=drop_last, pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=2 if workers > 0 else None,
                      multiprocessing_context=worker_context(start_method) if workers > 0 else None)
