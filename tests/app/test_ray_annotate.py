"""``gopose annotate --ray`` on a real local Ray (2 CPUs, one per module): the outputs equal the single-process
run's, a worker killed while it works has its input retried with nothing half-written left, a corrupt input is
reported once, ``--skip-existing`` finishes only what is missing, and without Ray ``--ray`` says what to install."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import pytest

from app.cli import main
from app.manifest import read_manifest
from app.ray_annotate import JobProgress, parse_address, plan_workers
from core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--long-edge", "128", "--threshold", "1e-4", "--quiet", "--backend", "torch", "--threads", "1"]
STEMS = ("a", "b", "c")
TIMING = ("seconds", "fps", "out")  # what may differ between two runs of the same inputs


def tiny_video(src: Path, dst: Path, start: int, frames: int, width: int = 160) -> Path:
    """``frames`` frames of ``src`` from frame ``start``, scaled to ``width`` pixels wide, as H.264 at 25 fps."""
    images = []
    with av.open(str(src)) as inp:
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= start + frames:
                break
            if i >= start:
                img = frame.to_ndarray(format="bgr24")
                height = round(img.shape[0] * width / img.shape[1] / 2) * 2
                images.append(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, images[0].shape[0], "yuv420p"
        for img in images:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(stream.encode())
    return dst


@dataclass
class Run:
    rc: int
    summary: dict
    out: Path
    stderr: str


def _run(argv: list[str], out: Path) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    return Run(rc, json.loads(stdout.getvalue().strip().splitlines()[-1]), out, stderr.getvalue())


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray with 2 CPUs for the module; its address, which other processes can join."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(ped_video: Path, tmp_path_factory) -> list[Path]:
    """Three short real videos (30, 30 and 90 frames at 160x120) and a file that is not a video."""
    folder = tmp_path_factory.mktemp("clips")
    made = [tiny_video(ped_video, folder / f"{stem}.mp4", start, n)
            for stem, start, n in (("a", 0, 30), ("b", 200, 30), ("c", 400, 90))]
    (folder / "bad.mp4").write_text("not a video")
    return [*made, folder / "bad.mp4"]


@pytest.fixture(scope="module")
def reference(clips: list[Path], checkpoint: Path, tmp_path_factory) -> Run:
    """The single-process run of the same inputs."""
    out = tmp_path_factory.mktemp("reference") / "out"
    return _run(["annotate", *map(str, clips), "--model", str(checkpoint), "--out", str(out), *FAST], out)


def assert_same_outputs(got: Path, want: Path, stems=STEMS) -> None:
    """Same frames, people, keypoints and track ids in every format; complete manifests; no temporary files."""
    for stem in stems:
        for suffix in (".jsonl", ".csv"):
            assert (got / f"{stem}{suffix}").read_bytes() == (want / f"{stem}{suffix}").read_bytes(), stem + suffix
        assert (json.loads((got / f"{stem}.coco.json").read_text())
                == json.loads((want / f"{stem}.coco.json").read_text()))
        counts = []
        for folder in (got, want):
            with av.open(str(folder / f"{stem}.annotated.mp4")) as c:
                counts.append(sum(1 for _ in c.decode(video=0)))
        assert counts[0] == counts[1] > 0
        assert read_manifest(got / f"{stem}.manifest.json")["state"] == "complete"
    assert not [p.name for p in got.iterdir() if p.name.endswith(".part")]


def test_an_address_where_nothing_listens_is_one_line_at_once(checkpoint: Path, street_video: Path, tmp_path: Path,
                                                              capsys) -> None:
    """``--ray HOST:PORT`` where no Ray listens: ``ray.init`` retried for about 14 minutes, printing its own log
    lines; now one line at once. (Defined before the tests that start the module's Ray: a connected process
    ignores the address.)"""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized(), "run this test before the module's Ray starts"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        assert main(["annotate", str(street_video), "--model", str(checkpoint), "--out", str(out), *FAST,
                     "--ray", address]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"gopose annotate: error: --ray {address}: cannot start or join Ray: nothing answers at "
                           f"127.0.0.1:{port} (Connection refused)"), err
        assert not ray.is_initialized() and not out.exists()


_SIGTERM_IN_RAY_INIT = """
import os, signal, sys, time
import ray
from app.ray_annotate import connected
from app.signals import Terminated, sigterm_as_interrupt

