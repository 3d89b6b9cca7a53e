"""Checkpoints: the authors' format (deterministic Hourglass-104 weights), ours, safety and clear errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import (CheckpointError, FORMAT_VERSION, load_checkpoint, read_checkpoint,
                               save_checkpoint)
from models.factory import build_model, make_config


def test_authors_format_with_module_prefix_loads_and_reproduces(tmp_path, hg_weights, hg_input, hg_reference):
    state = {"module." + k: v for k, v in hg_weights.items()}
    names = [k for k in state if k.endswith("conv1.weight")][:3]
    optimizer_state = {"state": {i: {"momentum_buffer": torch.zeros_like(state[k]) + 0.1} for i, k in enumerate(names)},
                       "param_groups": [{"lr": 2.5e-4, "momentum": 0.9, "weight_decay": 0.0,
                                         "params": list(range(len(names)))}]}
    path = tmp_path / "PoseNet_77_epoch.pth"
    torch.save({"epoch": 77, "train_loss": 0.0123, "model_state_dict": state,
                "optimizer_state_dict": optimizer_state,
                "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 12}}}, path)
    with pytest.raises(CheckpointError, match="authors' format"):
        load_checkpoint(path)  # no architecture named
    model, info = load_checkpoint(path, arch="hourglass104")
    assert info["kind"] == "authors" and info["epoch"] == 77 and info["train_loss"] == pytest.approx(0.0123)
    assert info["optimizer_state_dict"]["param_groups"][0]["lr"] == 2.5e-4
    assert info["model_config"]["contract"] == {"spec": "coco", "skeleton": "default", "stride": 4,
                                                "with_scale": False}
    with torch.no_grad():
        out = model.eval()(hg_input)
    for i in range(2):
        np.testing.assert_allclose(out[i]["heatmaps"].numpy(), hg_reference[f"hmp_stack{i}"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[i]["offsets"].numpy(), hg_reference[f"omp_stack{i}"], rtol=1e-4, atol=1e-5)


def test_ours_round_trip_is_self_describing(tmp_path):
    model = build_model(make_config("realtime", "crowdpose", "dense", with_scale=True, channels=48))
    torch.nn.init.normal_(model.headnets[0].hp_convs[0].weight)
    path = save_checkpoint(tmp_path / "sub" / "ours.pt", model, epoch=3, step=1200, metrics={"ap": 0.41},
                           train_config={"lr": 1e-3, "sizes": (512, 640), "out": Path("runs/x")},
                           extra={"note": "test"})
    assert [p.name for p in path.parent.iterdir()] == ["ours.pt"]  # no temporary file left behind
    loaded, info = load_checkpoint(path)
    assert info["kind"] == "gopose" and info["format_version"] == FORMAT_VERSION
    assert (info["epoch"], info["step"], info["metrics"]) == (3, 1200, {"ap": 0.41})
    assert info["train_config"] == {"lr": 1e-3, "sizes": [512, 640], "out": "runs/x"}
    assert loaded.config == model.config and loaded.contract.n_limbs == model.contract.n_limbs
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="not 'hourglass104'"):
        load_checkpoint(path, arch="hourglass104")


def test_mismatched_keys_and_shapes_are_listed_in_one_error(tmp_path):
    model = build_model(make_config("realtime"))
    state = model.state_dict()
    state.pop("headnets.0.hp_convs.0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["decoder.laterals.0.0.weight"] = torch.zeros(10, 24, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save({"epoch": 1, "model_state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, arch="realtime", spec="coco", skeleton="default")
    msg = str(err.value)
    assert "missing keys (1)" in msg and "headnets.0.hp_convs.0.bias" in msg
    assert "unexpected keys (1)" in msg and "extra.weight" in msg
    assert "shape mismatches (1)" in msg and "(10, 24, 1, 1)" in msg


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_non_weights_only_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a weights-only file"):
        read_checkpoint(path)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(junk)
    good = save_checkpoint(tmp_path / "good.pt", build_model(make_config("realtime")))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(truncated)


def test_failed_save_leaves_previous_file_intact(tmp_path):
    model = build_model(make_config("realtime"))
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=1)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="metrics"):
        save_checkpoint(path, model, epoch=2, metrics={"bad": object()})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_fused_models_are_not_saved(tmp_path):
    from models.precision import fuse_for_inference
    fused = fuse_for_inference(build_model(make_config("realtime")))
    with pytest.raises(ValueError, match="fused"):
        save_checkpoint(tmp_path / "f.pt", fused)


def test_our_files_load_weights_only_without_custom_classes(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", build_model(make_config("realtime")), train_config={"a": (1, 2)})
    data = torch.load(path, weights_only=True)
    assert data["format"] == "gopose" and data["model_config"]["arch"] == "realtime"


@pytest.mark.parametrize("spec,skeleton,with_scale", [("crowdpose", "default", False), ("coco", "redundant", True),
                                                      ("coco", "dense", False)])
def test_contract_is_read_from_head_shapes(spec, skeleton, with_scale):
    from models.checkpoint import infer_contract
    with torch.device("meta"):
        model = build_model(make_config("hourglass104", spec, skeleton, with_scale))
    contract = infer_contract(model.state_dict())
    assert (contract.spec.name, contract.skeleton_name, contract.with_scale) == (spec, skeleton, with_scale)


def test_optimizer_state_round_trips_with_integer_keys(tmp_path):
    model = build_model(make_config("realtime"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 3, 64, 64))[0]["heatmaps"].sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "o.pt", model, optimizer_state=opt.state_dict(),
                           extra={"train_state": {"optimizer": opt.state_dict(), "step": 1}})
    _, info = load_checkpoint(path)
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(info["optimizer_state_dict"])
    assert 0 in info["extra"]["train_state"]["optimizer"]["state"]
    for key, value in opt.state_dict()["state"].items():
        assert torch.equal(fresh.state_dict()["state"][key]["momentum_buffer"], value["momentum_buffer"])


def test_saved_file_has_umask_permissions(tmp_path):
    path = save_checkpoint(tmp_path / "p.pt", build_model(make_config("realtime")))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_a_missing_only_or_unexpected_only_key_is_refused(tmp_path, change):
    """A silently non-strict load would pass a file with one key too few or too many: each alone is an error."""
    state = build_model(make_config("realtime")).state_dict()
    if change == "missing":
        state.pop("encoder.stem.0.0.weight")
    else:
        state["headnets.1.extra.weight"] = torch.zeros(1)
    path = tmp_path / "one_off.pth"
    torch.save({"epoch": 1, "model_state_dict": state}, path)
    with pytest.raises(CheckpointError, match=f"{change} keys \\(1\\)"):
        load_checkpoint(path, arch="realtime", spec="coco", skeleton="default")


def test_a_save_failing_in_the_middle_of_the_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """Half the bytes written, then the disk is full: the old checkpoint stays whole, no temporary file is left."""
    import errno
    import io

    model = build_model(make_config("realtime"))
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=1)
    before = path.read_bytes()
    real_save = torch.save

    def half_then_full(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model, epoch=2)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def _small_model():
    return build_model(make_config("realtime", stem=8, widths=(8, 8, 8, 16), depths=(1, 1, 1, 1), channels=16))


def test_a_checkpoint_damaged_inside_its_weights_is_refused_not_loaded(tmp_path):
    """A few bytes changed inside one weight tensor: torch reads the zip without its checksums and would load
    garbage weights silently; the file's CRCs tell."""
    model = _small_model()
    path = save_checkpoint(tmp_path / "damaged.pt", model)
    data = bytearray(path.read_bytes())
    weight = model.state_dict()["decoder.laterals.3.0.weight"].numpy().tobytes()
    at = bytes(data).find(weight)
    assert at > 0
    data[at + len(weight) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"checkpoint {path}.*damaged"):
        load_checkpoint(path)


