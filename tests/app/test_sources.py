"""Frame sources on the real shared videos, damaged copies, rotation metadata, folders, webcams and URLs."""
from __future__ import annotations

import socket
import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from app.sources import ImageFolderSource, PacedSource, VideoSource, open_source, parse_webcam
from core.errors import InputError


def test_video_frames_timestamps_and_metadata(ped_video: Path) -> None:
    with open_source(ped_video) as src:
        assert isinstance(src, VideoSource)
        assert src.size == (480, 360) and src.fps == pytest.approx(10.0) and src.frame_count == 795
        assert src.seekable and not src.is_live
        frames = list(src)
    assert len(frames) == 795
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    ts = np.array([f.timestamp for f in frames])
    np.testing.assert_allclose(ts, np.arange(795) / 10.0, atol=1e-6)
    assert frames[0].image.shape == (360, 480, 3) and frames[0].image.dtype == np.uint8
    assert src.decode_errors == 0 and src.missing_frames == 0 and src.lost_frames == 0


def test_seek_lands_on_the_requested_time(ped_video: Path) -> None:
    with open_source(ped_video) as src:
        it = iter(src)
        next(it)
        src.seek(30.0)
        f = next(it)
        assert f.timestamp == pytest.approx(30.0) and f.index == 300
        src.seek(5.04)
        f = next(it)
        assert f.timestamp == pytest.approx(5.0, abs=0.06)
        # the frame after a seek is the very frame a linear read gives at that time
    with open_source(ped_video) as src:
        linear = next(f for f in src if f.index == 50)
    np.testing.assert_array_equal(linear.image, f.image)


def test_seek_in_mpeg_ts_lands_on_the_requested_time(tmp_path: Path) -> None:
    """MPEG-TS (camcorder ``.mts``, broadcast ``.ts``) has no index: FFmpeg's seek there may land after the key
    frame before the target, so decoding starts only at a later key frame. The frame after a seek is still the
    one shown nearest the target (also the start), not one several seconds later, nor the end of the stream."""
    path = tmp_path / "clip.ts"
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=10, options={"g": "20", "keyint_min": "20", "sc_threshold": "0"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(60):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 4 * i, np.uint8), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with open_source(path) as src:
        linear = list(src)
    with open_source(path) as src:
        it = iter(src)
        next(it)
        for target in (0.2, 3.0, 0.0, 5.0):
            src.seek(target)
            frame = next(it)
            assert frame.timestamp == pytest.approx(target, abs=1e-3), target
            assert frame.index == round(target * 10), target
            np.testing.assert_array_equal(frame.image, linear[frame.index].image)


