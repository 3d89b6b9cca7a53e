"""Snapshots and screenshots are written in the format of the file's suffix (before: always PNG data, also in a
file named ``.jpg``); a name without a suffix gets ``.png``; a suffix Qt cannot write is refused, naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QFileDialog

from core.io.files import temp_owner
from ui.pictures import dialog_filters, filter_suffix, picture_target

WAIT = 30000
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff", "bmp": b"BM"}


def _kind(path: Path) -> str:
    """What the file's bytes are (by their signature, as `file` tells), whatever its name says."""
    head = path.read_bytes()[:8]
    return next((kind for kind, magic in MAGIC.items() if head.startswith(magic)), "unknown")


@pytest.fixture
def playing_window(qtbot, make_window, data_dir):
    window = make_window()
    window.open_source(str(data_dir / "videos" / "pedestrians_480x360.mp4"))
    qtbot.waitUntil(lambda: window.frames_displayed >= 3, timeout=WAIT)
    return window


@pytest.mark.parametrize("name, kind", [("snap.jpg", "jpg"), ("snap.JPEG", "jpg"), ("snap.bmp", "bmp"),
                                        ("snap.png", "png")])
def test_a_snapshot_is_written_in_the_format_of_its_suffix(playing_window, tmp_path, name, kind):
    out = tmp_path / name
    assert playing_window.save_snapshot(str(out)), playing_window.errors
    assert _kind(out) == kind
    image = QImage(str(out))
    assert (image.width(), image.height()) == (480, 360)


def test_a_screenshot_is_written_in_the_format_of_its_suffix(playing_window, tmp_path):
    out = tmp_path / "window.jpg"
    assert playing_window.save_screenshot(str(out)), playing_window.errors
    assert _kind(out) == "jpg"
    assert QImage(str(out)).size() == playing_window.size()


def test_a_name_without_suffix_gets_png_and_an_unknown_suffix_is_refused(playing_window, tmp_path):
    window = playing_window
    assert window.save_snapshot(str(tmp_path / "snap"))
    assert _kind(tmp_path / "snap.png") == "png" and not (tmp_path / "snap").exists()
    bad = tmp_path / "snap.xyz"
    assert not window.save_snapshot(str(bad))
    assert f"{bad}: cannot write pictures as '.xyz'" in window.errors[-1] and ".jpg" in window.errors[-1]
    assert not bad.exists()
    assert not [p for p in tmp_path.iterdir() if temp_owner(p) is not None]  # no temporary file left


def test_the_snapshot_dialog_offers_jpeg_and_adds_the_chosen_type_suffix(playing_window, tmp_path, monkeypatch):
    """Snapshot… (Ctrl+S): the dialog lists JPEG among the types; a name typed without a suffix takes the chosen
    type's."""
    seen = {}

    def fake_dialog(_parent, _title, _default, filters):
        seen["filters"] = filters.split(";;")
        return str(tmp_path / "picked"), "JPEG image (*.jpg *.jpeg)"

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_dialog))
    playing_window.act_snapshot.trigger()
    assert "JPEG image (*.jpg *.jpeg)" in seen["filters"] and seen["filters"][0] == "PNG image (*.png)"
    assert _kind(tmp_path / "picked.jpg") == "jpg"


def test_picture_helpers():
    assert picture_target("a/b.JPG") == (Path("a/b.JPG"), "jpg")
    assert picture_target("shot") == (Path("shot.png"), "png")
    with pytest.raises(ValueError, match=r"clip\.mp4: cannot write pictures as '\.mp4'"):
        picture_target("clip.mp4")
    assert filter_suffix("JPEG image (*.jpg *.jpeg)") == ".jpg"
    assert filter_suffix(dialog_filters()[-1]) == ".png"  # "All pictures (...)": the default