def test_every_truncation_of_a_legacy_format_file_is_one_clear_error(tmp_path):
    """torch.save's pre-zip format (the authors' era) cut anywhere: one CheckpointError naming the file, never
    torch's struct.error / IndexError / AssertionError."""
    src = tmp_path / "legacy.pth"
    torch.save({"epoch": 1, "model_state_dict": _small_model().state_dict()}, src,
               _use_new_zipfile_serialization=False)
    data = src.read_bytes()
    cut = tmp_path / "cut.pth"
    for n in np.linspace(1, len(data) - 1, 40).astype(int):
        cut.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=f"checkpoint {cut}"):
            load_checkpoint(cut, arch="realtime")


@pytest.mark.parametrize("damage", ["no weights", "weights not a dict", "weight not a tensor", "unknown arch",
                                    "unknown option", "bad version", "codec contract not a dict",
                                    "legacy codec sigma not a number"])
def test_malformed_contents_of_our_format_name_the_file(tmp_path, damage):
    """A file in our format whose contents do not describe a model (another GOPose version, a hand edit): one
    CheckpointError naming the file, not a KeyError / AttributeError / an InputError without the file."""
    good = save_checkpoint(tmp_path / "good.pt", _small_model())
    data = torch.load(good, weights_only=True)
    if damage == "no weights":
        del data["model_state_dict"]
    elif damage == "weights not a dict":
        data["model_state_dict"] = [1, 2]
    elif damage == "weight not a tensor":
        data["model_state_dict"]["decoder.laterals.3.0.weight"] = (1, 2)
    elif damage == "unknown arch":
        data["model_config"]["arch"] = "transformer9000"
    elif damage == "unknown option":
        data["model_config"]["kwargs"]["attention_heads"] = 4
    elif damage == "bad version":
        data["format_version"] = "two"
    elif damage == "legacy codec sigma not a number":  # a file from before codecs were stored
        del data["codec"]
        data["train_config"] = {"data": {"target_sigma": "six"}}
    else:
        data["codec"]["contract"] = 5
    path = tmp_path / "odd.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path}"):
        load_checkpoint(path)


@pytest.mark.parametrize("state", [{"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)},
                                   {"headnets.0.hp_convs.0.weight": torch.zeros(5, 16, 1, 1),
                                    "headnets.1.reg_convs.0.weight": torch.zeros(38, 16, 1, 1)}])
def test_a_foreign_state_dict_named_with_an_architecture_names_the_file(tmp_path, state):
    """Another project's weights (or heads of no known spec) given with --arch: the error says which file."""
    path = tmp_path / "foreign.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path}"):
        load_checkpoint(path, arch="hourglass104")


def test_a_checkpoint_saved_without_checksums_still_loads(tmp_path):
    """``torch.serialization.set_crc32_options(False)`` writes CRC 0 for every member: nothing to check, not damage."""
    model = _small_model()
    torch.serialization.set_crc32_options(False)
    try:
        path = save_checkpoint(tmp_path / "no_crc.pt", model)
    finally:
        torch.serialization.set_crc32_options(True)
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
