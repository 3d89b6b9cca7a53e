"""Exporters on real frames and real COCO people: formats, atomic writes, abort, unwritable folders, sets of
outputs published together or not at all, and the umask."""
from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from app.engine import FrameResult
from app.sinks import (CocoJsonSink, CsvSink, JsonlSink, OutputSet, StreamMeta, VideoSink, make_sinks,
                       output_paths, parse_formats)
from app.sources import open_source
from core.contract import PoseContract
from core.errors import InputError
from core.keypoints import COCO
from core.poses import Poses


def _run(sinks, video: Path, people: list[Poses], abort: bool = False, before_close=None) -> int:
    with open_source(video) as src:
        meta = StreamMeta(src.name, src.size, src.fps, PoseContract(COCO), src.frame_count)
        for s in sinks:
            s.open(meta)
        n = 0
        for frame in src:
            p = people[frame.index % len(people)]
            p = Poses(p.keypoints, p.scores, np.arange(len(p)) + 10 * frame.index)
            for s in sinks:
                s.write(frame, FrameResult(p, {}, src.size))
            n += 1
    if before_close is not None:
        before_close()
    for s in sinks:
        s.abort() if abort else s.close()
    return n


def test_all_formats(street_video: Path, coco_people: list[Poses], tmp_path: Path) -> None:
    from pycocotools.coco import COCO as CocoApi

    people = coco_people[:5]
    paths = output_paths("street", tmp_path, parse_formats("coco,jsonl,csv,video"))
    assert paths["coco"].name == "street.coco.json" and paths["video"].name == "street.annotated.mp4"
    n = _run(make_sinks(paths), street_video, people)
    assert n == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())  # no temp files
    n_people = sum(len(people[i % len(people)]) for i in range(5))

    api = CocoApi(str(paths["coco"]))  # real pycocotools reads it
    assert len(api.getImgIds()) == 5 and len(api.getAnnIds()) == n_people
    img = api.loadImgs(3)[0]
    assert img["frame_index"] == 2 and img["timestamp"] == pytest.approx(0.4) and img["width"] == 960
    ann = api.loadAnns(api.getAnnIds(imgIds=[1]))[0]
    src_kp = people[0].keypoints[0]
    kp = np.asarray(ann["keypoints"]).reshape(-1, 3)
    np.testing.assert_allclose(kp[:, :2], np.where(src_kp[:, 2:3] > 0, src_kp[:, :2], 0), atol=0.01)
    assert set(kp[:, 2]) <= {0, 2} and ann["track_id"] == 0 and ann["num_keypoints"] == int((src_kp[:, 2] > 0).sum())
    info = json.loads(paths["coco"].read_text())["info"]
    assert info["frames"] == 5 and info["contract"]["spec"] == "coco"

    lines = paths["jsonl"].read_text().splitlines()
    assert len(lines) == 5
    rec = json.loads(lines[1])
    assert rec["frame"] == 1 and len(rec["people"]) == len(people[1]) and rec["people"][0]["track_id"] == 10

    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == n_people
    raw = paths["csv"].read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == n_people + 1  # one line ending, the header's too
    assert rows[0]["frame"] == "0" and float(rows[0]["nose_score"]) == pytest.approx(src_kp[0, 2], abs=1e-3)
    absent = int(np.flatnonzero(src_kp[:, 2] == 0)[0]) if (src_kp[:, 2] == 0).any() else None
    if absent is not None:
        assert rows[0][f"{COCO.keypoints[absent]}_x"] == ""

    with av.open(str(paths["video"])) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(s)]
        assert (s.codec_context.name, s.width, s.height) == ("h264", 960, 540)
        assert float(s.average_rate) == pytest.approx(5.0)
    assert len(frames) == 5
    with open_source(street_video) as src:
        raw = next(iter(src)).image
    assert np.abs(frames[0].astype(int) - raw).mean() > 0.5  # the overlay is there


