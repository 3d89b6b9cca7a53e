"""Backends (ONNX Runtime, OpenVINO, fp32 and INT8), the INT8 artefact cache and the measured ``auto`` choice, on a
real randomly initialised network, real calibration images and tiny inputs."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.contract import PoseContract
from core.errors import InputError
from core.keypoints import COCO
from models.backends import BackendUnavailable, create_runner, installed, require, select
from models.backends.choice import CHOICE_FILE, pick
from models.backends.int8 import (ARTEFACT, META, CalibrationSource, Int8Store, calibration_images, depthwise_convs,
                                  model_digest, overflow_fix)
from models.config import ModelConfig
from models.factory import build_model
from models.precision import InferenceModel

ROOT = Path(__file__).resolve().parents[2]

SIZE = 64


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    """The BN-folded network the backends run (a real, randomly initialised real-time network)."""
    torch.manual_seed(0)
    return InferenceModel(build_model(ModelConfig("realtime", PoseContract(COCO), {})), "cpu", "fp32").model


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list[Path]:
    return calibration_images([CalibrationSource(data_dir / "coco" / "train2017_mini" / "images")], limit=4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One backend cache for the module: the INT8 model is built once and reused."""
    return tmp_path_factory.mktemp("backend-cache")


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1


def _need(name: str) -> None:
    if name not in installed([name]):
        pytest.skip(f"backend {name} is not installed")


@pytest.mark.parametrize("name", ["onnx", "openvino"])
def test_fp32_backends_match_torch_at_two_shapes(net, name) -> None:
    _need(name)
    runner = create_runner(net, name, size=SIZE)
    assert runner.backend == name
    for shape in [(1, 3, SIZE, SIZE), (2, 3, 96, 64)]:  # dynamic batch and size
        x = torch.rand(*shape) * 2 - 1
        got, ref = runner(x), net.infer(x)
        for key in ("heatmaps", "offsets"):
            assert got[key].dtype == torch.float32 and got[key].shape == ref[key].shape
            np.testing.assert_allclose(got[key].numpy(), ref[key].detach().numpy(), rtol=1e-3, atol=1e-3)
        assert got["scales"] is None


def test_int8_is_built_once_cached_and_close_to_fp32(net, images, x, cache) -> None:
    _need("openvino-int8")
    calls = []

    def calibration():
        calls.append(1)
        return images

    ov = create_runner(net, "openvino-int8", size=SIZE, cache_dir=cache, calibration=calibration)
    ort = create_runner(net, "onnx-int8", size=SIZE, cache_dir=cache, calibration=calibration)
    assert len(calls) == 1  # both runtimes run the one artefact
    entry = Int8Store(cache / "int8").entry(net, SIZE)
    meta = json.loads((entry / META).read_text())
    assert meta["model_sha256"] == model_digest(net) and meta["size"] == SIZE and meta["calibration_images"] == 4
    assert meta["artefact"]["bytes"] == (entry / ARTEFACT).stat().st_size
    ref = net.infer(x)["heatmaps"].detach().numpy().ravel()
    for runner in (ov, ort):
        q = runner(x)["heatmaps"].numpy().ravel()
        assert np.corrcoef(q, ref)[0, 1] > 0.9  # quantised, not another network
        assert not np.array_equal(q, ref)       # and really quantised


def test_int8_keeps_depthwise_convolutions_in_fp32(net, images, cache) -> None:
    _need("onnx-int8")
    import onnx

    create_runner(net, "onnx-int8", size=SIZE, cache_dir=cache, calibration=lambda: images)
    graph = onnx.load(str(Int8Store(cache / "int8").entry(net, SIZE) / ARTEFACT))
    producer = {out: node.op_type for node in graph.graph.node for out in node.output}
    names = set(depthwise_convs(graph))
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    depthwise = [n for n in convs if n.name in names]
    dense = [n for n in convs if n.name not in names]
    assert depthwise and dense
    assert all(producer.get(n.input[1]) != "DequantizeLinear" for n in depthwise)  # fp32 weights
    assert sum(producer.get(n.input[1]) == "DequantizeLinear" for n in dense) > len(dense) // 2  # INT8 weights


