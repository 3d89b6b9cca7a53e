"""``gopose annotate`` end to end with a real checkpoint on the shared clip and damaged copies: outputs never
replace inputs, shards agree on names, clear one-line errors, no side effects. (Faults: test_faults.py.)"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from core.errors import InputError

FAST = ["--long-edge", "128", "--threshold", "1e-4", "--quiet"]
ROOT = Path(__file__).resolve().parents[2]
EXTS = (".coco.json", ".jsonl", ".csv", ".annotated.mp4", ".manifest.json")


def _summary(capsys) -> tuple[dict, str, str]:
    out, err = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1]), out, err


def _errors(err: str) -> list[str]:
    """stderr without the model line every run starts with."""
    return [line for line in err.strip().splitlines() if not line.startswith("gopose annotate: model ")]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_annotate_good_bad_and_missing_inputs(street_video: Path, checkpoint: Path, tmp_path: Path, capsys,
                                              make_damaged) -> None:
    broken = make_damaged(street_video, tmp_path / "noisy.mp4", overwrite=2)
    cut = make_damaged(street_video, tmp_path / "cut.mp4", keep_fraction=0.6)  # its index (moov) was at the end
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("hello")
    out = tmp_path / "out"
    rc = main(["annotate", str(street_video), str(broken), str(cut), str(notvideo), str(tmp_path / "gone.mp4"),
               "--model", str(checkpoint), "--out", str(out), *FAST])
    summary, stdout, err = _summary(capsys)
    assert rc == 1
    assert summary["inputs"] == 5 and summary["failures"] == 3 and summary["done"] == 2
    assert summary["frames"] >= 5 + 1 and summary["fps"] > 0
    assert summary["backend"] in ("torch", "onnx", "openvino") and summary["model"] == "realtime_random"
    assert err.startswith(f"gopose annotate: model realtime_random (--model): {checkpoint}")
    assert "notes.mp4" in err and "gone.mp4" in err and "not found" in err and "cut.mp4" in err
    assert len(_errors(err)) == 3  # one line per failed input
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{stem}{ext}" for stem in ("street_5frames_960x540", "noisy") for ext in EXTS)
    coco = json.loads((out / "street_5frames_960x540.coco.json").read_text())
    assert len(coco["images"]) == 5 and coco["annotations"] and coco["annotations"][0]["track_id"] >= 0
    assert 1 <= len((out / "noisy.jsonl").read_text().splitlines()) <= 5


def test_folder_shards_and_skip_existing(street_video: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        os.symlink(street_video, folder / name)
    (folder / "readme.txt").write_text("not a video")
    out = tmp_path / "out"
    args = [str(folder), "--model", str(checkpoint), "--out", str(out), "--formats", "jsonl", "--backend", "torch",
            *FAST]
    assert main(["annotate", *args, "--shard", "2/2"]) == 0
    summary, _, _ = _summary(capsys)
    assert summary["inputs"] == 1 and sorted(p.name for p in out.glob("*.jsonl")) == ["b.jsonl"]
    assert main(["annotate", *args, "--shard", "1/2", "--no-track"]) == 0
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    capsys.readouterr()
    line = json.loads((out / "a.jsonl").read_text().splitlines()[0])
    assert all(p["track_id"] == -1 for p in line["people"])
    assert main(["annotate", *args, "--skip-existing"]) == 0
    summary, _, _ = _summary(capsys)  # a and c were made without tracking: not this run's outputs
    assert summary["skipped"] == 1 and summary["frames"] > 0
    assert main(["annotate", *args, "--skip-existing"]) == 0
    summary, _, _ = _summary(capsys)
    assert summary["skipped"] == 3 and summary["frames"] == 0


def test_global_errors_are_one_line(street_video: Path, checkpoint: Path, tmp_path: Path, capsys,
                                    monkeypatch, without_builtin_model: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(blocker / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gopose annotate: error: --out {blocker / 'o'}: {blocker} is a file, not a folder"
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.strip() == f"gopose annotate: error: --out {blocker} is a file, not a folder"
    monkeypatch.setenv("GOPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["annotate", str(street_video)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gopose models add" in err
    assert not (tmp_path / "annotations").exists()  # no model: nothing created (item 11)
    model_dir = tmp_path / "models-folder"
    model_dir.mkdir()
    assert main(["annotate", str(street_video), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"error: {model_dir} is a folder" in err
    assert not (tmp_path / "annotations").exists()


@pytest.mark.parametrize("option,value,message", [
    ("--threshold", "0", "argument --threshold: must be > 0 and <= 1, got 0"),
    ("--threshold", "x", "argument --threshold: expected a number, got 'x'"),
    ("--long-edge", "16", "argument --long-edge: must be at least 32, got 16"),
    ("--batch-size", "0", "argument --batch-size: must be at least 1, got 0"),
    ("--threads", "-2", "argument --threads: must be at least 1, got -2"),
    ("--shard", "3/2", "argument --shard: --shard 3/2: need 1 <= I <= N"),
    ("--formats", "xml", "argument --formats: unknown output format(s) ['xml']"),
    ("--device", "gpu", "argument --device: choose auto, cpu, cuda or cuda:N, got 'gpu'"),
])
def test_option_values_are_checked_by_the_parser(option: str, value: str, message: str, street_video: Path,
                                                 tmp_path: Path, capsys) -> None:
    """Bad option values: exit 2 and one line naming the option, before anything is loaded or created."""
    out = tmp_path / "o"
    assert main(["annotate", str(street_video), "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"gopose annotate: error: {message}"), err
    assert not out.exists()


def test_empty_folder_and_http_mp4_with_index_at_end(street_video: Path, checkpoint: Path, tmp_path: Path,
                                                     capsys) -> None:
    """An empty folder, and an MP4 whose index (moov) is at its end served without byte ranges: one line each,
    naming the input."""
    import functools
    import http.server
    import threading

    empty = tmp_path / "empty"
    empty.mkdir()
    www = tmp_path / "www"
    www.mkdir()
    (www / "clip.mp4").write_bytes(street_video.read_bytes())  # the shared clip keeps its moov at the end
    class Quiet(http.server.SimpleHTTPRequestHandler):  # serves whole files only: no Range support
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    try:
        rc = main(["annotate", str(empty), url, "--model", str(checkpoint), "--out", str(tmp_path / "o"), *FAST])
    finally:
        server.shutdown()
        server.server_close()
    summary, _, err = _summary(capsys)
    lines = _errors(err)
    assert rc == 1 and summary["failures"] == 2 and len(lines) == 2, err
    assert lines[0] == f"gopose annotate: {empty}: folder {empty} holds no videos or images"
    assert lines[1].startswith(f"gopose annotate: {url}: cannot read {url}") and "moov" in lines[1]


def test_ctrl_c_leaves_no_output(ped_video: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(root / "main.py"), "annotate", str(ped_video), "--model",
                             str(checkpoint), "--out", str(out), "--long-edge", "512", "--flip", "--backend", "torch"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as in a terminal: a runner started in the background (`cmd &`) ignores SIGINT, and
                            # its children inherit that, so restore the default Ctrl-C handling for the child
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(out.glob(".*.part")):
        time.sleep(0.1)
    time.sleep(0.3)  # frames are flowing into the temporary files (the whole run takes far longer: 512 px, flip)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(out.iterdir()) == []  # neither outputs nor temporary files


def test_input_expansion_and_names(tmp_path: Path, street_video: Path) -> None:
    from app.commands.annotate import expand_inputs, parse_shard, scan_inputs
    from app.exports import output_stem, unique_stems

    assert output_stem("/v/clip.final.mp4") == "clip.final"
    assert output_stem("https://host/path/cam1.mp4?token=x") == "cam1"
    assert output_stem("rtsp://10.0.0.2/") == "10.0.0.2"
    imgs = tmp_path / "frames"
    imgs.mkdir()
    (imgs / "0001.jpg").write_bytes(b"x")
    vids = tmp_path / "vids"
    vids.mkdir()
    os.symlink(street_video, vids / "b.MP4")
    os.symlink(street_video, vids / "a.mkv")
    os.symlink(street_video, vids / "c.m2ts")  # camcorder files (AVCHD) are videos too
    (vids / "notes.txt").write_text("x")
    os.symlink(street_video, vids / "a.annotated.mp4")  # our own output: never an input
    got = expand_inputs([str(vids), str(imgs), "http://h/x.mp4", str(vids / "a.mkv")])
    assert got == [str(vids / "a.mkv"), str(vids / "b.MP4"), str(vids / "c.m2ts"), str(imgs), "http://h/x.mp4"]
    _, notes = scan_inputs([str(vids), str(vids / "a.annotated.mp4")])
    assert notes == [f"ignored 1 annotated video(s) written by gopose in {vids} (*.annotated.mp4)",
                     f"skipping {vids / 'a.annotated.mp4'}: it is an annotated video written by gopose"]
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) is None
    assert unique_stems(["a/clip.avi", "a/clip.mp4", "b/clip.mp4", "clip-2.mp4", "Clip.mkv"]) == [
        "clip", "clip-3", "clip-4", "clip-2", "Clip-5"]


def test_one_file_under_two_spellings_is_annotated_once(tmp_path: Path, street_video: Path, monkeypatch) -> None:
    """``a.mp4``, ``./a.mp4`` and its absolute path are one input (before: annotated twice, into a.* and a-2.*)."""
    from app.commands.annotate import scan_inputs

    os.symlink(street_video, tmp_path / "a.mp4")
    monkeypatch.chdir(tmp_path)
    inputs, notes = scan_inputs(["a.mp4", "./a.mp4", str(tmp_path / "a.mp4"), "a.mp4"])
    assert inputs == ["a.mp4"]
    assert notes == ["skipping ./a.mp4: it is a.mp4, listed before",
                     f"skipping {tmp_path / 'a.mp4'}: it is a.mp4, listed before"]


def test_a_folder_given_as_dot_is_named_after_the_folder(tmp_path: Path, monkeypatch) -> None:
    """``cd shoot && gopose annotate .`` names the outputs after the folder (before: ``input.*``), and
    ``gopose annotate ..`` from a subfolder never writes hidden ``...jsonl`` files."""
    from app.exports import output_stem

    shoot = tmp_path / "shoot"
    (shoot / "sub").mkdir(parents=True)
    monkeypatch.chdir(shoot)
    assert [output_stem(p) for p in (".", "./", str(shoot) + "/")] == ["shoot", "shoot", "shoot"]
    monkeypatch.chdir(shoot / "sub")
    assert output_stem("..") == "shoot" and output_stem("../sub/..") == "shoot"
    assert output_stem("/") == "input"


def test_a_folder_scan_leaves_hidden_files_out(tmp_path: Path, street_video: Path) -> None:
    """A folder copied from a Mac holds ``._clip.mp4`` (AppleDouble metadata, not a video): never an input, so it
    neither fails the run nor makes a folder of only such files anything but empty."""
    from app.commands.annotate import _empty_folder, expand_inputs

    vids = tmp_path / "vids"
    vids.mkdir()
    os.symlink(street_video, vids / "clip.mp4")
    (vids / "._clip.mp4").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    os.symlink(street_video, vids / ".hidden.mkv")
    assert expand_inputs([str(vids)]) == [str(vids / "clip.mp4")]
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "._clip.mp4").write_bytes(bytes(4096))
    assert expand_inputs([str(junk)]) == [str(junk)] and _empty_folder(str(junk))  # "holds no videos or images"


def test_a_rerun_of_two_inputs_of_one_name_warns_about_nothing(tmp_path: Path, caplog) -> None:
    """clips/a.mp4 and clips/sub/a.mp4 annotated again into the same folder: sub's outputs are at a-2 because
    clips/a.mp4 comes first in this run, not because an earlier run's outputs took the name (no warning)."""
    from app.exports import unique_stems
    from app.manifest import VERSION, manifest_path

    inputs = [str(tmp_path / "clips" / "a.mp4"), str(tmp_path / "clips" / "sub" / "a.mp4")]
    for stem, item in zip(("a", "a-2"), inputs):  # what the first run's manifests record
        manifest_path(tmp_path, stem).write_text(json.dumps({"gopose_manifest": VERSION, "input": item}))
    with caplog.at_level(logging.WARNING, logger="app.exports"):
        assert unique_stems(inputs, tmp_path) == ["a", "a-2"]
        assert "holds the outputs of" not in caplog.text
        assert unique_stems([str(tmp_path / "other" / "a.mp4")], tmp_path) == ["a-3"]  # a third a.mp4 is warned
    assert "holds the outputs of" in caplog.text