def test_h264_with_b_frames_in_avi_keeps_display_order_timestamps(tmp_path: Path) -> None:
    """AVI stores no presentation times: FFmpeg gives its packets times in decode order, so with B-frames (H.264
    from DVRs and older encoders) the decoder hands frames in display order with times out of order. Frames keep
    their numbers 0, 1, 2, ... and rising timestamps, as a player shows them (before: 0, 3, 4, 5, 6, 8, ... and
    times going backwards, which also restarted the tracks at every step back)."""
    path = tmp_path / "dvr.avi"
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("libx264", rate=10, options={"bf": "3", "b_strategy": "0"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            image = np.full((48, 64, 3), 40 + 15 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with open_source(path) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    stamps = np.array([f.timestamp for f in frames])
    np.testing.assert_allclose(np.diff(stamps), 0.1, atol=1e-6)
    assert np.all(np.diff([f.image.mean() for f in frames]) > 5)  # display order: brighter every frame


def test_frames_hidden_by_an_edit_list_are_not_lost(tmp_path: Path, caplog) -> None:
    """An MP4 cut without re-encoding (``ffmpeg -ss 2 -i in.mp4 -c copy out.mp4``) keeps the frames from the key
    frame before the cut, hidden by an edit list (they have pts before the stream's start): the file plays 25
    frames from 0 s, all of them decode, so nothing is lost, although the track holds 30 samples."""
    from fractions import Fraction

    path = tmp_path / "cut.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 + 8 * i, np.uint8), format="bgr24")
            frame.pts, frame.time_base = i - 5, Fraction(1, 25)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 30  # what the container announces
    with open_source(path) as src:
        assert src.frame_count == 25 and src.duration == pytest.approx(1.0)
        frames = list(src)
        assert src.lost_frames == 0 and src.missing_frames == 0
    assert [f.index for f in frames] == list(range(25))
    assert frames[0].timestamp == 0.0 and round((frames[0].image.mean() - 10) / 8) == 5
    assert "damaged or truncated" not in caplog.text


def test_raw_h264_without_timestamps_is_not_seekable(tmp_path: Path) -> None:
    """A raw H.264 elementary stream (what a Raspberry Pi camera's ``raspivid`` writes) has no timestamps to seek
    by: the source says it cannot seek, instead of offering to and then ending the playback with an error."""
    path = tmp_path / "camera.h264"
    with av.open(str(path), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with open_source(path) as src:
        assert not src.seekable and not src.is_live
        it = iter(src)
        next(it)
        with pytest.raises(InputError, match="cannot seek") as info:
            src.seek(0.4)
        assert str(path) in str(info.value)
        frames = [next(it)] + list(it)  # reading goes on where it was
    assert [f.index for f in frames] == list(range(1, 20))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(1, 20) / 25)


def test_truncated_video_decodes_what_it_can(ped_video: Path, tmp_path: Path, make_damaged, caplog) -> None:
    bad = make_damaged(ped_video, tmp_path / "cut.mp4", keep_fraction=0.5)
    with open_source(bad) as src:
        n = sum(1 for _ in src)
        assert 100 < n < 795
        assert src.missing_frames == 795 - n  # reported, not silently lost
        assert src.lost_frames == 795 - n  # the one count: an undecodable last packet is not counted twice
    assert f"decoded {n} of 795 frames ({795 - n} lost, 0 damaged)" in caplog.text


def test_truncated_matroska_counts_the_missing_end(tmp_path: Path, make_damaged, caplog) -> None:
    """MKV announces no frame count, but its video track's length (the DURATION tag FFmpeg and mkvmerge write at
    the start of the file): a copy cut in the middle ends early, and the missing end is counted as lost frames
    (it was reported complete, exit 0)."""
    full = tmp_path / "full.mkv"
    with av.open(str(full), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(120):  # 12 s: clusters of 5 s
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 2 * i, np.uint8), format="bgr24")))
        c.mux(s.encode())
    with open_source(full) as src:
        assert src.frame_count is None and len(list(src)) == 120 and src.lost_frames == 0
    bad = make_damaged(full, tmp_path / "cut.mkv", keep_fraction=0.5)
    with open_source(bad) as src:
        n = sum(1 for _ in src)
        assert 0 < n < 120
        assert src.lost_frames == 120 - n
    assert f"decoded {n} frames ({120 - n} lost, 0 damaged)" in caplog.text


def _matroska(path: Path, codec: str = "libx264", frames: int = 120, options: dict | None = None) -> Path:
    """``frames`` frames at 10 fps (64 x 48) written by FFmpeg's Matroska/WebM muxer (``options``: its own)."""
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 2 * i, np.uint8), format="bgr24")))
        c.mux(s.encode())
    return path


def _without_duration_tag(path: Path) -> Path:
    """``path`` as writers that add no ``DURATION`` tag leave it (mkvmerge --disable-track-statistics-tags, libwebm
    as in vpxenc): FFmpeg's tag renamed in place, every other byte (header sizes, segment length, index) kept."""
    data = path.read_bytes()
    assert data.count(b"DURATION") == 1
    path.write_bytes(data.replace(b"DURATION", b"DURATIOX"))
    return path