def test_abort_leaves_nothing(street_video: Path, coco_people, tmp_path: Path) -> None:
    sinks = make_sinks(output_paths("x", tmp_path, ["coco", "jsonl", "csv", "video"]))
    _run(sinks, street_video, coco_people[:2], abort=True)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_kept_until_the_new_one_is_complete(street_video: Path, coco_people, tmp_path: Path) -> None:
    target = tmp_path / "x.jsonl"
    target.write_text("old\n")
    sink = JsonlSink(target)
    with open_source(street_video) as src:
        sink.open(StreamMeta(src.name, src.size, src.fps, PoseContract(COCO)))
        frame = next(iter(src))
        sink.write(frame, FrameResult(coco_people[0], {}, src.size))
        assert target.read_text() == "old\n"  # still the previous complete file while writing
    sink.close()
    assert json.loads(target.read_text())["frame"] == 0


def test_odd_frame_size_video(tmp_path: Path) -> None:
    """yuv420p needs even sizes: an odd-sized stream is padded by one pixel, never rejected."""
    from app.sources import Frame

    sink = VideoSink(tmp_path / "odd.mp4")
    sink.open(StreamMeta("odd", (65, 49), 12.5, PoseContract(COCO)))
    for i in range(3):
        sink.write(Frame(np.full((49, 65, 3), 80, np.uint8), i, i / 12.5), FrameResult(Poses.empty(17), {}, (65, 49)))
    sink.close()
    with av.open(str(tmp_path / "odd.mp4")) as c:
        assert c.streams.video[0].width == 66 and sum(1 for _ in c.decode(video=0)) == 3