def test_an_input_given_through_dotdot_is_the_same_input(tmp_path: Path, monkeypatch) -> None:
    """A batch started as ``cd job && gopose annotate ../vids/a.mp4 --out ../ann`` and resumed from the parent
    (``gopose annotate vids/a.mp4 --out ann --skip-existing``): one input, its manifest found (before: recorded as
    ``job/../vids/a.mp4``, so the resumed run annotated it again into ``a-2``, warning about another input)."""
    from app.exports import unique_stems
    from app.manifest import VERSION, completed, input_identity, manifest_path

    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "a.mp4").write_bytes(b"x" * 10)
    (tmp_path / "job").mkdir()
    (tmp_path / "ann").mkdir()
    monkeypatch.chdir(tmp_path / "job")
    first = input_identity("../vids/a.mp4")
    manifest_path(tmp_path / "ann", "a").write_text(json.dumps({"gopose_manifest": VERSION, **first}))
    monkeypatch.chdir(tmp_path)
    assert first["input"] == str(tmp_path / "vids" / "a.mp4") and input_identity("vids/a.mp4") == first
    assert unique_stems(["vids/a.mp4"], tmp_path / "ann") == ["a"]
    earlier = {"gopose_manifest": VERSION, **first, "input": str(tmp_path / "job" / ".." / "vids" / "a.mp4"),
               "state": "complete", "outputs": {}}  # as earlier versions recorded it
    manifest_path(tmp_path / "ann", "a").write_text(json.dumps(earlier))
    assert unique_stems(["vids/a.mp4"], tmp_path / "ann") == ["a"]
    assert completed(manifest_path(tmp_path / "ann", "a"), input_identity("vids/a.mp4"), []) is not None


