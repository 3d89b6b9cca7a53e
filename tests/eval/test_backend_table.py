"""The backend table of ``gopose bench model``: per-call times and a CPU peak only where the network ran on the CPU."""
from __future__ import annotations

from eval import backend_table as bt
from eval.cpu_peak import cpu_peak


def _row(ms: list[float]) -> bt.Row:
    return bt.Row("torch", "fp32", 320, network=lambda x: x, ms=ms)


def test_a_gpu_row_has_no_share_of_the_cpu_peak():
    """On CUDA the footnote compared GPU GFLOP/s with the CPU's peak (rows read 3778 %)."""
    row = _row([2.0, 2.0, 2.0]).to_dict(gflops=1.6, peak=None, batch=8)
    assert row["peak_share"] is None and row["images_per_s"] == 4000.0 and row["gflops_per_s"] == 800.0
    lines = bt.format_table([row], None, batch=8)
    assert "ms/8 fr" in lines[0] and lines[1].rstrip().endswith("-") and "%" not in lines[1]
    assert "no share of a peak" in lines[-1]


def test_a_cpu_row_keeps_its_share_of_the_peak():
    peak = cpu_peak(2)
    row = _row([10.0, 10.0]).to_dict(gflops=1.0, peak=peak)
    assert row["peak_share"] == round(100.0 / peak.for_precision("fp32"), 4)
    lines = bt.format_table([row], peak)
    assert "ms/frame" in lines[0] and lines[1].rstrip().endswith("%") and "peak =" in lines[-1]