@pytest.mark.parametrize("name, codec", [("clip.mkv", "libx264"), ("clip.webm", "libvpx")])
def test_truncated_matroska_without_a_duration_tag_counts_the_missing_end(name: str, codec: str, tmp_path: Path,
                                                                          make_damaged, caplog) -> None:
    """Without the video track's DURATION tag, a copy cut short is told by its header: the Segment's declared
    size is larger than the file; the missing end is then counted against the container's length (before: it was
    reported complete, annotate exited 0)."""
    full = _without_duration_tag(_matroska(tmp_path / name, codec))
    with open_source(full) as src:
        assert "DURATION" not in src._stream.metadata and src.duration == pytest.approx(12.0)
        assert len(list(src)) == 120 and src.lost_frames == 0
    bad = make_damaged(full, tmp_path / f"cut-{name}", keep_fraction=0.5)
    with open_source(bad) as src:
        n = sum(1 for _ in src)
        assert 0 < n < 110
        assert abs(src.lost_frames - (120 - n)) <= 1 and src.missing_frames > 0  # estimated from the mean interval
    size, declared = bad.stat().st_size, full.stat().st_size
    assert f"decoded {n} frames ({src.lost_frames} lost, 0 damaged)" in caplog.text
    assert f"before the length the file announces (12.0 s; it holds {size} of its {declared} bytes)" in caplog.text


def test_matroska_cut_in_its_index_only_loses_no_frame(tmp_path: Path, caplog) -> None:
    """The last bytes of a Matroska file hold its index (Cues), no frame: cut there, every frame is read and none is
    counted lost; the file is still named as cut short."""
    full = _without_duration_tag(_matroska(tmp_path / "clip.mkv"))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[:-10])
    with open_source(cut) as src:
        assert len(list(src)) == 120 and src.lost_frames == 0
    assert "is cut short: it holds" in caplog.text and "its frames reach the length it announces" in caplog.text


def test_matroska_written_live_announces_nothing_to_tell_truncation_by(tmp_path: Path, make_damaged,
                                                                       caplog) -> None:
    """A file written as a stream (a recorder stopped before finishing, ``-live 1``) declares no size and no length:
    cut, it looks complete (docs/annotate.md says so): nothing is guessed."""
    from app.sources import matroska_segment_end

    full = _matroska(tmp_path / "live.mkv", options={"live": "1"})
    assert matroska_segment_end(full) is None
    bad = make_damaged(full, tmp_path / "cut.mkv", keep_fraction=0.5)
    with open_source(bad) as src:
        assert 0 < sum(1 for _ in src) < 120 and src.lost_frames == 0 and src.duration is None
    assert "truncated" not in caplog.text and "cut short" not in caplog.text


def test_overwritten_bytes_are_counted_and_skipped(ped_video: Path, tmp_path: Path, make_damaged) -> None:
    bad = make_damaged(ped_video, tmp_path / "noise.mp4", overwrite=8)
    with open_source(bad) as src:
        n = sum(1 for _ in src)
        assert n > 600
        assert src.decode_errors + src.missing_frames > 0
        assert src.lost_frames == 795 - n and src.damaged_frames <= src.decode_errors


def test_frames_after_lost_ones_keep_their_numbers(ped_video: Path, tmp_path: Path) -> None:
    """Three frames whose data is wiped never decode; the frames after them keep their numbers, so COCO image ids
    and the JSONL/CSV frame column stay aligned with the video (its 10 fps: number = timestamp x 10)."""
    with av.open(str(ped_video)) as container:
        packets = sorted((p.pts, p.pos, p.size) for p in container.demux(video=0) if p.size)  # display order
    data = bytearray(ped_video.read_bytes())
    for _, pos, size in packets[40:43]:
        data[pos:pos + size] = bytes(size)
    (bad := tmp_path / "wiped.mp4").write_bytes(bytes(data))
    with open_source(bad) as src:
        frames = [(f.index, f.timestamp) for f in src]
        assert src.lost_frames == 3
    assert [i for i, _ in frames[38:41]] == [38, 39, 43]
    assert all(index == round(ts * 10) for index, ts in frames)