def test_eval_runs_an_int8_backend(net, cache, data_dir, tmp_path) -> None:
    """``gopose eval --backend openvino-int8``: the eval path with the cached INT8 model of the same weights."""
    _need("openvino-int8")
    from eval.runner import EvalOptions, run_evaluation

    subset = data_dir / "coco" / "val2017_subset"
    opts = EvalOptions(annotations=subset / "annotations.json", images=subset / "images", out=tmp_path,
                       long_edge=SIZE, backend="openvino-int8", cache_dir=cache, workers=0, limit=3, device="cpu")
    summary = run_evaluation(opts, model=net).summary
    assert summary["checkpoint"]["backend"] == "openvino-int8" and summary["n_images"] == 3
    assert (tmp_path / "results.json").is_file()


def test_stale_truncated_or_corrupt_int8_is_rebuilt_never_used(net, images, tmp_path, caplog) -> None:
    _need("onnx-int8")
    store = Int8Store(tmp_path)
    path = store.ensure(net, SIZE, lambda: images)
    meta = path.parent / META
    good, good_meta = path.read_bytes(), meta.read_text()

    def other(field: str, value):
        d = json.loads(good_meta)
        d[field] = value
        return json.dumps(d)

    damages = {
        "truncated": lambda: path.write_bytes(good[: len(good) // 2]),
        "corrupt": lambda: path.write_bytes(good[:-16] + bytes(16)),
        "another model sha256": lambda: meta.write_text(other("model_sha256", "0" * 64)),
        "another size": lambda: meta.write_text(other("size", SIZE * 2)),
        "another versions": lambda: meta.write_text(other("versions", {"nncf": "0.0"})),
        "another overflow fix": lambda: meta.write_text(other("overflow_fix", "disable")),
        "unreadable": lambda: meta.write_text("{not json"),
        "missing or unreadable": lambda: meta.unlink(),  # a build killed between its two writes
    }
    for reason, damage in damages.items():
        damage()
        found, why = store.check(net, SIZE)
        assert found is None and reason in why, (reason, why)
        path.write_bytes(good)
        meta.write_text(good_meta)
        assert store.check(net, SIZE) == (path, "")
    damages["truncated"]()
    calls = []
    with caplog.at_level(logging.WARNING, logger="models.backends.int8"):
        assert store.ensure(net, SIZE, lambda: calls.append(1) or images) == path
    assert calls == [1] and "truncated" in caplog.text and "rebuilding" in caplog.text
    assert store.check(net, SIZE) == (path, "")


def test_int8_of_another_gopose_version_is_rebuilt(net, tmp_path, monkeypatch) -> None:
    """The artefact is GOPose's export of the network: after upgrading GOPose (whose network code may have changed
    with the same weights) the old INT8 model was still used."""
    import models.backends.int8 as int8

    store = Int8Store(tmp_path)
    where = store.entry(net, SIZE)
    where.mkdir(parents=True)
    (where / ARTEFACT).write_bytes(b"an int8 model")
    meta = {**store._key(net, SIZE, model_digest(net)),
            "artefact": {"file": ARTEFACT, "bytes": 13, "sha256": int8.sha256_file(where / ARTEFACT)}}
    (where / META).write_text(json.dumps(meta))
    assert store.check(net, SIZE) == (where / ARTEFACT, "")
    real = int8.version
    monkeypatch.setattr(int8, "version", lambda name: "99.0" if name == "gopose" else real(name))
    found, why = store.check(net, SIZE)
    assert found is None and "another versions" in why


def test_a_model_and_its_bn_folded_copy_share_one_int8_model_and_auto_record() -> None:
    """The docs' ``create_runner(net, ...)`` with a model as loaded built an INT8 model (minutes) that annotate,
    eval and ``models export --int8`` (which run the BN-folded network) never found, and the reverse."""
    torch.manual_seed(3)
    raw = build_model(ModelConfig("realtime", PoseContract(COCO), {})).eval()
    for m in raw.modules():  # trained-looking batch-norm statistics, so folding changes the weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.1, 0.1)
    folded = InferenceModel(raw, "cpu", "fp32").model
    assert model_digest(raw) == model_digest(folded)
    assert Int8Store("cache").entry(raw, SIZE) == Int8Store("cache").entry(folded, SIZE)
    with torch.no_grad():
        next(raw.parameters()).mul_(1.5)
    assert model_digest(raw) != model_digest(folded)  # other weights: another model


@pytest.mark.parametrize("flags, fix", [({"sse2", "avx2", "fma"}, "enable"),              # AVX2 only: u8 x s8 saturates
                                       ({"sse2", "avx2", "avx512f", "avx512_vnni"}, "first_layer_only"),
                                       ({"sse2", "avx2", "avx_vnni"}, "first_layer_only"),
                                       ({"fp", "asimd", "asimddp"}, "first_layer_only"),  # ARM
                                       (set(), "first_layer_only")])                    # unknown CPU
def test_weights_are_quantised_to_7_bits_only_on_x86_cpus_without_vnni(flags, fix) -> None:
    assert overflow_fix(frozenset(flags)) == fix


def test_the_int8_model_has_7_bit_weights_exactly_where_this_cpu_needs_them(net, images, tmp_path) -> None:
    _need("onnx-int8")
    import onnx
    from onnx import numpy_helper

    path = Int8Store(tmp_path).ensure(net, SIZE, lambda: images)
    assert json.loads((path.parent / META).read_text())["overflow_fix"] == overflow_fix()
    graph = onnx.load(str(path))
    consts = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    kernels = [consts[n.input[0]] for n in graph.graph.node if n.op_type == "DequantizeLinear"
               and n.input[0] in consts and consts[n.input[0]].dtype == np.int8 and consts[n.input[0]].ndim == 4]
    peaks = [int(np.abs(k.astype(np.int16)).max()) for k in kernels]
    assert len(peaks) > 2 and peaks[0] <= 64  # NNCF always fixes the first layer
    assert (max(peaks) <= 64) is (overflow_fix() == "enable"), peaks


def test_int8_without_calibration_images_is_one_clear_error(net, tmp_path) -> None:
    _need("onnx-int8")
    with pytest.raises(InputError, match="calibration images"):
        create_runner(net, "onnx-int8", size=SIZE, cache_dir=tmp_path, calibration=lambda: [])
    assert not (Int8Store(tmp_path / "int8").entry(net, SIZE) / META).exists()


def test_a_calibration_folder_without_images_is_named(images, tmp_path) -> None:
    """``models export --int8 --calibration DIR`` with the photos in a sub-folder of DIR said "none were found:
    build it once with `gopose models export MODEL --int8 --calibration DIR`", the command just run."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(images[0].read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=f"calibration image folder {tmp_path} holds no images"):
        calibration_images([CalibrationSource(tmp_path)])
    assert calibration_images([CalibrationSource(tmp_path / "photos")]) == [tmp_path / "photos" / "a.jpg"]


def test_calibration_keeps_only_images_that_decode(images, tmp_path, caplog) -> None:
    """Undecodable files are left out with one warning (and not counted as calibration images); none left is one
    error naming a file."""
    from models.backends.int8 import decodable_images

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[0].read_bytes()[:20])
    frame = np.zeros((8, 8, 3), np.uint8)
    with caplog.at_level(logging.WARNING):
        assert decodable_images([images[0], bad, frame, images[1]]) == [images[0], frame, images[1]]
    assert f"1 of 4 calibration images cannot be decoded and are left out (e.g. {bad})" in caplog.text
    with pytest.raises(InputError, match=f"none of the 1 calibration images can be decoded \\(e.g. {bad}\\)"):
        decodable_images([bad])
    assert decodable_images([]) == []


def test_backend_not_installed_names_the_extra(net, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # how Python marks a module that cannot be imported
    with pytest.raises(BackendUnavailable) as err:
        require("openvino-int8")
    message = str(err.value)
    assert "\n" not in message and "openvino" in message and "pip install 'gopose[openvino,int8]'" in message
    with pytest.raises(BackendUnavailable, match=r"gopose\[openvino\]"):
        create_runner(net, "openvino", size=SIZE)
    assert "openvino" not in installed()
    with pytest.raises(InputError, match="unknown backend"):
        require("tensorrt")


def test_a_backend_list_names_only_the_choices_it_takes() -> None:
    """``gopose bench model --backends auto`` said "unknown backend 'auto'; choose from auto, torch, ...": a list
    takes backend names or ``all``, never ``auto``."""
    from models.backends import NAMES, parse_list

    for text in ("auto", "onnx,opnvino"):
        with pytest.raises(InputError, match="unknown backend") as err:
            parse_list(text)
        assert "auto" not in str(err.value).split("choose from")[1], str(err.value)
        assert "all" in str(err.value) and all(n in str(err.value) for n in NAMES)
    with pytest.raises(InputError, match=r"unknown backend 'auto'; choose from torch, onnx"):
        require("auto")  # create_runner's names (select takes auto)
    assert parse_list("all") == installed() and parse_list(" torch , onnx ") == ["torch", "onnx"]


def test_auto_is_measured_once_then_read(net, tmp_path) -> None:
    made: list[str] = []

    def make(name: str):
        made.append(name)
        return create_runner(net, name, size=SIZE)

    first, _, record = pick(net, size=SIZE, threads=None, cache_dir=tmp_path, make=make, repeats=2)
    candidates = installed(["torch", "onnx", "openvino"])
    assert made == candidates and first in candidates
    if len(candidates) > 1:
        assert set(record["ms"]) == set(candidates) and first == min(record["ms"], key=record["ms"].get)
    stored = json.loads((tmp_path / CHOICE_FILE).read_text())
    assert [r["backend"] for r in stored.values()] == [first]
    made.clear()
    again, runner, _ = pick(net, size=SIZE, threads=None, cache_dir=tmp_path, make=make)
    assert again == first and made == [first]  # read, not measured: only the chosen runner is built
    # a damaged record file is measured again and rewritten
    (tmp_path / CHOICE_FILE).write_text("garbage")
    made.clear()
    pick(net, size=SIZE, threads=None, cache_dir=tmp_path, make=make, repeats=1)
    assert made == candidates and json.loads((tmp_path / CHOICE_FILE).read_text())


@pytest.mark.parametrize("ms", ["fast", 5, [1.0]])
def test_auto_record_with_damaged_timings_is_measured_again(net, tmp_path, ms) -> None:
    """A record whose timings are not a mapping (a hand-edited or damaged file) counts as absent: measured again and
    rewritten (before: it was used, and ``select`` raised ValueError/TypeError from ``dict(record["ms"])``)."""
    from models.backends.choice import AUTO_CANDIDATES, choice_key

    candidates = installed(list(AUTO_CANDIDATES))
    if len(candidates) < 2:
        pytest.skip("needs a second backend to measure")
    key = choice_key(model_digest(net), SIZE, None, candidates)
    path = tmp_path / CHOICE_FILE
    path.write_text(json.dumps({key: {"backend": "torch", "ms": ms}}))
    made: list[str] = []

    def make(name: str):  # the same cheap network for every candidate: only the record matters here
        made.append(name)
        return net.infer

    name, _, record = pick(net, size=SIZE, threads=None, cache_dir=tmp_path, make=make, repeats=1)
    assert made == candidates and name in candidates  # measured again
    assert isinstance(record["ms"], dict) and json.loads(path.read_text())[key]["ms"] == record["ms"]


def test_auto_passes_over_a_backend_that_fails_on_its_first_run(net, tmp_path, caplog) -> None:
    """A runtime that compiles lazily can fail on its first call: it is logged and not chosen; the others are
    timed and recorded as usual (before, the timing thread died, every backend timed infinite, and that was
    recorded)."""
    candidates = installed(["torch", "onnx", "openvino"])
    if len(candidates) < 2:
        pytest.skip("needs a second backend to compare with")
    broken = candidates[-1]

    def fails(x):
        raise RuntimeError("cannot compile for this shape")

    def make(name: str):
        return fails if name == broken else create_runner(net, name, size=SIZE)

    with caplog.at_level(logging.WARNING):
        name, _, record = pick(net, size=SIZE, threads=None, cache_dir=tmp_path, make=make, repeats=2)
    assert name != broken and broken not in record["ms"] and set(record["ms"]) == set(candidates[:-1])
    assert f"failed on a (1, 3, {SIZE}, {SIZE}) input" in caplog.text
    assert [r["backend"] for r in json.loads((tmp_path / CHOICE_FILE).read_text()).values()] == [name]
    with pytest.raises(InputError, match="no backend could run this network"):
        pick(net, size=SIZE, threads=None, cache_dir=None, make=lambda name: fails, repeats=1)


def test_auto_choices_recorded_at_once_by_several_processes_are_all_kept(tmp_path) -> None:
    """Two processes recording 30 choices each into one file: the read-modify-write is locked, none is lost."""
    script = ("import sys; from pathlib import Path; from models.backends.choice import _record\n"
              "for i in range(30): _record(Path(sys.argv[1]), f'{sys.argv[2]}-{i}', {'backend': 'torch'})")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / CHOICE_FILE), tag], cwd=ROOT)
             for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(json.loads((tmp_path / CHOICE_FILE).read_text())) == 60


def test_auto_in_an_unwritable_cache_folder_runs_and_measures_again_next_time(net, tmp_path, caplog) -> None:
    if not Path("/proc/sys").is_dir():
        pytest.skip("needs /proc/sys, a folder where even root cannot create files")
    (tmp_path / "cache").symlink_to("/proc/sys")
    make = functools.partial(create_runner, net, size=SIZE)
    name, runner, _ = pick(net, size=SIZE, threads=None, cache_dir=tmp_path / "cache", make=make, repeats=1)
    assert name in installed(["torch", "onnx", "openvino"]) and runner is not None
    if len(installed(["torch", "onnx", "openvino"])) > 1:
        assert "cannot record the backend choice" in caplog.text


def test_select_explicit_backend_and_torch_reuse(net) -> None:
    torch_runner = InferenceModel(net, "cpu", "fp32")
    assert select(net, "torch", size=SIZE, torch_runner=torch_runner) == ("torch", torch_runner, {})


def test_calibration_images_are_deterministic_and_never_the_eval_split(data_dir: Path) -> None:
    lspet = data_dir / "lspet"
    train = CalibrationSource(lspet / "images", lspet / "annotations.json", split="train")
    coco = CalibrationSource(data_dir / "coco" / "train2017_mini" / "images")
    picked = calibration_images([train, coco], limit=120)
    assert picked == calibration_images([train, coco], limit=120) and len(picked) == 120
    val = {r["file_name"] for r in json.loads((lspet / "annotations.json").read_text())["images"]
           if r.get("split") != "train"}
    assert not {p.name for p in picked if p.parent == lspet / "images"} & val
    coco_files = coco.files()
    assert sum(p.parent == coco.images for p in picked) == min(60, len(coco_files))
    with pytest.raises(InputError, match="does not exist"):
        calibration_images([CalibrationSource(data_dir / "nope")])


def test_int8_on_a_fresh_install_calibrates_on_frames_of_the_users_video(tmp_path, monkeypatch, data_dir) -> None:
    """Without the shared calibration images (a user's machine), annotate's INT8 build uses frames of its input."""
    _need("onnx-int8")
    from app.engine import EngineConfig, PoseEstimator, video_frames

    frames = video_frames(data_dir / "videos" / "street_5frames_960x540.mp4", 64)
    assert len(frames) == 5 and frames[0].shape == (540, 960, 3) and frames[0].dtype == np.uint8
    monkeypatch.setenv("GOPOSE_DATA", str(tmp_path / "no_shared_data"))
    torch.manual_seed(0)
    model = build_model(ModelConfig("realtime", PoseContract(COCO), {}))
    video = str(data_dir / "videos" / "street_5frames_960x540.mp4")
    est = PoseEstimator(model, EngineConfig(backend="onnx-int8", long_edge=SIZE, cache_dir=str(tmp_path / "cache"),
                                            calibration_videos=(video,)))
    assert est.backend == "onnx-int8"
    meta = json.loads(next((tmp_path / "cache").rglob(META)).read_text())
    assert meta["calibration_images"] == 5
    with pytest.raises(InputError, match="calibration images"):
        PoseEstimator(model, EngineConfig(backend="onnx-int8", long_edge=SIZE, cache_dir=str(tmp_path / "c2")))


def test_int8_never_calibrates_on_the_cover_art_of_a_music_file(tmp_path, monkeypatch, music_file) -> None:
    """Calibrating on the user's input read ``container.streams.video[0]``: for a song with cover art, the INT8
    model was built from that one picture, silently. It now reads the input as every run does (``app.sources``:
    the moving picture) and names a file that has none."""
    _need("onnx-int8")
    from app.engine import EngineConfig, PoseEstimator

    song = music_file(tmp_path / "song.mp4")
    monkeypatch.setenv("GOPOSE_DATA", str(tmp_path / "no_shared_data"))
    torch.manual_seed(0)
    model = build_model(ModelConfig("realtime", PoseContract(COCO), {}))
    config = EngineConfig(backend="onnx-int8", long_edge=SIZE, cache_dir=str(tmp_path / "cache"),
                          calibration_videos=(str(song),))
    with pytest.raises(InputError, match=r"no video stream in .*song\.mp4 \(only a cover picture"):
        PoseEstimator(model, config)
    assert not list((tmp_path / "cache").rglob(META))  # no INT8 model was built from the picture


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` read-only for this process while the block runs: by its permission bits for a normal user, by a
    read-only bind mount for root (whom permission bits do not stop); skips where neither can be done."""
    if os.geteuid() != 0:
        modes = {d: d.stat().st_mode for d in [folder, *folder.rglob("*")] if d.is_dir()}
        for d in modes:
            d.chmod(0o555)
        try:
            yield
        finally:
            for d, mode in modes.items():
                d.chmod(mode)
        return
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode:
        pytest.skip("root without the right to mount: no way to make a folder read-only")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", folder, folder], capture_output=True).returncode:
            pytest.skip("cannot remount a bind mount read-only here")
        yield
    finally:
        subprocess.run(["umount", folder], capture_output=True)


def test_int8_in_a_read_only_cache_folder_is_built_in_memory_with_one_warning(net, images, x, tmp_path,
                                                                                caplog) -> None:
    """A stale INT8 model in a read-only cache (a shared or read-only mounted model folder) stopped the run with a
    raw ``OSError: [Errno 30] Read-only file system: .../meta.json``; now the model is built in memory and one
    warning names the folder. A valid model there is used as is, and an export (whose point is the file) is one
    error naming the folder, before any calibration image is read."""
    _need("onnx-int8")
    store = Int8Store(tmp_path / "int8")
    built = store.ensure(net, SIZE, lambda: images)
    entry, good_meta = built.parent, (built.parent / META).read_text()
    with _read_only(tmp_path):
        assert create_runner(net, "onnx-int8", size=SIZE, cache_dir=tmp_path, calibration=lambda: 1 / 0)(x)
    (entry / META).write_text(json.dumps({**json.loads(good_meta), "versions": {"nncf": "0.0"}}))  # stale
    caplog.clear()
    with _read_only(tmp_path):
        with caplog.at_level(logging.WARNING, logger="models.backends.int8"):
            runner = create_runner(net, "onnx-int8", size=SIZE, cache_dir=tmp_path, calibration=lambda: images)
        with pytest.raises(InputError, match=f"cannot write the INT8 model folder {entry}"):
            Int8Store(tmp_path / "int8").ensure(net, SIZE, lambda: 1 / 0, in_memory=False)
    ref = net.infer(x)["heatmaps"].detach().numpy().ravel()
    assert np.corrcoef(runner(x)["heatmaps"].numpy().ravel(), ref)[0, 1] > 0.9
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and f"cannot keep the INT8 model in {entry}" in warned[0] and "versions" in warned[0]
    assert "nncf" in json.loads((entry / META).read_text())["versions"]  # nothing in the folder was changed


def test_int8_in_a_cache_folder_that_cannot_be_created_runs_with_one_warning(net, images, x, tmp_path,
                                                                               caplog) -> None:
    """A cache folder that cannot be created stopped the run ("cannot create the INT8 model folder"); the run now
    goes on with the INT8 model built in memory and one warning naming the folder."""
    _need("onnx-int8")
    if not Path("/proc/sys").is_dir():
        pytest.skip("needs /proc/sys, a folder where even root cannot create files")
    (tmp_path / "cache").symlink_to("/proc/sys")
    with caplog.at_level(logging.WARNING, logger="models.backends.int8"):
        runner = create_runner(net, "onnx-int8", size=SIZE, cache_dir=tmp_path / "cache", calibration=lambda: images)
    assert runner(x)["heatmaps"].shape == net.infer(x)["heatmaps"].shape
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "cannot keep the INT8 model in" in warned[0] and str(tmp_path / "cache") in warned[0]
