"""The inference engine with a real (randomly initialised) real-time network."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine import EngineConfig, PoseEstimator
from app.sources import open_source
from core.decoder import decode
from core.errors import InputError


@pytest.fixture(scope="module")
def frames(street_video: Path) -> list[np.ndarray]:
    with open_source(street_video) as src:
        return [f.image for f in src][:3]


def test_estimate_is_network_plus_decoder_in_frame_coordinates(estimator, frames) -> None:
    image = frames[0]
    res = estimator.estimate(image)
    assert res.frame_size == (960, 540) and len(res.poses) > 0
    assert set(res.timings) == {"preprocess", "network", "decode", "total"} and res.timings["total"] > 0
    # the same computation by hand: letterbox, the network's own normalisation, decode, inverse transform
    t = estimator.transform_for(960, 540)
    assert t.dst_size == (256, 256)
    x = estimator.model.preprocess(t.warp(image))[None]
    with torch.inference_mode():
        out = estimator.model.infer(x)
    ref = decode(out["heatmaps"], out["offsets"], estimator.contract, estimator.decoder_config)[0]
    ref = ref.map_points(lambda xy: np.clip(t.inverse(xy), -0.5, np.array([959.5, 539.5])))  # kept in the frame
    np.testing.assert_allclose(res.poses.keypoints, ref.keypoints, atol=1e-3)
    np.testing.assert_allclose(res.poses.scores, ref.scores, atol=1e-6)


def test_batch_matches_single_and_mixed_sizes(estimator, frames) -> None:
    small = frames[1][::2, ::3].copy()  # 320x270: another size in the same batch
    batch = estimator.estimate_batch([frames[0], small, frames[2]])
    assert [r.frame_size for r in batch] == [(960, 540), (320, 270), (960, 540)]
    for img, res in zip([frames[0], small, frames[2]], batch):
        single = estimator.estimate(img)
        np.testing.assert_allclose(res.poses.keypoints, single.poses.keypoints, atol=1e-2)
    assert estimator.estimate_batch([]) == []


def test_timings_count_the_letterbox(estimator) -> None:
    """``timings`` left out the letterbox of the frame (most of the preprocessing of a large frame on a CPU): the
    reported total was a third of the time ``estimate`` took for a 4000 x 3000 photo."""
    frame = np.full((3000, 4000, 3), 128, np.uint8)
    frame[1000:2000, 1500:2500] = 30
    estimator.estimate(frame)
    ratios = []
    for _ in range(3):
        t0 = time.perf_counter()
        res = estimator.estimate(frame)
        ratios.append(res.timings["total"] / ((time.perf_counter() - t0) * 1e3))
    assert 0.7 <= max(ratios) <= 1.0  # before: about 0.3
    assert res.timings["total"] == pytest.approx(sum(v for k, v in res.timings.items() if k != "total"))


def test_flip_test_changes_maps(estimator, frames) -> None:
    flipped = PoseEstimator(estimator.model, EngineConfig(device="cpu", long_edge=256, flip=True, backend="torch",
                                                          decoder=estimator.decoder_config))
    a = estimator.estimate(frames[0]).poses
    b = flipped.estimate(frames[0]).poses
    assert len(b) > 0 and (len(a) != len(b) or not np.allclose(a.keypoints, b.keypoints))


def test_update_decoder_live_from_another_thread(estimator, frames) -> None:
    old = estimator.decoder_config
    try:
        many = len(estimator.estimate(frames[0]).poses)
        t = threading.Thread(target=estimator.update_decoder, kwargs={"threshold": 0.5})
        t.start()
        t.join()
        assert estimator.decoder_config.threshold == 0.5
        assert len(estimator.estimate(frames[0]).poses) < many
    finally:
        estimator._decoder = old


def test_bad_frames_and_settings(estimator) -> None:
    with pytest.raises(InputError, match="BGR uint8"):
        estimator.estimate(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="BGR uint8"):
        estimator.estimate(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError, match="precision"):
        EngineConfig(precision="int4")
    with pytest.raises(InputError, match="long edge must be at least 32"):
        EngineConfig(long_edge=8)
    with pytest.raises(InputError, match="long edge must be at most 4096"):  # a library caller gets the CLI's limit
        EngineConfig(long_edge=100000)
    with pytest.raises(InputError, match="device"):
        EngineConfig(device="tpu")
    for bad in (0.0, -0.1, 1.5):  # 0 failed later with the whole DecoderConfig, 1.5 silently found nobody
        with pytest.raises(InputError, match=r"keypoint threshold must be in \(0, 1\]"):
            EngineConfig(threshold=bad)
    for bad in ("cuda:x", "cuda:", "cuda:-1", "cuda:0 "):  # torch.device would fail later with a traceback
        with pytest.raises(InputError, match="device must be one of"):
            EngineConfig(device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda(estimator) -> None:
    with pytest.raises(InputError, match="CUDA is not available"):
        PoseEstimator(estimator.model, EngineConfig(device="cuda"))


def test_cuda_index_beyond_the_machines_gpus_is_an_input_error(monkeypatch) -> None:
    """``cuda:N`` past the last GPU failed inside torch's first operation with a CUDA traceback. (The GPU count is
    the one thing faked here: this machine has none.)"""
    from app.engine import resolve_device
    from train.distributed import resolve_device as resolve_training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"device cuda:2 requested but this machine has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    assert resolve_training_device("cuda", local_rank=1) == torch.device("cuda:1")
    with pytest.raises(InputError, match="run.device cuda:3 requested but this machine has 2 CUDA devices"):
        resolve_training_device("cuda:3")
    with pytest.raises(InputError, match="run.device cuda:2 requested"):  # torchrun with more processes than GPUs
        resolve_training_device("cuda", local_rank=2)
    with pytest.raises(InputError, match=r"run.device auto \(one GPU per process\) cuda:2 requested"):
        resolve_training_device("auto", local_rank=2)


def test_cpu_ignores_amp_and_auto_picks_cpu(estimator, frames) -> None:
    est = PoseEstimator(estimator.model, EngineConfig(device="auto", precision="fp16", long_edge=128))
    assert est.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if est.device.type == "cpu":
        assert est.amp_dtype is None
    assert est.estimate(frames[0]).frame_size == (960, 540)
    est.model.to("cpu")  # the shared module must stay on the CPU for the other tests


def test_one_calibration_folder_or_video_given_as_a_string(estimator, data_dir: Path, street_video) -> None:
    """``calibration="photos/"`` was iterated letter by letter: building the INT8 model failed with "calibration
    image folder p does not exist" (and a video given as a string was silently not used)."""
    folder = data_dir / "coco" / "train2017_mini" / "images"
    config = EngineConfig(device="cpu", long_edge=128, backend="torch", calibration=str(folder),
                          calibration_videos=street_video)
    assert config.calibration == (str(folder),) and config.calibration_videos == (str(street_video),)
    images = PoseEstimator(estimator.model, config)._calibration_images()  # what an INT8 backend calibrates on
    assert images and all(Path(p).parent == folder for p in images)
    with pytest.raises(InputError, match="calibration"):
        EngineConfig(calibration=3)


