"""Shared fixtures: the real data folder (skip with a reason when absent) and offscreen Qt."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from eval.shared_data import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def isolated_model_home(tmp_path_factory: pytest.TempPathFactory):
    """Every test runs with its own user model folder (``GOPOSE_HOME``), never the real one: installed models of
    the machine cannot leak in, and caches tests write (the measured backend choice, INT8 models) stay here.
    Tests that need an empty or special folder set ``GOPOSE_HOME`` themselves."""
    old = os.environ.get("GOPOSE_HOME")
    os.environ["GOPOSE_HOME"] = str(tmp_path_factory.mktemp("gopose_home"))
    yield
    if old is None:
        os.environ.pop("GOPOSE_HOME", None)
    else:
        os.environ["GOPOSE_HOME"] = old


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """``gopose`` run in process sets the process's torch thread count (the application's choice, e.g. annotate's
    default of all CPUs but one): every test starts from the same count."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder; tests that need it skip where it is absent (a user's checkout), except when
    ``GOPOSE_REQUIRE_DATA=1`` (CI): then its absence is a failure, so a CI run cannot pass by skipping."""
    path = shared_data_dir()
    if not path.is_dir():
        message = f"shared data folder {path} is absent (set GOPOSE_DATA or place ../shared/data)"
        if os.environ.get("GOPOSE_REQUIRE_DATA") == "1":
            pytest.fail(message + " and GOPOSE_REQUIRE_DATA=1", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def coco_538(data_dir: Path) -> Path:
    return data_dir / "coco" / "person_keypoints_val2017_538img.json"


def jpeg_with_orientation(image, orientation: int) -> bytes:
    """``image`` as a JPEG whose EXIF says to show it turned (6: 90 degrees clockwise), as cameras write: its pixels
    and every COCO coordinate stay in the stored orientation."""
    import struct

    import cv2

    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)             # Orientation, SHORT, 1 value
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


@pytest.fixture(scope="session")
def oriented_jpeg():
    return jpeg_with_orientation


def song_with_cover(path: Path) -> Path:
    """An audio file with cover art at ``path``: AAC plus a one-picture MJPEG stream of disposition
    ``attached_pic`` (how music and podcasts carry their artwork; ``streams.video[0]`` of such a file is the
    picture)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as c:
        audio = c.add_stream("aac", rate=44100)
        cover = c.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 48, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        art = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="bgr24")
        for packet in [*cover.encode(art), *cover.encode()]:
            c.mux(packet)
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        silence.sample_rate = 44100
        for i in range(10):
            silence.pts = i * 1024
            for packet in audio.encode(silence):
                c.mux(packet)
        for packet in audio.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="session")
def music_file():
    """Writes :func:`song_with_cover` to a path."""
    return song_with_cover
