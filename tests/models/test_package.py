"""Packaging a trained checkpoint: one skeleton's channels kept exactly, fp16 weights, the codec's defaults set."""
from __future__ import annotations

import pytest
import torch

from core.errors import InputError
from models.checkpoint import load_checkpoint, save_checkpoint
from models.factory import build_model, make_config
from models.package import keep_skeleton, package_checkpoint

TINY = {"stem": 8, "widths": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "expand": 2, "channels": 16}


@pytest.fixture()
def trained_on_all(tmp_path):
    torch.manual_seed(0)
    model = build_model(make_config("realtime", skeleton="all", **TINY))
    return model, save_checkpoint(tmp_path / "all.pt", model, step=7, metrics={"loss": 1.0},
                                  train_config={"data": {"target_sigma": 6.0}}, extra={"train_state": {"big": 1}})


def test_a_packaged_sub_skeleton_predicts_exactly_the_trained_channels(trained_on_all, tmp_path):
    model, src = trained_on_all
    out = package_checkpoint(src, tmp_path / "p.pt", skeleton="redundant", half=False)
    packed, info = load_checkpoint(out)
    assert packed.contract.skeleton_name == "redundant" and packed.contract.n_limbs == 31
    index = model.codec.contract.limb_indices("redundant")
    channels = torch.as_tensor([c for i in index.tolist() for c in (2 * i, 2 * i + 1)])
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    packed.eval()
    with torch.no_grad():
        full, part = model(x)[-1], packed(x)[-1]
    assert torch.equal(full["heatmaps"], part["heatmaps"])
    assert torch.equal(full["offsets"][:, channels], part["offsets"])
    assert info["step"] == 7 and "train_state" not in (info["extra"] or {})
    assert info["train_config"]["data"]["target_sigma"] == 6.0


def test_packaging_stores_fp16_weights_and_the_chosen_codec_defaults(trained_on_all, tmp_path):
    _, src = trained_on_all
    out = package_checkpoint(src, tmp_path / "p16.pt", skeleton="default", long_edge=320,
                             decoder={"threshold": 0.12}, metrics={"AP": 0.3})
    raw = torch.load(out, weights_only=True)
    floats = [v for v in raw["model_state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    packed, info = load_checkpoint(out)
    assert next(packed.parameters()).dtype == torch.float32  # widened on load
    assert packed.codec.long_edge == 320 and packed.codec.decoder.threshold == 0.12
    assert packed.codec.sigma == 7.0 and info["metrics"]["AP"] == 0.3


def test_a_skeleton_outside_the_trained_one_is_refused(tmp_path):
    src = save_checkpoint(tmp_path / "d.pt", build_model(make_config("realtime", **TINY)))
    with pytest.raises(InputError, match="redundant"):
        package_checkpoint(src, tmp_path / "x.pt", skeleton="redundant")
    assert not (tmp_path / "x.pt").exists()


def test_average_packages_the_mean_of_the_weights(trained_on_all, tmp_path):
    """``--average``: every floating-point weight (batch-norm statistics too) is the mean of the checkpoints', the
    integer counters are the first's, the skeleton is kept in each before averaging; another network is refused."""
    first, src = trained_on_all
    torch.manual_seed(1)
    second = build_model(make_config("realtime", skeleton="all", **TINY))
    with torch.no_grad():
        for buffer in second.buffers():
            if buffer.is_floating_point():
                buffer.add_(0.5)
    other = save_checkpoint(tmp_path / "other.pt", second)
    out = package_checkpoint(src, tmp_path / "mean.pt", skeleton="redundant", half=False, average=[other])
    packed, info = load_checkpoint(out)
    a = keep_skeleton(first, "redundant").state_dict()
    b = keep_skeleton(second, "redundant").state_dict()
    for k, v in packed.state_dict().items():
        want = (a[k] + b[k]) / 2 if v.is_floating_point() else a[k]
        assert torch.allclose(v, want, atol=1e-6), k
    assert info["extra"]["averaged_with"] == ["other.pt"]
    small = save_checkpoint(tmp_path / "small.pt",
                            build_model(make_config("realtime", skeleton="all", **dict(TINY, channels=8))))
    nineteen = save_checkpoint(tmp_path / "nineteen.pt", build_model(make_config("realtime", **TINY)))
    for bad, why in ((small, "its network"), (nineteen, "cannot keep skeleton 'all'")):
        with pytest.raises(InputError, match=f"cannot average {bad} with the packaged checkpoint: {why}"):
            package_checkpoint(src, tmp_path / "bad.pt", average=[bad])
    assert not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("option,value", [("--metric", "AP"), ("--decoder", "threshold"), ("--metric", "AP=[1")])
def test_package_command_names_the_option_of_a_bad_value(trained_on_all, tmp_path, capsys, option, value):
    """A malformed ``--metric`` / ``--decoder`` is reported under its own name (before: "--set expects KEY=VALUE",
    an option ``models package`` does not have)."""
    from app.cli import main

    _, src = trained_on_all
    out = tmp_path / "p.pt"
    assert main(["models", "package", str(src), "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{option} " in err and "--set" not in err, err
    assert not out.exists()


def test_package_command_takes_the_arch_of_an_authors_checkpoint(tmp_path, capsys):
    """The authors' format has no model description: ``--arch`` names it, as the error says (before: packaging
    told the user to pass ``--arch``, an option ``models package`` refused)."""
    from app.cli import main

    model = build_model(make_config("realtime"))  # that format has no kwargs: the architecture's defaults
    src = tmp_path / "PoseNet_3_epoch.pth"
    torch.save({"epoch": 3, "train_loss": 1.0, "model_state_dict": model.state_dict(), "optimizer_state_dict": {},
                "amp": None}, src)
    out = tmp_path / "p.pt"
    assert main(["models", "package", str(src), "--out", str(out)]) == 2
    assert "--arch" in capsys.readouterr().err and not out.exists()
    assert main(["models", "package", str(src), "--arch", "realtime", "--out", str(out)]) == 0
    packed, info = load_checkpoint(out)
    assert packed.arch == "realtime" and info["epoch"] == 3 and info["extra"]["packaged_from"] == src.name
    for k, v in packed.state_dict().items():
        assert torch.equal(v, model.state_dict()[k].half().to(v.dtype) if v.is_floating_point() else
                           model.state_dict()[k]), k
