"""BN folding, precision policy, inference wrapper and MAC counting."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from core.cpu import cpu_flags
from core.errors import InputError
from models.factory import build_model, make_config
from models.precision import InferenceModel, fuse_for_inference, native_bf16, resolve_precision, training_amp
from models.profile import count_macs


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("arch", ["realtime", "midsize"])
def test_fusion_keeps_outputs(arch):
    model = build_model(make_config(arch, with_scale=True)).eval()
    _randomise_bn(model)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model.infer(x), fused.infer(x)
    for key in ("heatmaps", "offsets", "scales"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-4)


def test_precision_policy(caplog):
    assert resolve_precision("cpu") == "fp32"
    assert resolve_precision("cuda") == "fp16"
    with caplog.at_level(logging.WARNING, logger="models.precision"):
        assert resolve_precision("cpu", "bf16") == "bf16"
    assert ("emulated" in caplog.text) is not native_bf16("cpu")  # slow bf16 is said, fast bf16 is not
    with pytest.raises(InputError, match="CUDA"):
        resolve_precision("cpu", "fp16")
    with pytest.raises(InputError, match="unknown precision"):
        resolve_precision("cpu", "int8")


def test_inference_model_cpu_fp32_and_bf16():
    model = build_model(make_config("realtime")).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.infer(x)
    net = InferenceModel(model, "cpu")
    assert net.precision == "fp32" and net.channels_last
    out = net(x)
    torch.testing.assert_close(out["heatmaps"], ref["heatmaps"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["offsets"], ref["offsets"], rtol=1e-4, atol=1e-3)
    plain = InferenceModel(model, "cpu", channels_last=False, fuse=False)(x)
    torch.testing.assert_close(plain["offsets"], ref["offsets"])
    out16 = InferenceModel(model, "cpu", "bf16")(x)
    assert out16["offsets"].dtype == torch.float32
    tol = 0.05 * ref["offsets"].abs().max().item()
    torch.testing.assert_close(out16["offsets"], ref["offsets"], rtol=0.1, atol=tol)


def test_mac_count_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Conv2d(8, 4, 1, stride=2), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    expected = 16 * 16 * 8 * 3 * 9 + 16 * 16 * 8 * 1 * 9 + 8 * 8 * 4 * 8 + 10 * 256
    assert count_macs(net, 16, 16) == expected


def test_mac_count_on_meta_model_matches_authors_figure():
    """Hourglass-104 at 512: the authors report 234.5 G (thop MACs) and 187.7 M parameters."""
    with torch.device("meta"):
        model = build_model(make_config("hourglass104"))
    assert count_macs(model, 512, 512) / 1e9 == pytest.approx(234.5, rel=1e-3)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(187.7, rel=1e-3)


@pytest.mark.parametrize("device, native, expected", [("cpu", True, "bf16"), ("cpu", False, "none"),
                                                      ("cuda", True, "bf16"), ("cuda", False, "fp16")])
def test_training_amp_auto_takes_bf16_only_where_the_hardware_has_it(device, native, expected):
    assert training_amp("auto", device, native) == expected


def test_training_amp_keeps_an_explicit_choice_and_refuses_fp16_on_cpu():
    assert [training_amp(a, "cpu", False) for a in ("none", "bf16")] == ["none", "bf16"]
    assert training_amp("fp16", "cuda", True) == "fp16"
    with pytest.raises(InputError, match="run.amp=fp16"):
        training_amp("fp16", "cpu", True)


def test_native_bf16_reads_this_machines_cpu():
    flags = cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    assert native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_tile"})
    assert native_bf16("meta") is False


@pytest.mark.parametrize("arch, size", [("realtime", 64), ("mobilenet", 64), ("hourglass104", 128)])
def test_bf16_inference_runs_a_cast_copy_and_keeps_the_float32_network(arch, size):
    """bf16 (and fp16 on CUDA) run a copy of the fused network with its weights cast once, not autocast, which
    cast every weight again on every call; ``model`` stays the float32 network that exports, INT8 builds and
    weight digests read, so they do not depend on the precision."""
    from models.backends.int8 import model_digest

    model = build_model(make_config(arch, with_scale=arch == "hourglass104")).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, size, size)
    ref = InferenceModel(model, "cpu")(x)
    half = InferenceModel(model, "cpu", "bf16")
    out = half(x)
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in half._net.parameters())
    assert model_digest(half.model) == model_digest(InferenceModel(model, "cpu").model)
    for key, value in ref.items():
        if value is None:
            continue
        assert out[key].dtype == torch.float32
        tol = 0.05 * value.abs().max().item() + 1e-3
        torch.testing.assert_close(out[key], value, rtol=0.1, atol=tol)