@pytest.mark.parametrize("cls", [CocoJsonSink, JsonlSink, CsvSink, VideoSink])
def test_unwritable_output_folder(cls, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    sink = cls(blocker / "sub" / "out.bin")  # parent is a file: the folder cannot exist
    with pytest.raises(InputError, match="cannot write to output folder"):
        sink.open(StreamMeta("v", (64, 48), 10.0, PoseContract(COCO)))


def test_bad_format_name() -> None:
    with pytest.raises(InputError, match="unknown output format"):
        parse_formats("coco,xml")
    assert parse_formats("csv, coco,csv") == ["csv", "coco"]


class _DiskFullAfter(JsonlSink):
    """A JSONL sink on a disk that fills up: its real writes go through until ``limit`` bytes are in its temporary
    file, then the next write fails as the kernel reports it (ENOSPC), in the middle of the stream."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(path)
        self.limit = limit

    def write(self, frame, result) -> None:
        super().write(frame, result)
        self._file.handle.flush()
        if self.tmp.stat().st_size >= self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.tmp))


def _no_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failure_in_the_middle_of_a_write_leaves_nothing(street_video: Path, estimator, tmp_path: Path) -> None:
    """A pipeline whose third output fails after some bytes: no output under a final name, no temporary file."""
    from app.pipeline import Pipeline

    paths = output_paths("x", tmp_path, ["coco", "csv", "video"])
    failing = _DiskFullAfter(tmp_path / "x.jsonl", limit=300)
    outputs = OutputSet([*make_sinks(paths), failing])
    with open_source(street_video) as src:
        with pytest.raises(OSError) as info:
            Pipeline(src, estimator, [outputs]).run()
    assert info.value.errno == errno.ENOSPC
    assert _no_files(tmp_path) == []


def test_failure_while_finishing_publishes_nothing(street_video: Path, coco_people, tmp_path: Path) -> None:
    """Every output is finished before any is renamed: one failing at the end keeps the others unpublished."""
    ok = make_sinks(output_paths("x", tmp_path, ["coco", "jsonl", "video"]))
    last = _DiskFullAfter(tmp_path / "x.csv", limit=10 ** 9)
    outputs = OutputSet([*ok, last])

    def finish_fails() -> None:
        last._file.handle.write("x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(last.tmp))

    last.finish = finish_fails
    _run([outputs], street_video, coco_people[:2])
    assert isinstance(outputs.error, OSError) and not outputs.published
    assert _no_files(tmp_path) == []


def test_failed_rename_takes_back_the_published_outputs(street_video: Path, coco_people, tmp_path: Path) -> None:
    """The third rename fails (its final name became a non-empty folder while the outputs were written): the two
    already renamed are removed."""
    blocker = tmp_path / "x.csv"

    def block() -> None:  # after opening: AtomicFile refuses a folder target up front
        blocker.mkdir()
        (blocker / "keep").write_text("x")

    outputs = OutputSet(make_sinks(output_paths("x", tmp_path, ["coco", "jsonl", "csv", "video"])))
    _run([outputs], street_video, coco_people[:2], before_close=block)
    assert outputs.error is not None and not outputs.published
    assert _no_files(tmp_path) == ["x.csv"] and _no_files(blocker) == ["keep"]


def test_outputs_respect_the_umask(street_video: Path, coco_people, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        outputs = OutputSet(make_sinks(output_paths("x", tmp_path, ["coco", "jsonl", "csv", "video"])))
        _run([outputs], street_video, coco_people[:2])
    finally:
        os.umask(old)
    assert outputs.published
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert len(modes) == 4 and set(modes.values()) == {0o640}, modes


def test_annotated_video_is_marked(street_video: Path, coco_people, tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "x.annotated.mp4")
    _run([sink], street_video, coco_people[:1])
    with av.open(str(sink.path)) as c:
        assert c.metadata.get("comment", "").startswith("GOPose annotated video of ")


def test_annotated_video_of_an_input_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """A file name in another encoding (``caf\\xe9.mp4`` in Latin-1, which Python reads with a surrogate escape):
    the video is written, its comment shows the name as Python prints it (before: UnicodeEncodeError when the
    container header was written, and the input's whole output set was lost)."""
    from app.sources import Frame

    name = os.fsdecode(b"/videos/caf\xe9 clip.mp4")
    sink = VideoSink(tmp_path / "x.annotated.mp4")
    sink.open(StreamMeta(name, (64, 48), 10.0, PoseContract(COCO)))
    sink.write(Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0), FrameResult(Poses.empty(17), {}, (64, 48)))
    sink.close()
    with av.open(str(sink.path)) as c:
        assert c.metadata["comment"] == "GOPose annotated video of /videos/caf\\udce9 clip.mp4"


def test_formats_agree_on_which_keypoints_are_present(tmp_path: Path) -> None:
    """A present keypoint keeps a score above 0 in every format, however low (a decoder threshold of 1e-4 gives
    such scores), also one on the image corner (0, 0); an absent one is absent everywhere."""
    from pycocotools.coco import COCO as CocoApi

    from app.sources import Frame

    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = [[20 + i, 30 + i] for i in range(17)]
    kp[0, :, 2] = 0.5
    kp[0, 0] = [0.0, 0.0, 0.7]         # on the corner: present
    kp[0, 1, 2] = 0.0003               # present, with a score the outputs' rounding would make 0
    kp[0, 2, 2] = 0.00004
    kp[0, 3] = [25.0, 35.0, 0.0]       # absent
    paths = output_paths("x", tmp_path, ["coco", "jsonl", "csv"])
    sinks = make_sinks(paths)
    for s in sinks:
        s.open(StreamMeta("x", (64, 48), 10.0, PoseContract(COCO)))
        s.write(Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0), FrameResult(Poses(kp, [0.9], [3]), {}, (64, 48)))
        s.close()
    present = [True, True, True, False] + [True] * 13

    ann = CocoApi(str(paths["coco"])).loadAnns(1)[0]
    assert [v == 2 for v in ann["keypoints"][2::3]] == present
    assert [s > 0 for s in ann["keypoint_scores"]] == present
    people = json.loads(paths["jsonl"].read_text())["people"]
    assert [k[2] > 0 for k in people[0]["keypoints"]] == present
    row = next(csv.DictReader(paths["csv"].open()))
    assert [float(row[f"{n}_score"]) > 0 for n in COCO.keypoints] == present
    assert [row[f"{n}_x"] != "" for n in COCO.keypoints] == present