def test_a_concurrent_run_never_replaces_another_inputs_outputs(street_video: Path, estimator, tmp_path: Path) -> None:
    """``gopose annotate cam1/clip.mp4 --out ann & gopose annotate cam2/clip.mp4 --out ann``: both runs chose
    ``clip`` before either had published; the one publishing second is refused in one line and keeps nothing,
    and the other's outputs stay (before: replaced without a word, both runs reporting ``ann/clip.jsonl``)."""
    from app.exports import export_video_annotations
    from app.manifest import manifest_path, read_manifest

    cam1, cam2, out = tmp_path / "cam1", tmp_path / "cam2", tmp_path / "ann"
    for cam in (cam1, cam2):
        cam.mkdir()
        os.symlink(street_video, cam / "clip.mp4")
    export_video_annotations(str(cam1 / "clip.mp4"), out, estimator, formats=["jsonl"], stem="clip", manifest=True)
    before = _sha(out / "clip.jsonl")
    with pytest.raises(InputError, match=r"another run .*/cam1/clip\.mp4 as clip\.\* "):
        export_video_annotations(str(cam2 / "clip.mp4"), out, estimator, formats=["jsonl"], stem="clip",
                                 manifest=True)
    assert _sha(out / "clip.jsonl") == before and read_manifest(manifest_path(out, "clip"))["input"] == str(
        cam1 / "clip.mp4")
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.manifest.json"]
    export_video_annotations(str(cam1 / "clip.mp4"), out, estimator, formats=["jsonl"], stem="clip", manifest=True)