def test_from_checkpoint(checkpoint: Path, frames, tmp_path) -> None:
    est = PoseEstimator.from_checkpoint(checkpoint, EngineConfig(long_edge=128, cache_dir=str(tmp_path)))
    assert est.name == "realtime_random" and est.info["kind"] and "optimizer_state_dict" not in est.info
    assert est.estimate(frames[0]).frame_size == (960, 540)
    est.close()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_backend_matches_torch(estimator, frames, backend, tmp_path) -> None:
    from models.backends import installed

    if backend not in installed([backend]):
        pytest.skip(f"backend {backend} is not installed")
    est = PoseEstimator(estimator.model, EngineConfig(device="cpu", long_edge=256, backend=backend,
                                                      decoder=estimator.decoder_config, cache_dir=str(tmp_path)))
    assert est.backend == backend
    for img in frames[:2]:
        a, b = estimator.estimate(img).poses, est.estimate(img).poses
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=0.05)
    batch = est.estimate_batch(frames[:2])
    assert len(batch) == 2 and len(batch[0].poses) == len(estimator.estimate(frames[0]).poses)


def test_auto_backend_is_measured_once_per_model_and_recorded(estimator, tmp_path) -> None:
    from models.backends import installed
    from models.backends.choice import CHOICE_FILE

    config = EngineConfig(device="cpu", long_edge=128, backend="auto", cache_dir=str(tmp_path))
    auto = PoseEstimator(estimator.model, config)
    candidates = installed(["torch", "onnx", "openvino"])
    assert auto.backend in candidates
    if len(candidates) > 1:
        timings = auto.backend_timings
        assert set(timings) == set(candidates) and auto.backend == min(timings, key=timings.get)
    record = json.loads((tmp_path / CHOICE_FILE).read_text())
    assert [r["backend"] for r in record.values()] == [auto.backend]
    again = PoseEstimator(estimator.model, config)  # read from the record: same backend, nothing timed
    assert again.backend == auto.backend and again.backend_timings == auto.backend_timings
    assert json.loads((tmp_path / CHOICE_FILE).read_text()) == record


def test_uninstalled_backend_is_one_line_naming_the_extra(estimator, monkeypatch) -> None:
    import sys

    from models.backends import BackendUnavailable

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # how Python marks a module that cannot be imported
    with pytest.raises(BackendUnavailable, match=r"backend onnx needs onnxruntime .*pip install 'gopose\[onnx\]'"):
        PoseEstimator(estimator.model, EngineConfig(device="cpu", long_edge=128, backend="onnx"))
    with pytest.raises(InputError, match="backend must be one of"):
        EngineConfig(backend="tensorrt")
