"""This CPU's arithmetic peak, the physical anchor of the benchmark tables' GFLOP/s.

Peak = cores used x clock x operations per cycle per core, from the instruction sets the CPU reports
(``/proc/cpuinfo`` flags) and its clock (``cpuinfo_max_freq``, else ``cpu MHz``):

* fp32: AVX-512 with FMA: 2 FMA units x 16 lanes x 2 = 64 FLOP/cycle (server cores have two 512-bit FMA units;
  one-unit parts reach half); AVX2 + FMA: 2 x 8 x 2 = 32; otherwise 8.
* int8 (one multiply-add = 2 ops): AMX-INT8: 1024 MAC/cycle = 2048; AVX512-VNNI: 2 ports x 64 MAC = 256;
  AVX-VNNI or AVX2: 2 ports x 32 MAC = 128.

A network's achieved rate is its FLOPs (2 x conv/linear MACs, ``models/profile.py``) over its median time; INT8 rows
are set against the int8 peak. A measured large fp32 matrix product (torch, all threads) is printed beside it as a
sanity check of the theoretical figure.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.cpu import cpu_flags


@dataclass(frozen=True)
class CpuPeak:
    cores: int
    ghz: float
    fp32_per_cycle: int
    int8_per_cycle: int
    fp32_isa: str
    int8_isa: str

    @property
    def fp32_gflops(self) -> float:
        return self.cores * self.ghz * self.fp32_per_cycle

    @property
    def int8_gops(self) -> float:
        return self.cores * self.ghz * self.int8_per_cycle

    def for_precision(self, precision: str) -> float:
        return self.int8_gops if precision == "int8" else self.fp32_gflops

    def describe(self) -> str:
        return (f"peak = {self.cores} cores x {self.ghz:.2f} GHz x ops/cycle: fp32 {self.fp32_gflops:.0f} GFLOP/s "
                f"({self.fp32_isa}, {self.fp32_per_cycle}/cycle), int8 {self.int8_gops:.0f} GOP/s "
                f"({self.int8_isa}, {self.int8_per_cycle}/cycle)")


def _cpuinfo() -> tuple[frozenset[str], float]:
    flags = cpu_flags()
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz":
                mhz = float(value)
                break
    except (OSError, ValueError):
        pass
    try:
        mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000.0
    except (OSError, ValueError):
        pass
    return flags, mhz


def cpu_peak(threads: int | None = None) -> CpuPeak:
    """The peak of ``threads`` cores (default: all) of this CPU."""
    flags, mhz = _cpuinfo()
    if "avx512f" in flags:
        fp32 = (64, "AVX-512 FMA")
    elif "avx2" in flags and "fma" in flags:
        fp32 = (32, "AVX2 FMA")
    else:
        fp32 = (8, "SSE")
    if "amx_int8" in flags:
        int8 = (2048, "AMX-INT8")
    elif "avx512_vnni" in flags:
        int8 = (256, "AVX512-VNNI")
    elif "avx_vnni" in flags or "avx2" in flags:
        int8 = (128, "AVX-VNNI/AVX2")
    else:
        int8 = (4 * fp32[0], "4x fp32")
    cores = min(int(threads or os.cpu_count() or 1), os.cpu_count() or 1)
    return CpuPeak(cores, (mhz or 1000.0) / 1000.0, fp32[0], int8[0], fp32[1], int8[1])


def measured_gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best rate of an ``n`` x ``n`` fp32 matrix product with torch's current threads (GFLOP/s)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9