def test_frames_after_a_lost_start_keep_their_numbers(ped_video: Path, tmp_path: Path) -> None:
    """The first key frame's data is wiped, so the whole first group of pictures (64 frames) never decodes: the
    first frame that does is number 64 at 6.4 s, not number 0 (the start of a file is no seek pre-roll)."""
    with av.open(str(ped_video)) as container:
        first = min((p.pts, p.pos, p.size) for p in container.demux(video=0) if p.size)
    data = bytearray(ped_video.read_bytes())
    data[first[1]:first[1] + first[2]] = bytes(first[2])
    (bad := tmp_path / "no_start.mp4").write_bytes(bytes(data))
    with open_source(bad) as src:
        frames = [(f.index, f.timestamp) for f, _ in zip(src, range(3))]
    assert frames == [(64, pytest.approx(6.4)), (65, pytest.approx(6.5)), (66, pytest.approx(6.6))]


@pytest.mark.parametrize("content,match", [(b"", "readable video|no decodable"),
                                           (b"this is not a video" * 50, "not a readable video")])
def test_not_a_video(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "fake.mp4"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        open_source(p)
    assert str(p) in str(info.value)


def test_audio_with_a_cover_picture_is_not_a_video(tmp_path: Path, music_file) -> None:
    """Music and podcasts saved as ``.mp4`` carry their cover art as a one-picture "video" stream (disposition
    ``attached_pic``): that is no video to annotate (before: one frame of the cover was annotated, exit 0)."""
    path = music_file(tmp_path / "song.mp4")
    with pytest.raises(InputError, match="no video stream in .*song.mp4") as info:
        open_source(path)
    assert "cover" in str(info.value)


def test_zero_frame_video(ped_video: Path, tmp_path: Path, make_damaged) -> None:
    """A file cut inside its first frame has a valid header but no decodable frame."""
    bad = make_damaged(ped_video, tmp_path / "empty.mp4", keep_fraction=0.002)
    with pytest.raises(InputError, match="no decodable video frames|not a readable video"):
        open_source(bad)


def test_missing_file_and_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="no images"):
        open_source(tmp_path)


def test_absent_webcam() -> None:
    assert parse_webcam("webcam:99") == 99 and parse_webcam(3) == 3 and parse_webcam("clip.mp4") is None
    with pytest.raises(InputError, match="no webcam at index 99"):
        open_source("webcam:99")
    with pytest.raises(InputError, match="no webcam at index 98"):
        open_source(98)


def test_absent_webcam_is_one_line(capfd) -> None:
    """OpenCV's own warnings about the camera it could not open stay off stderr: the error is the one line."""
    level = cv2.utils.logging.getLogLevel()
    capfd.readouterr()
    with pytest.raises(InputError, match="no webcam at index 97"):
        open_source("webcam:97")
    assert capfd.readouterr().err == ""
    assert cv2.utils.logging.getLogLevel() == level  # OpenCV's logging is quiet only while opening


def test_unreachable_url() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/clip.mp4"
    with pytest.raises(InputError, match="cannot open stream") as info:
        open_source(url)
    assert url in str(info.value)


