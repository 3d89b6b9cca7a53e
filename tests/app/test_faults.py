"""Nothing lost under faults: a full disk (a real, small tmpfs), SIGTERM and SIGKILL of real ``gopose annotate``
processes, a process killed while publishing, and damaged inputs."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from app.cli import main
from app.manifest import completed, input_identity, manifest_path, read_manifest, recover
from app.sinks import output_paths

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--long-edge", "128", "--threshold", "1e-4", "--quiet", "--backend", "torch"]
FORMATS = ["coco", "jsonl", "csv", "video"]


def clip(src: Path, dst: Path, frames: int) -> Path:
    from eval.bench_faults import clip_video

    return clip_video(src, dst, frames)


def temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part"))


def check_outputs(folder: Path, stem: str, frames: int) -> None:
    """Every output of ``stem`` is complete: JSON loads, JSONL and CSV parse, the video decodes every frame."""
    import csv

    coco = json.loads((folder / f"{stem}.coco.json").read_text())
    assert len(coco["images"]) == frames
    lines = (folder / f"{stem}.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(frames))
    with open(folder / f"{stem}.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["frame", "timestamp", "track_id"] and all(len(r) == len(rows[0]) for r in rows)
    with av.open(str(folder / f"{stem}.annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == frames
    assert read_manifest(folder / f"{stem}.manifest.json")["state"] == "complete"


@pytest.fixture()
def small_disk(tmp_path: Path):
    """``mount(size)`` -> a folder on a fresh tmpfs of that size (skips where mounting is not permitted)."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a small tmpfs to fill a disk here: {done.stderr.strip() or done.returncode}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", str(folder)], check=False)


def _annotate_process(inputs: list[Path], out: Path, checkpoint: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "annotate", *map(str, inputs), "--model",
                             str(checkpoint), "--out", str(out), *FAST],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition()`` (hang guard: ``timeout``); fails with the process's output if it ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"annotate ended (rc {proc.returncode}) before the moment to stop it:\n{out}\n{err}")
        assert time.monotonic() < deadline, "annotate never reached the moment to stop it"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- item 3
def test_full_disk_keeps_no_output_of_the_failed_input(street_video: Path, checkpoint: Path, small_disk,
                                                      capsys) -> None:
    out = small_disk("160k")  # the JSON, JSONL and CSV fit, the annotated video does not
    rc = main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(out), *FAST])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert rc == 1 and summary["failures"] == 1
    errors = [line for line in captured.err.splitlines() if not line.startswith("gopose annotate: model")]
    assert len(errors) == 1 and str(street_video) in errors[0] and "No space left on device" in errors[0]
    assert list(out.iterdir()) == []  # neither outputs nor temporary files
    subprocess.run(["mount", "-o", "remount,size=16m", str(out)], check=True)
    assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(out), "--skip-existing",
                 *FAST]) == 0
    check_outputs(out, street_video.stem, 5)
    assert temps(out) == []


def test_a_manifest_the_disk_cannot_take_leaves_the_earlier_runs_in_place(tmp_path: Path, monkeypatch) -> None:
    """The disk fills as a run begins its manifest: the run is abandoned, and the complete manifest of an earlier
    run at that name (which --skip-existing and the naming of other inputs rely on) stays."""
    import errno

    import app.manifest as manifest_module
    from app.manifest import Manifest
    from core.io.files import write_json_atomic

    path = manifest_path(tmp_path, "clip")
    earlier = {"gopose_manifest": 1, "input": "/a/clip.mp4", "state": "complete", "outputs": {}}
    write_json_atomic(path, earlier)
    part = tmp_path / ".clip.jsonl.1.abcdef12.part"
    part.write_text("{}\n")
    journal = Manifest(path, {"input": "/a/clip.mp4"})  # its rerun (another input is refused before writing)

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest_module, "write_json_atomic", disk_full)
    with pytest.raises(OSError):
        journal.begin({tmp_path / "clip.jsonl": part})
    journal.discard()  # what OutputSet does with a set it abandons
    assert read_manifest(path) == earlier