def init(**_kwargs):  # what ray.init does first, then the signal arrives
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # not reached: the handler runs at once

ray.init = init
with sigterm_as_interrupt():
    ours = signal.getsignal(signal.SIGTERM)
    try:
        with connected(ray, "local"):
            pass
    except Terminated:
        print("terminated", signal.getsignal(signal.SIGTERM) is ours, ray.is_initialized())
"""


def test_sigterm_while_ray_starts_ends_as_terminated() -> None:
    """SIGTERM while ``ray.init`` runs (seconds, for a local Ray) reaches the handler Ray installs first thing,
    ``sys.exit(15)``: the run must still end as terminated (143, its line, Ray shut down), not exit with status 15
    and no word, leaving Ray's agents behind. (Ray's start is stood in for: a real one takes seconds. In a process
    of its own: Ray's shutdown and signal handlers stay out of this one.)"""
    pytest.importorskip("ray")
    run = subprocess.run([sys.executable, "-c", _SIGTERM_IN_RAY_INIT], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.split() == ["terminated", "True", "False"], run.stderr[-2000:]


def test_auto_checks_the_ray_address_of_the_environment(monkeypatch) -> None:
    """``--ray auto`` joins ``$RAY_ADDRESS`` when set: a dead one is found at once too (not after Ray's retries)."""
    from app.ray_annotate import check_reachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match=f"nothing answers at 127.0.0.1:{port}"):
        check_reachable("auto")
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # not an address: Ray's own lookup decides
    check_reachable("auto")
    monkeypatch.delenv("RAY_ADDRESS")
    check_reachable("auto")


def test_ray_run_equals_the_single_process_run(ray_address: str, clips: list[Path], checkpoint: Path,
                                               reference: Run, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    args = ["annotate", *map(str, clips), "--model", str(checkpoint), "--out", str(out), *FAST, "--ray",
            "--ray-workers", "2"]
    shown = [a for a in args if a != "--quiet"] + ["--progress-interval", "1e-6"]  # a progress line per update
    run = _run(shown, out)
    assert run.rc == reference.rc == 1  # the corrupt input fails, the others complete
    counts = re.findall(r"^gopose annotate: (\d)/4 inputs, (\d+) frames", run.stderr, re.M)
    assert counts and next(int(n) for done, n in counts if done == "4") == 150, counts  # every frame, once done
    drop = lambda s: {k: v for k, v in s.items() if k not in TIMING}  # noqa: E731
    assert drop(run.summary) == drop(reference.summary)
    assert run.summary["done"] == 3 and run.summary["failed"][0]["input"] == str(clips[-1])
    assert "2 CPU worker(s) (1 thread(s) each)" in run.stderr
    assert len([line for line in run.stderr.splitlines() if "bad.mp4" in line]) == 1  # reported once
    assert_same_outputs(out, reference.out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}{e}" for s in STEMS for e in (
        ".coco.json", ".jsonl", ".csv", ".annotated.mp4", ".manifest.json"))

    for path in out.glob("b.*"):  # a re-run with --skip-existing finishes only what is missing
        path.unlink()
    again = _run([*args, "--skip-existing"], out)
    assert again.rc == 1
    assert (again.summary["skipped"], again.summary["done"], again.summary["frames"]) == (2, 3, 30)
    assert_same_outputs(out, reference.out)