class _RangeHandler:
    """Builds an HTTP handler serving one file with byte-range support (what FFmpeg's HTTP reader seeks with)."""

    @staticmethod
    def make(path: Path):
        import http.server

        data = path.read_bytes()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path.lstrip("/") != path.name:
                    self.send_error(404)
                    return
                start, end = 0, len(data) - 1
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start, end = int(a or 0), int(b) if b else len(data) - 1
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Content-Type", "video/mp4")
                self.end_headers()
                try:
                    self.wfile.write(data[start:end + 1])
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def test_video_over_http(street_video: Path) -> None:
    """A real HTTP server on 127.0.0.1 serving the shared clip: PyAV reads it as a network stream."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler.make(street_video))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with open_source(f"http://127.0.0.1:{server.server_address[1]}/{street_video.name}") as src:
            frames = list(src)
        assert len(frames) == 5 and frames[0].image.shape == (540, 960, 3)
        assert [round(f.timestamp, 3) for f in frames] == [0.0, 0.2, 0.4, 0.6, 0.8]
    finally:
        server.shutdown()
        server.server_close()


def _rotated_copy(tmp_path: Path, matrix: tuple[int, ...] = (0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)
                  ) -> Path:
    """A small H.264 MP4 whose track header carries a display ``matrix`` (default: 90 degrees, as phones write)."""
    import av

    path = tmp_path / "plain.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:16, :24] = 255  # a white block top-left
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    assert data[i + 4] == 0  # version 0 track header
    off = i + 4 + 4 + 4 + 4 + 4 + 4 + 4 + 8 + 8  # version/flags, times, track id, reserved, duration, ...
    data[off:off + 36] = struct.pack(">9I", *matrix)
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(bytes(data))
    return rotated


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    with open_source(_rotated_copy(tmp_path)) as src:
        assert src.size == (48, 64)  # portrait after rotation
        frame = next(iter(src))
    assert frame.image.shape == (64, 48, 3)
    # turned 90 degrees clockwise: the top-left block is now top-right
    assert frame.image[:20, -12:].mean() > 200 and frame.image[:20, :12].mean() < 50



def test_mirror_metadata_is_applied(tmp_path: Path) -> None:
    """A display matrix that mirrors (negative determinant, which no rotation angle expresses) is shown mirrored,
    not turned upside down."""
    mirror = (0xFFFF0000, 0, 0, 0, 0x10000, 0, 64 << 16, 0, 0x40000000)
    with open_source(_rotated_copy(tmp_path, mirror)) as src:
        assert src.size == (64, 48)
        frame = next(iter(src))
    assert frame.image[:16, -24:].mean() > 200 and frame.image[:16, :24].mean() < 50  # the block is top-right
    assert frame.image[-16:].mean() < 50

def test_image_folder(tmp_path: Path, data_dir: Path) -> None:
    imgs = sorted((data_dir / "coco" / "val2017_subset" / "images").glob("*.jpg"))[:3]
    assert len(imgs) == 3
    for i, p in enumerate(imgs):
        (tmp_path / f"{i:03d}.jpg").write_bytes(p.read_bytes())
    (tmp_path / "003.jpg").write_bytes(b"broken")
    with open_source(tmp_path, fps=5) as src:
        assert isinstance(src, ImageFolderSource) and src.frame_count == 4
        frames = list(src)
        assert [f.index for f in frames] == [0, 1, 2] and frames[2].timestamp == pytest.approx(0.4)
        assert src.decode_errors == 1
    np.testing.assert_array_equal(frames[0].image, cv2.imread(str(imgs[0])))


def _write_images(folder: Path, names: list[str]) -> None:
    """A real image per name, its grey level 10 x (position in ``names``)."""
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), np.full((24, 32, 3), 10 * i, np.uint8))


def test_image_folder_plays_numbered_frames_in_number_order(tmp_path: Path) -> None:
    """Frames numbered without zero padding (what ``ffmpeg -i clip.mp4 frame%d.png`` writes) play 1, 2, ..., 10,
    not 1, 10, 2; uppercase suffixes count, other files are left out."""
    names = ["frame1.png", "frame2.PNG", "frame9.png", "frame10.png", "frame11.png", "frame100.png"]
    _write_images(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(tmp_path) as src:
        frames = list(src)
    assert [f.name for f in frames] == names
    assert [int(round(f.image.mean() / 10)) for f in frames] == list(range(len(names)))


def test_image_folder_with_an_unreadable_first_image(tmp_path: Path) -> None:
    """A damaged first image is skipped and counted like any other (the folder is not refused); macOS's hidden
    ``._name`` companions (AppleDouble files on copied folders) are not images of the sequence at all."""
    _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "a.png").write_bytes(b"damaged")
    (tmp_path / "._b.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    with open_source(tmp_path) as src:
        assert src.size == (32, 24) and src.frame_count == 3
        frames = list(src)
        assert [(f.index, f.name) for f in frames] == [(1, "b.png"), (2, "c.png")]
        assert src.lost_frames == 1
    (tmp_path / "b.png").write_bytes(b"damaged")
    (tmp_path / "c.png").write_bytes(b"damaged")
    with pytest.raises(InputError, match="no readable image") as info:
        open_source(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_paced_source_is_live_and_real_time(street_video: Path) -> None:
    import time

    src = PacedSource(open_source(street_video), speed=10.0)  # 5 fps clip at 10x: 20 ms per frame
    t0 = time.monotonic()
    frames = list(src)
    elapsed = time.monotonic() - t0
    src.close()
    assert src.is_live and len(frames) == 5
    assert elapsed >= 0.075  # 4 intervals of 20 ms


def test_variable_frame_rate_round_trip(tmp_path: Path) -> None:
    """Irregular timestamps written by the video sink come back exactly from the video source (relative to the
    first frame: a camera clock starting at 10 s gives a video starting at 0)."""
    from app.engine import FrameResult
    from app.sinks import StreamMeta, VideoSink
    from app.sources import Frame
    from core.contract import PoseContract
    from core.keypoints import COCO
    from core.poses import Poses

    stamps = [10.0, 10.04, 10.1, 10.5, 10.52, 11.3]
    sink = VideoSink(tmp_path / "vfr.mp4")
    sink.open(StreamMeta("vfr", (64, 48), 25.0, PoseContract(COCO)))
    for i, t in enumerate(stamps):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        sink.write(Frame(img, i, t), FrameResult(Poses.empty(17), {}, (64, 48)))
    sink.close()
    with open_source(tmp_path / "vfr.mp4") as src:
        frames = list(src)
    assert len(frames) == len(stamps)
    np.testing.assert_allclose([f.timestamp for f in frames], np.subtract(stamps, 10.0), atol=1e-3)
    assert [int(round(f.image.mean() / 40)) for f in frames] == [0, 1, 2, 3, 4, 5]


def test_variable_frame_rate_seek_lands_on_the_nearest_frame(tmp_path: Path) -> None:
    """Frames 40 ms apart, then 0.4 s apart (average rate ~6.6 fps): a seek to a frame's own time shows that frame
    (what the player does to redraw the current frame), and a seek between frames the nearer one, not a frame half
    an *average* interval earlier."""
    from fractions import Fraction

    stamps = [0.0, 0.04, 0.1, 0.5, 0.52, 1.3, 1.34, 1.38, 2.0, 2.04]
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 + 20 * i, np.uint8), format="bgr24")
            frame.pts, frame.time_base = int(t * 1000), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with open_source(path) as src:
        it = iter(src)
        next(it)
        for target, expected in [(0.1, 2), (2.0, 8), (0.06, 1), (0.09, 2), (0.45, 3), (1.3, 5), (0.0, 0)]:
            src.seek(target)
            frame = next(it)
            assert frame.timestamp == pytest.approx(stamps[expected]), target
            assert int(round((frame.image.mean() - 10) / 20)) == expected, target


def test_webm_without_a_frame_count_has_the_containers_duration(tmp_path: Path) -> None:
    """MKV/WebM announce a length but no frame count: ``duration`` is the container's (the GUI's seek bar needs
    it), while ``frame_count`` stays unknown so nothing is counted as lost."""
    from ui.playback import PlaybackSource

    path = tmp_path / "clip.webm"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libvpx", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")))
        c.mux(stream.encode())
    with open_source(path) as src:
        assert src.frame_count is None and src.duration == pytest.approx(1.2, abs=0.05)
        playback = PlaybackSource(src)
        assert playback.duration == pytest.approx(1.2, abs=0.05) and not playback.ended_early
        assert len(list(src)) == 30 and src.lost_frames == 0