# ---------------------------------------------------------------------------------------------- item 4
def test_sigterm_stops_like_ctrl_c(ped_video: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _annotate_process([ped_video], out, checkpoint)
    _wait_for(lambda: out.is_dir() and temps(out), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err
    assert list(out.iterdir()) == []


def test_sigkill_leftovers_are_finished_by_the_next_run(street_video: Path, ped_video: Path, checkpoint: Path,
                                                        tmp_path: Path, capsys) -> None:
    long = clip(ped_video, tmp_path / "long.mp4", 30)
    out = tmp_path / "out"
    proc = _annotate_process([street_video, long], out, checkpoint)
    _wait_for(lambda: (out / f"{street_video.stem}.manifest.json").exists()
              and any(p.name.startswith(".long.") for p in temps(out)), proc)
    proc.kill()
    proc.communicate(timeout=60)
    check_outputs(out, street_video.stem, 5)  # the finished input is complete
    left = temps(out)
    assert left and all(p.name.startswith(".long.") for p in left)
    assert main(["annotate", str(street_video), str(long), "--model", str(checkpoint), "--out", str(out),
                 "--skip-existing", *FAST]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and summary["done"] == 2
    assert f"removed {len(left)} temporary file(s)" in captured.err
    assert temps(out) == []
    check_outputs(out, "long", 30)


_KILLED_WHILE_PUBLISHING = r"""
import os, signal, sys, types
from app.manifest import Manifest, input_identity, manifest_path
from app.sinks import CsvSink, OutputSet, StreamMeta, make_sinks, output_paths
from app.sources import open_source
from core.contract import PoseContract
from core.keypoints import COCO
from core.poses import Poses

video, out, stage = sys.argv[1:4]

class Killed(CsvSink):
    def finish(self):
        if stage == "finish":
            os.kill(os.getpid(), signal.SIGKILL)
        super().finish()
    def close(self):
        os.kill(os.getpid(), signal.SIGKILL)

paths = output_paths("clip", out, ["coco", "jsonl", "video"])
sinks = [*make_sinks(paths), Killed(os.path.join(out, "clip.csv"))]
journal = Manifest(manifest_path(out, "clip"), input_identity(video), lambda: {"frames": outputs.frames})
outputs = OutputSet(sinks, journal)
with open_source(video) as src:
    outputs.open(StreamMeta(src.name, src.size, src.fps, PoseContract(COCO), src.frame_count))
    for frame in src:
        outputs.write(frame, types.SimpleNamespace(poses=Poses.empty(17)))
outputs.close()
"""


@pytest.mark.parametrize("stage", ["finish", "rename"])
def test_killed_while_publishing(stage: str, street_video: Path, tmp_path: Path) -> None:
    """A process killed before its outputs are journalled leaves only temporary files (removed by the next run);
    one killed between two renames leaves a journal the next run completes (the set is then whole)."""
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-c", _KILLED_WHILE_PUBLISHING, str(street_video), str(out), stage],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    finals = output_paths("clip", out, FORMATS)
    mpath = manifest_path(out, "clip")
    names = {p.name for p in finals.values()} | {mpath.name}
    if stage == "finish":
        assert len(temps(out)) == 4 and not any(p.exists() for p in finals.values()) and not mpath.exists()
        fixed = recover(out, names)
        assert len(fixed.removed) == 4 and not fixed.completed and list(out.iterdir()) == []
        return
    assert read_manifest(mpath)["state"] == "publishing"
    assert {f: p.exists() for f, p in finals.items()} == {"coco": True, "jsonl": True, "video": True, "csv": False}
    assert [p.name.split(".part")[0].rsplit(".", 2)[0] for p in temps(out)] == [".clip.csv"]
    assert completed(mpath, input_identity(street_video), finals.values()) is None  # not trusted yet
    fixed = recover(out, names)
    assert fixed.completed == [str(street_video)] and temps(out) == []
    check_outputs(out, "clip", 5)
    assert completed(mpath, input_identity(street_video), finals.values()) is not None


def test_recovery_leaves_other_names_and_live_writers_alone(tmp_path: Path) -> None:
    from core.io.files import AtomicFile

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    mine = tmp_path / f".a.csv.{pid}.0123abcd.part"
    other = tmp_path / f".b.csv.{pid}.0123abcd.part"
    mine.write_text("x")
    other.write_text("x")
    live = AtomicFile(tmp_path / "a.jsonl")  # this process: alive
    fixed = recover(tmp_path, {"a.csv", "a.jsonl"})
    assert fixed.removed == [mine] and other.exists() and live.tmp.exists()
    live.discard()


# ---------------------------------------------------------------------------------------------- item 6
def test_truncated_video_is_partial_with_one_count(ped_video: Path, checkpoint: Path, tmp_path: Path, capsys,
                                                  caplog) -> None:
    whole = clip(ped_video, tmp_path / "whole.mp4", 60)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    args = ["annotate", str(cut), "--model", str(checkpoint), "--out", str(tmp_path / "o"), *FAST]
    assert main(args) == 1
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    lost = summary["frames_lost"]
    assert summary["partial"] == 1 and 0 < lost < 60 and summary["frames"] + lost == 60
    assert summary["partial_inputs"] == [{"input": str(cut), "frames": 60 - lost, "frames_expected": 60,
                                          "frames_lost": lost}]
    assert f"PARTIAL: {lost} of 60 frames" in out[-2]
    assert f"decoded {60 - lost} of 60 frames ({lost} lost" in caplog.text  # the warning says the same
    manifest = read_manifest(tmp_path / "o" / "cut.manifest.json")
    assert manifest["frames_lost"] == lost and manifest["frames"] == 60 - lost
    assert main(args + ["--allow-partial", "--skip-existing"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and summary["frames_lost"] == lost  # still reported when skipped
    assert summary["partial_inputs"] == [{"input": str(cut), "frames": 60 - lost, "frames_expected": 60,
                                          "frames_lost": lost}]  # the counts its manifest recorded
    assert main(args + ["--skip-existing"]) == 1


def test_an_output_path_that_is_a_folder_is_named_before_anything_is_written(tmp_path):
    from core.errors import InputError
    from core.io.files import AtomicFile, write_json_atomic

    folder = tmp_path / "out.json"
    folder.mkdir()
    with pytest.raises(InputError, match=f"cannot write {folder}: it is a folder"):
        write_json_atomic(folder, {"a": 1})
    with pytest.raises(InputError, match="it is a folder"):
        AtomicFile(folder, "wb")
    assert list(tmp_path.rglob("*.part")) == [] and folder.is_dir()
