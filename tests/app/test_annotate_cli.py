"""``gopose annotate`` end to end with a real checkpoint on the shared clip and damaged copies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from app.cli import main

FAST = ["--long-edge", "128", "--threshold", "1e-4", "--quiet"]


def _summary(capsys) -> tuple[dict, str, str]:
    out, err = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1]), out, err


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
    assert summary["backend"] in ("torch", "onnxruntime") and summary["model"] == "realtime_random"
    assert "notes.mp4" in err and "gone.mp4" in err and "not found" in err and "cut.mp4" in err
    assert len(err.strip().splitlines()) == 3  # one line per failed input
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{stem}{ext}" for stem in ("street_5frames_960x540", "noisy")
                           for ext in (".coco.json", ".jsonl", ".csv", ".mp4"))
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
    assert summary["inputs"] == 1 and sorted(p.name for p in out.iterdir()) == ["b.jsonl"]
    assert main(["annotate", *args, "--shard", "1/2", "--no-track"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    capsys.readouterr()
    line = json.loads((out / "a.jsonl").read_text().splitlines()[0])
    assert all(p["track_id"] == -1 for p in line["people"])
    assert main(["annotate", *args, "--skip-existing"]) == 0
    summary, _, _ = _summary(capsys)
    assert summary["skipped"] == 3 and summary["frames"] == 0


def test_global_errors_are_one_line(street_video: Path, checkpoint: Path, tmp_path: Path, capsys,
                                    monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(blocker / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not writable" in err
    monkeypatch.setenv("GOPOSE_HOME", str(tmp_path / "home"))
    assert main(["annotate", str(street_video), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gopose models add" in err
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--shard", "3/2"]) == 2
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--formats", "xml"]) == 2


def test_ctrl_c_leaves_no_output(ped_video: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(root / "main.py"), "annotate", str(ped_video), "--model",
                             str(checkpoint), "--out", str(out), "--long-edge", "128"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(out.glob(".*.part")):
        time.sleep(0.2)
    time.sleep(1.0)  # frames are flowing into the temporary files
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(out.iterdir()) == []  # neither outputs nor temporary files


def test_input_expansion_and_names(tmp_path: Path, street_video: Path) -> None:
    from app.commands.annotate import expand_inputs, parse_shard
    from app.exports import output_stem

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
    (vids / "notes.txt").write_text("x")
    got = expand_inputs([str(vids), str(imgs), "http://h/x.mp4", str(vids / "a.mkv")])
    assert got == [str(vids / "a.mkv"), str(vids / "b.MP4"), str(imgs), "http://h/x.mp4"]
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) is None