def test_an_input_line_survives_a_file_name_in_another_encoding(tmp_path: Path, capsys) -> None:
    """A file named in Latin-1 (``caf\\xe9.mp4``, read by Python with a surrogate escape) printed to a strict UTF-8
    stdout (any UTF-8 locale but C): its line shows the odd byte escaped (before: UnicodeEncodeError, a traceback
    that stopped the run after that input)."""
    from app.commands.annotate import report_outcome
    from app.exports import ExportResult

    item = os.fsdecode(b"videos/caf\xe9.mp4")
    res = ExportResult(item, {"jsonl": tmp_path / os.fsdecode(b"caf\xe9.jsonl")}, frames=5, seconds=1.0)
    report_outcome(item, res, None)
    out = capsys.readouterr().out
    assert out.startswith("videos/caf\\udce9.mp4: 5 frames, 5.0 frames/s -> ") and "caf\\udce9.jsonl" in out


def test_output_never_replaces_an_input(street_video: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    """``annotate videos/ --out videos/`` twice: inputs untouched, annotated copies never taken as inputs; an
    output path that is the same file as an input (a hard link) is refused."""
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = videos / "clip.mp4"
    clip.write_bytes(street_video.read_bytes())
    before = _sha(clip)
    args = ["--model", str(checkpoint), "--out", str(videos), "--backend", "torch", *FAST]
    assert main(["annotate", str(clip), *args]) == 0
    assert _sha(clip) == before
    assert sorted(p.name for p in videos.iterdir()) == sorted(["clip.mp4", *(f"clip{e}" for e in EXTS)])
    capsys.readouterr()
    assert main(["annotate", str(videos), *args]) == 0  # the folder holds our annotated copy now
    summary, _, err = _summary(capsys)
    assert summary["inputs"] == 1 and "ignored 1 annotated video(s)" in err
    assert _sha(clip) == before and not list(videos.glob("*.annotated.annotated.mp4"))

    other = tmp_path / "other"
    other.mkdir()
    os.link(clip, other / "clip.annotated.mp4")  # the output name is the input file itself
    assert main(["annotate", str(clip), "--formats", "video", *args[:2], "--out", str(other), *FAST]) == 1
    summary, _, err = _summary(capsys)
    assert _errors(err) == [f"gopose annotate: {clip}: refusing to write {other / 'clip.annotated.mp4'}: it is "
                            f"the input {clip} (choose another --out)"]
    assert _sha(clip) == before


def test_shards_name_outputs_from_the_whole_list(street_video: Path, checkpoint: Path, tmp_path: Path,
                                                capsys) -> None:
    """clip.avi and clip.mp4 in one folder, split over two shards: different names, the same in every shard,
    and --skip-existing skips each input by its own outputs."""
    from app.manifest import read_manifest

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("clip.avi", "clip.mp4"):
        os.symlink(street_video, folder / name)
    out = tmp_path / "out"
    args = [str(folder), "--model", str(checkpoint), "--out", str(out), "--formats", "jsonl", "--backend", "torch",
            *FAST]
    assert main(["annotate", *args, "--shard", "2/2"]) == 0
    assert main(["annotate", *args, "--shard", "1/2"]) == 0
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["clip-2.jsonl", "clip.jsonl"]
    assert read_manifest(out / "clip.manifest.json")["input"] == str(folder / "clip.avi")
    assert read_manifest(out / "clip-2.manifest.json")["input"] == str(folder / "clip.mp4")
    capsys.readouterr()
    assert main(["annotate", *args, "--shard", "2/2", "--skip-existing"]) == 0
    summary, stdout, _ = _summary(capsys)
    assert summary["skipped"] == 1 and stdout.startswith(f"{folder / 'clip.mp4'}: skipped") and "clip-2" in stdout
    (folder / "clip.mp4").unlink()  # another file now: its outputs do not describe it
    (folder / "clip.mp4").write_bytes(street_video.read_bytes()[:-1])
    assert main(["annotate", *args, "--shard", "2/2", "--skip-existing"]) in (0, 1)
    summary, _, _ = _summary(capsys)
    assert summary["skipped"] == 0


def test_a_later_run_never_replaces_another_inputs_outputs_of_the_same_name(street_video: Path, checkpoint: Path,
                                                                             tmp_path: Path, capsys,
                                                                             caplog) -> None:
    """a/clip.mp4 and b/clip.mp4 annotated together get clip and clip-2; b alone later (with --skip-existing) finds
    its own outputs at clip-2, and a third clip.mp4 gets a new name: a's outputs stay as they were."""
    from app.manifest import read_manifest

    clips = []
    for folder in "abc":
        (tmp_path / folder).mkdir()
        clips.append(tmp_path / folder / "clip.mp4")
        os.symlink(street_video, clips[-1])
    out = tmp_path / "out"
    args = ["--model", str(checkpoint), "--out", str(out), "--formats", "jsonl", "--backend", "torch", *FAST]
    assert main(["annotate", str(clips[0]), str(clips[1]), *args]) == 0
    a_outputs = {p.name: _sha(p) for p in out.glob("clip.*")}
    capsys.readouterr()
    assert main(["annotate", str(clips[1]), "--skip-existing", *args]) == 0
    summary, stdout, _ = _summary(capsys)
    assert summary["skipped"] == 1 and "clip-2" in stdout
    assert main(["annotate", str(clips[2]), *args]) == 0
    assert f"{clips[2]}: clip holds the outputs of {clips[0]}; writing this input's as clip-3" in caplog.text
    assert {p.name: _sha(p) for p in out.glob("clip.*")} == a_outputs
    assert [read_manifest(out / f"{stem}.manifest.json")["input"] for stem in ("clip", "clip-2", "clip-3")] == [
        str(c) for c in clips]


def test_skip_existing_sees_an_image_replaced_in_a_folder(checkpoint: Path, tmp_path: Path, capsys) -> None:
    """An image sequence is skipped while its images are the same; an image rewritten in place (the folder's entry
    count and time unchanged) makes its outputs stale, so it is annotated again."""
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:04d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    args = [str(frames), "--model", str(checkpoint), "--out", str(tmp_path / "out"), "--formats", "jsonl",
            "--backend", "torch", "--skip-existing", *FAST]
    assert main(["annotate", *args]) == 0 and main(["annotate", *args]) == 0
    capsys.readouterr()
    folder_time = frames.stat().st_mtime_ns
    cv2.imwrite(str(frames / "0001.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    assert frames.stat().st_mtime_ns == folder_time
    assert main(["annotate", *args]) == 0
    assert _summary(capsys)[0]["skipped"] == 0
    assert main(["annotate", *args]) == 0
    assert _summary(capsys)[0]["skipped"] == 1


def test_skip_existing_an_image_folder_that_is_its_own_out(checkpoint: Path, tmp_path: Path, capsys) -> None:
    """``--out`` the image folder itself: the outputs written into it (and any other non-image file) are not
    part of the input, so the next ``--skip-existing`` run skips it (before: the folder's changed entry count
    and time made it look like another input every time); a new image still counts."""
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:04d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    args = [str(frames), "--model", str(checkpoint), "--out", str(frames), "--formats", "jsonl,csv",
            "--backend", "torch", "--skip-existing", *FAST]
    assert main(["annotate", *args]) == 0
    (frames / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["annotate", *args]) == 0
    assert _summary(capsys)[0]["skipped"] == 1
    cv2.imwrite(str(frames / "0002.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert main(["annotate", *args]) == 0
    summary = _summary(capsys)[0]
    assert summary["skipped"] == 0 and summary["frames"] == 3


def test_help_imports_nothing_heavy() -> None:
    """``gopose --help`` lists the commands without importing any command's dependencies (torch, cv2)."""
    code = ("import sys; from app.cli import main; rc = main(['--help']); "
            "print(rc, sorted(m for m in ('torch', 'cv2', 'av', 'yaml') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "annotate" in done.stdout and done.stdout.strip().splitlines()[-1] == "0 []"


def test_progress_in_a_log_is_a_line_every_interval(street_video: Path, checkpoint: Path, tmp_path: Path,
                                                    capsys) -> None:
    from app.progress import LineProgress, progress_for

    now = [0.0]
    log = io.StringIO()
    bar = LineProgress("clip", log, interval=30.0, clock=lambda: now[0])
    assert isinstance(progress_for("clip", log), LineProgress)  # not a terminal
    for frame in range(1, 301):
        now[0] = frame * 0.5  # 2 frames/s for 150 s
        bar.update_to(frame, 300)
    assert log.getvalue().splitlines() == [f"clip: {n}/300 frames ({n // 3}%), 2.0 frames/s"
                                           for n in (60, 120, 180, 240, 300)]
    # a real run with stderr not a terminal: no carriage-return redraws
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(tmp_path / "o"),
                 "--long-edge", "128", "--progress-interval", "3600"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and len(err.strip().splitlines()) == 1  # only the model line


def test_network_threads_default_to_all_cpus_but_one(street_video: Path, checkpoint: Path, tmp_path: Path,
                                                     capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--threads`` the network leaves one CPU to the video decoding and output threads (and ``gopose
    annotate`` applies it to the process), in ``gopose gui`` too; Ray workers choose their own; ``--threads``
    wins."""
    import torch

    from app.cli import build_parser
    from app.commands import annotate, gui

    parser = build_parser(["annotate"])
    cpus = len(os.sched_getaffinity(0))
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(tmp_path), "--formats",
                 "jsonl", *FAST]) == 0
    assert torch.get_num_threads() == max(1, cpus - 1)
    assert _summary(capsys)[0]["frames"] == 5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert annotate.default_threads(parser.parse_args(["annotate", "v.mp4"])) == 7
    assert annotate.default_threads(parser.parse_args(["annotate", "v.mp4", "--ray"])) is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert annotate.default_threads(parser.parse_args(["annotate", "v.mp4"])) == 1
    assert parser.parse_args(["annotate", "v.mp4", "--threads", "3"]).threads == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert gui.default_threads(build_parser(["gui"]).parse_args(["gui"])) == 3


def test_a_rerun_with_fewer_formats_removes_the_earlier_runs_other_outputs(street_video: Path, checkpoint: Path,
                                                                           tmp_path: Path, capsys,
                                                                           caplog) -> None:
    """A second run of an input with fewer --formats (and another threshold) replaces the set: the outputs of the
    first run it does not rewrite would no longer match the manifest (before: kept, stale, listed nowhere). Only
    files that manifest lists with their recorded size go: a changed one and files GOPose never wrote stay."""
    out = tmp_path / "out"
    stem = "street_5frames_960x540"
    args = ["annotate", str(street_video), "--model", str(checkpoint), "--out", str(out), "--backend", "torch",
            *FAST]
    assert main(args) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}{ext}" for ext in EXTS)
    (out / f"{stem}.notes.txt").write_text("mine")  # the user's, named like an output
    with (out / f"{stem}.csv").open("a") as f:  # changed since the run wrote it
        f.write("edited\n")
    assert main([*args, "--formats", "jsonl", "--threshold", "0.5"]) == 0
    _, stdout, err = _summary(capsys)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{stem}.jsonl", f"{stem}.manifest.json",
                                                            f"{stem}.notes.txt", f"{stem}.csv"])
    manifest = json.loads((out / f"{stem}.manifest.json").read_text())
    assert list(manifest["outputs"]) == [f"{stem}.jsonl"] and manifest["state"] == "complete"
    assert "superseded" not in manifest and manifest["formats"] == ["jsonl"]
    removed = [line for line in _errors(err) if "removed" in line]
    assert len(removed) == 1 and f"{stem}.coco.json" in removed[0] and f"{stem}.annotated.mp4" in removed[0]
    assert f"kept {out / stem}.csv" in caplog.text  # named, left alone
    assert main([*args, "--formats", "jsonl", "--threshold", "0.5", "--skip-existing"]) == 0  # still complete
    assert _summary(capsys)[0]["skipped"] == 1


def test_recovery_of_a_rerun_killed_while_publishing_removes_what_it_superseded(tmp_path: Path) -> None:
    """A run killed after its manifest recorded the superseded outputs: the next run finishes the renames and the
    removals (not a file of another stem, nor one whose size changed)."""
    from app.manifest import MANIFEST_SUFFIX, read_manifest, recover
    from core.io.files import write_json_atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    tmp = tmp_path / f".a.jsonl.{pid}.0123abcd.part"
    tmp.write_text("{}\n")
    for name, text in (("a.csv", "12345"), ("a.coco.json", "{}"), ("b.csv", "123")):
        (tmp_path / name).write_text(text)
    write_json_atomic(tmp_path / f"a{MANIFEST_SUFFIX}", {
        "gopose_manifest": 1, "input": "/v/a.mp4", "outputs": {"a.jsonl": {"size": 3}}, "state": "publishing",
        "pending": {"a.jsonl": tmp.name},
        "superseded": {"a.csv": {"size": 5}, "a.coco.json": {"size": 99}, "b.csv": {"size": 3},
                       "../a.csv": {"size": 5}}})
    fixed = recover(tmp_path, {"a.jsonl", "a.csv", "a.coco.json", f"a{MANIFEST_SUFFIX}"})
    assert fixed.completed == ["/v/a.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.coco.json", "a.jsonl", f"a{MANIFEST_SUFFIX}", "b.csv"]
    data = read_manifest(tmp_path / f"a{MANIFEST_SUFFIX}")
    assert data["state"] == "complete" and "superseded" not in data and "pending" not in data


def test_skip_existing_redoes_an_input_made_with_another_model_or_settings(street_video: Path, checkpoint: Path,
                                                                         tmp_path: Path, capsys, caplog) -> None:
    """``--skip-existing`` kept the outputs of another model or decoder settings (e.g. after an update of the
    built-in model) as if they were this run's: the manifest now records what made them, and they are redone."""
    out = tmp_path / "out"
    base = [str(street_video), "--model", str(checkpoint), "--out", str(out), "--formats", "jsonl",
            "--backend", "torch", "--long-edge", "128", "--quiet", "--skip-existing"]
    assert main(["annotate", *base, "--threshold", "1e-4"]) == 0
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    assert manifest["run"]["decoder"]["threshold"] == 1e-4 and len(manifest["run"]["model"]) == 16
    capsys.readouterr()
    assert main(["annotate", *base, "--threshold", "1e-4"]) == 0
    assert _summary(capsys)[0]["skipped"] == 1  # same model, same settings
    with caplog.at_level("WARNING", logger="app.exports"):
        assert main(["annotate", *base, "--threshold", "2e-4"]) == 0
    summary = _summary(capsys)[0]
    assert summary["skipped"] == 0 and summary["frames"] > 0
    assert any("annotating again" in r.message and "a different decoder" in r.message for r in caplog.records)
    assert json.loads(next(out.glob("*.manifest.json")).read_text())["run"]["decoder"]["threshold"] == 2e-4
    assert main(["annotate", *base, "--threshold", "2e-4", "--no-track"]) == 0
    assert _summary(capsys)[0]["skipped"] == 0  # tracking changes the outputs' ids too


def test_skip_existing_redoes_outputs_of_a_gopose_that_recorded_no_run(street_video: Path, checkpoint: Path,
                                                                      tmp_path: Path, capsys, caplog) -> None:
    out = tmp_path / "out"
    args = ["annotate", str(street_video), "--model", str(checkpoint), "--out", str(out), "--formats", "jsonl",
            "--backend", "torch", "--skip-existing", *FAST]
    assert main(args) == 0
    path = next(out.glob("*.manifest.json"))
    older = json.loads(path.read_text())
    del older["run"]
    path.write_text(json.dumps(older))
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="app.exports"):
        assert main(args) == 0
    assert _summary(capsys)[0]["skipped"] == 0
    assert any("did not record its model and settings" in r.message for r in caplog.records)