@pytest.mark.slow  # ~13 s: a worker SIGKILLed mid-input on a real local cluster
def test_killed_worker_has_its_input_retried(ray_address: str, clips: list[Path], checkpoint: Path,
                                            reference: Run, tmp_path: Path) -> None:
    """SIGKILL the worker process writing the longest input (found by its temporary files): Ray restarts the
    worker and retries the input; the job completes with every output whole and no temporary file left."""
    out = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "annotate", *map(str, clips[:3]), "--model",
                             str(checkpoint), "--out", str(out), *FAST, "--ray", ray_address, "--ray-workers", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writing_c = re.compile(r"^\.c\.(?:coco\.json|jsonl|csv|annotated\.mp4)\.(\d+)\.[0-9a-f]{8}\.part$")
    deadline = time.monotonic() + 240  # hang guard only
    killed = None
    while killed is None:
        assert proc.poll() is None, f"annotate ended before its worker could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "the worker never started writing c"
        hits = [m for m in map(writing_c.match, os.listdir(out) if out.is_dir() else []) if m]
        if hits:
            killed = int(hits[0][1])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert (summary["done"], summary["failures"], summary["frames"]) == (3, 0, 150)
    assert re.search(r"c\.mp4: its Ray worker died; Ray retries it \(attempt 2 of 3, pid \d+", stderr), stderr
    assert read_manifest(out / "c.manifest.json")["pid"] != killed  # written by the restarted worker
    assert_same_outputs(out, reference.out)


def test_without_ray_the_option_names_the_extra(street_video: Path, tmp_path: Path) -> None:
    """Ray made unimportable in a fresh interpreter: one line naming the extra, exit 2, nothing created."""
    code = ("import sys; sys.modules['ray'] = None; from app.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", code, "annotate", str(street_video), "--out", str(out), "--ray"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("gopose annotate: error: --ray needs Ray, which is not installed: "
                                   "pip install 'gopose[ray]'")
    assert not out.exists()


def test_ray_options_are_checked_before_anything_runs(street_video: Path, tmp_path: Path, capsys) -> None:
    assert main(["annotate", "--ray", str(street_video), "--out", str(tmp_path / "o")]) == 2  # an input, not an address
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --ray: expected local, auto, ray://HOST:PORT" in err
    assert main(["annotate", str(street_video), "--out", str(tmp_path / "o"), "--ray-workers", "2"]) == 2
    assert capsys.readouterr().err.strip() == "gopose annotate: error: --ray-workers needs --ray"
    assert not (tmp_path / "o").exists()
    for good in ("local", "auto", "ray://head:10001", "10.0.0.5:6379", "head-1.cluster:6379", "[::1]:6379"):
        assert parse_address(good) == good
    for bad in ("clip.mp4", "ray://", "head", "http://head:80", "10.0.0.5:", "videos/"):
        with pytest.raises(InputError):
            parse_address(bad)


def test_worker_plan_follows_the_cluster() -> None:
    cpu8, gpu2 = {"CPU": 8.0, "memory": 1e9}, {"CPU": 8.0, "GPU": 2.0}
    plan = plan_workers([cpu8], "auto")
    assert (plan.count, plan.device, plan.num_cpus, plan.num_gpus, plan.threads) == (8, "cpu", 1, 0, 1)
    assert plan_workers([cpu8], "auto", threads=3).count == 2
    assert plan_workers([{"CPU": 3.0}, {"CPU": 3.0}], "cpu", threads=2).count == 2  # a worker lives on one node
    plan = plan_workers([gpu2, cpu8], "auto")
    assert (plan.count, plan.device, plan.num_gpus, plan.num_cpus) == (2, "cuda", 1, 1)
    assert plan_workers([gpu2], "cpu").device == "cpu"  # --device cpu: CPU workers on a GPU cluster
    assert plan_workers([gpu2], "cuda:1", workers=1).count == 1
    with pytest.raises(InputError, match="has no GPUs"):
        plan_workers([cpu8], "cuda")
    with pytest.raises(InputError, match="holds 2 worker"):
        plan_workers([gpu2], "auto", workers=3)
    with pytest.raises(InputError, match="holds 0 worker"):
        plan_workers([{"CPU": 2.0}], "cpu", threads=4)


def test_progress_lines_count_inputs_frames_and_failures() -> None:
    stream = io.StringIO()
    progress = JobProgress(3, interval=1e-9, stream=stream)
    progress.begin()
    progress.update(frames=40, finished=True)
    progress.update(frames=90, finished=True, failed=True)
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"gopose annotate: 2/3 inputs, 90 frames, [\d.]+ frames/s, 1 failed", lines[-1]), lines
    quiet = io.StringIO()
    JobProgress(3, quiet=True, interval=1e-9, stream=quiet).update(frames=5, finished=True)
    assert quiet.getvalue() == ""
