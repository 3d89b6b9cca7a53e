"""``gopose bench faults``: annotate the shared videos many times under injected faults, and check nothing is lost.

Each round runs ``gopose annotate`` (all four formats) on the shared videos into one output folder and injects one
fault: SIGKILL or SIGTERM at a random moment (half of them uniform over the length of a clean run, start-up
included; half uniform over the part of it where outputs are being written), or a full disk (the output folder is
a small tmpfs, remounted before the run to leave a random amount of free space beside the outputs already
there). Then it checks:

* after the faulted run: every file under a final name is complete and valid (COCO JSON loads with one image per
  input frame, JSONL has one record per frame, the CSV parses with a consistent column count, the annotated MP4
  decodes with the input's frame count, a complete manifest lists exactly the present outputs and their sizes);
  SIGTERM and full-disk runs leave no temporary file of ours; the inputs are unchanged;
* after the next ``--skip-existing`` run (no fault, disk enlarged): exit 0, every input's outputs present and valid,
  no temporary file left.

``files lost`` counts files under a final name that were not complete and valid, plus outputs missing after the
recovery run; it must be 0. Runs ``main.py`` in subprocesses: nothing of ``app`` is imported here.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InputError
from eval.shared_data import PROJECT_ROOT, shared_path

HELP = "fault injection: annotate under SIGKILL / SIGTERM / full disk, then check that no file is lost"

OUTPUT_SUFFIXES = (".coco.json", ".jsonl", ".csv", ".annotated.mp4")
MANIFEST_SUFFIX = ".manifest.json"
FAULTS = ("sigkill", "sigterm", "enospc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least

    parser.add_argument("--runs", type=at_least(1), default=50,
                        help="faulted runs, each followed by a recovery run (50)")
    parser.add_argument("--videos", nargs="+", default=[str(shared_path("videos/street_5frames_960x540.mp4")),
                                                        str(shared_path("videos/pedestrians_480x360.mp4"))])
    parser.add_argument("--clip-frames", type=at_least(0), default=60,
                        help="use only the first N frames of each video (stream copy), so runs stay short; 0: all")
    parser.add_argument("--model", default=None, help="checkpoint (default: a random real-time network)")
    parser.add_argument("--long-edge", type=at_least(32), default=128)
    parser.add_argument("--mix", default="sigkill=2,sigterm=2,enospc=1", help="relative weights of the faults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="hang guard per annotate run (seconds)")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")


# ------------------------------------------------------------------------------------------------ checks
def count_frames(video: Path) -> int:
    import av

    with av.open(str(video)) as c:
        return sum(1 for _ in c.decode(video=0))


def is_temp(name: str) -> bool:
    from core.io.files import temp_owner

    return temp_owner(Path(name)) is not None


def check_file(path: Path, frames: int) -> str | None:
    """None when ``path`` is a complete, valid output for an input of ``frames`` frames, else why not."""
    name = path.name
    try:
        if name.endswith(".coco.json"):
            data = json.loads(path.read_text())
            if len(data["images"]) != frames:
                return f"{len(data['images'])} images, expected {frames}"
        elif name.endswith(".jsonl"):
            records = [json.loads(line) for line in path.read_text().splitlines()]
            if [r["frame"] for r in records] != list(range(frames)):
                return f"{len(records)} records, expected frames 0..{frames - 1}"
        elif name.endswith(".csv"):
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            if not rows or rows[0][:2] != ["frame", "timestamp"] or any(len(r) != len(rows[0]) for r in rows):
                return "malformed CSV"
        elif name.endswith(".annotated.mp4"):
            n = count_frames(path)
            if n != frames:
                return f"{n} frames decode, expected {frames}"
        elif name.endswith(MANIFEST_SUFFIX):
            return check_manifest(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a lost file
        return f"{type(exc).__name__}: {exc}"
    return None


def check_manifest(path: Path) -> str | None:
    data = json.loads(path.read_text())
    if data.get("state") != "complete":
        return None  # a journal of an interrupted publication: completed by the next run
    for out, entry in data["outputs"].items():
        target = path.parent / out
        if not target.exists() or target.stat().st_size != entry["size"]:
            return f"complete manifest, but {out} is missing or has another size"
    return None


@dataclass
class Tally:
    faults: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FAULTS})
    mid_write: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FAULTS})
    exit_codes: dict[str, dict[int, int]] = field(default_factory=lambda: {f: {} for f in FAULTS})
    recovered: int = 0
    publications_completed: int = 0
    temps_removed: int = 0
    files_checked: int = 0
    files_lost: int = 0
    temps_after_clean_stop: int = 0
    temps_after_recovery: int = 0
    inputs_modified: int = 0
    recovery_failures: int = 0
    problems: list[str] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)


def check_folder(out: Path, frames: dict[str, int], tally: Tally, when: str, require_all: bool) -> int:
    """Check every final-named file in ``out``; returns the number of temporary files present."""
    temps = 0
    for entry in sorted(out.iterdir()):
        if entry.name.startswith("."):
            temps += is_temp(entry.name)
            continue
        stem = next((s for s in frames if entry.name.startswith(s + ".")), None)
        if stem is None:
            continue
        tally.files_checked += 1
        why = check_file(entry, frames[stem])
        if why is not None:
            tally.files_lost += 1
            tally.problems.append(f"{when}: {entry.name}: {why}")
    if require_all:
        for stem in frames:
            for suffix in (*OUTPUT_SUFFIXES, MANIFEST_SUFFIX):
                if not (out / f"{stem}{suffix}").exists():
                    tally.files_lost += 1
                    tally.problems.append(f"{when}: {stem}{suffix} missing")
    return temps


# ------------------------------------------------------------------------------------------------ runs
class Disk:
    """A tmpfs mounted on ``folder`` whose size can be changed between runs (root only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        self.ok = done.returncode == 0
        self.reason = done.stderr.strip() or f"mount exited {done.returncode}"

    def used(self) -> int:
        st = os.statvfs(self.folder)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def resize(self, size: int) -> None:
        size = max(size, self.used() + 4096)
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.folder)], check=True)

    def close(self) -> None:
        if self.ok:
            subprocess.run(["umount", str(self.folder)], check=False)


def annotate(inputs: list[Path], out: Path, model: Path, long_edge: int, skip: bool) -> list[str]:
    cmd = [sys.executable, str(PROJECT_ROOT / "main.py"), "annotate", *map(str, inputs), "--model", str(model),
           "--out", str(out), "--long-edge", str(long_edge), "--threshold", "1e-3", "--backend", "torch", "--quiet"]
    return cmd + (["--skip-existing"] if skip else [])


def calibrate(cmd: list[str], out: Path, timeout: float) -> tuple[float, float]:
    """A clean run: ``(seconds, seconds until its first temporary file appeared)``."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        if first is None and out.is_dir() and any(is_temp(p.name) for p in out.iterdir()):
            first = time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise RuntimeError("the calibration run did not finish")
        time.sleep(0.01)
    if proc.returncode != 0:
        raise RuntimeError(f"the calibration run failed (exit {proc.returncode}): {' '.join(cmd)}")
    total = time.monotonic() - t0
    return total, first if first is not None else 0.0


def faulted_run(cmd: list[str], fault: str, delay: float, out: Path, timeout: float) -> tuple[int, bool]:
    """Run ``cmd``; for a signal fault send it after ``delay`` s. Returns (exit code, temp files at the fault)."""
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mid = False
    if fault in ("sigkill", "sigterm"):
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            mid = out.is_dir() and any(is_temp(p.name) for p in out.iterdir())
            proc.send_signal(signal.SIGKILL if fault == "sigkill" else signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"annotate did not finish within {timeout:g} s: {' '.join(cmd)}") from None
    if fault == "enospc":
        mid = "No space left" in (err or "")
    return proc.returncode, mid


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, w = part.partition("=")
        if name.strip() not in FAULTS:
            raise InputError(f"unknown fault {name!r} in --mix; choose from {', '.join(FAULTS)}")
        try:
            out[name.strip()] = float(w or 1)
        except ValueError:
            raise InputError(f"--mix {text!r}: the weight of {name.strip()} must be a number, got {w!r}") from None
        if not out[name.strip()] >= 0:
            raise InputError(f"--mix {text!r}: the weight of {name.strip()} must be >= 0, got {w}")
    if not sum(out.values()) > 0:
        raise InputError(f"--mix {text!r}: at least one fault needs a weight > 0")
    return out


def clip_video(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src``, stream-copied (no re-encoding), index first."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        n = 0
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            if n == frames:
                break
            packet.stream = target
            out.mux(packet)
            n += 1
    return dst


def prepare_inputs(videos: list[str], frames: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [clip_video(v, folder / v.name, frames) if frames else v for v in map(Path, videos)]


def run(args: argparse.Namespace) -> int:
    import hashlib
    import shutil

    rng = random.Random(args.seed)
    weights = _weights(args.mix)
    work = Path(args.work or tempfile.mkdtemp(prefix="gopose-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(args.videos, args.clip_frames, work / "inputs")
    frames = {p.stem: count_frames(p) for p in inputs}
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs}
    model = Path(args.model) if args.model else work / "model.pt"
    if not args.model:
        subprocess.run([sys.executable, str(PROJECT_ROOT / "main.py"), "models", "init", "--arch", "realtime",
                        "--spec", "coco", "--out", str(model)], cwd=PROJECT_ROOT, check=True, capture_output=True)
    disk = Disk(work / "disk")
    if not disk.ok:
        print(f"note: no full-disk faults: cannot mount a tmpfs here ({disk.reason})")
        weights.pop("enospc", None)
    folders = {"signal": work / "out", "enospc": disk.folder}
    try:
        if not sum(weights.values()) > 0:
            raise InputError(f"--mix {args.mix!r}: only full-disk faults, and no tmpfs can be mounted here")
        clean, writing = calibrate(annotate(inputs, work / "calibration", model, args.long_edge, skip=False),
                                   work / "calibration", args.timeout)
        output_bytes = sum(p.stat().st_size for p in (work / "calibration").iterdir())
        tally = Tally()
        for i in range(args.runs):
            fault = rng.choices(list(weights), weights=list(weights.values()))[0]
            out = folders["enospc" if fault == "enospc" else "signal"]
            if fault == "enospc":
                disk.resize(disk.used() + rng.randint(8 << 10, int(output_bytes * 1.1)))
            delay = rng.uniform(0.0, 1.1 * clean) if rng.random() < 0.5 else rng.uniform(writing, clean)
            t = time.monotonic()
            code, mid = faulted_run(annotate(inputs, out, model, args.long_edge, skip=False), fault, delay, out,
                                    args.timeout)
            tally.run_seconds.append(time.monotonic() - t)
            tally.faults[fault] += 1
            tally.mid_write[fault] += mid
            tally.exit_codes[fault][code] = tally.exit_codes[fault].get(code, 0) + 1
            out.mkdir(parents=True, exist_ok=True)
            temps = check_folder(out, frames, tally, f"run {i} ({fault}) after the fault", require_all=False)
            if fault != "sigkill" and code in (0, 1, 130, 143):  # the process could clean up (not killed early)
                tally.temps_after_clean_stop += temps
                if temps:
                    tally.problems.append(f"run {i} ({fault}, exit {code}) left {temps} temporary file(s)")
            if fault == "enospc":
                disk.resize(64 << 20)
            done = subprocess.run(annotate(inputs, out, model, args.long_edge, skip=True), cwd=PROJECT_ROOT,
                                  capture_output=True, text=True, timeout=args.timeout)
            lost_before = tally.files_lost
            temps = check_folder(out, frames, tally, f"run {i} ({fault}) after recovery", require_all=True)
            tally.temps_after_recovery += temps
            ok = done.returncode == 0 and temps == 0 and tally.files_lost == lost_before
            tally.recovered += ok
            fixed = re.search(r"finished the outputs of (\d+) input\(s\).*removed (\d+) temporary", done.stderr)
            if fixed:
                tally.publications_completed += int(fixed[1])
                tally.temps_removed += int(fixed[2])
            if done.returncode != 0:
                tally.recovery_failures += 1
                tally.problems.append(f"run {i} recovery exited {done.returncode}: {done.stderr.strip()[-300:]}")
            tally.inputs_modified += sum(hashlib.sha256(p.read_bytes()).hexdigest() != d for p, d in digests.items())
            when = f"at {delay:5.2f}s" if fault != "enospc" else "        "
            print(f"run {i + 1:3d}/{args.runs} {fault:7s} {when} exit {code:4d} "
                  f"{'mid-write' if mid else '         '} -> recovered {'yes' if ok else 'NO'}", flush=True)
    finally:
        disk.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    _report(tally, args, clean, writing, len(inputs), sum(frames.values()))
    return 0 if tally.files_lost == 0 and tally.recovered == args.runs and not tally.inputs_modified else 1


def _report(t: Tally, args: argparse.Namespace, clean: float, writing: float, n_inputs: int, n_frames: int) -> None:
    def codes(fault: str) -> str:
        return ", ".join(f"{c}: {n}" for c, n in sorted(t.exit_codes[fault].items())) or "-"

    print()
    print(f"inputs: {n_inputs} videos, {n_frames} frames; a clean run takes {clean:.1f} s (outputs from "
          f"{writing:.1f} s on); median faulted run {statistics.median(t.run_seconds):.1f} s")
    print("| fault | injected | while outputs were being written (full disk: the run failed) | exit codes |")
    print("|---|---|---|---|")
    for fault in FAULTS:
        print(f"| {fault} | {t.faults[fault]} | {t.mid_write[fault]} | {codes(fault)} |")
    print()
    print("| check | result |")
    print("|---|---|")
    print(f"| faults injected | {sum(t.faults.values())} |")
    print(f"| runs recovered (next `--skip-existing` run: exit 0, all outputs valid, no temporary file) | "
          f"{t.recovered} / {args.runs} |")
    print(f"| interrupted publications completed by the next run | {t.publications_completed} |")
    print(f"| temporary files of killed runs removed by the next run | {t.temps_removed} |")
    print(f"| files checked (after each faulted run and each recovery run) | {t.files_checked} |")
    print(f"| files lost (invalid under a final name, or missing after recovery) | {t.files_lost} |")
    print(f"| temporary files left by SIGTERM / full-disk runs | {t.temps_after_clean_stop} |")
    print(f"| temporary files left after recovery | {t.temps_after_recovery} |")
    print(f"| inputs modified | {t.inputs_modified} |")
    for problem in t.problems[:20]:
        print(f"problem: {problem}")
    print(json.dumps({"bench": "faults", "runs": args.runs, "faults": t.faults, "mid_write": t.mid_write,
                      "exit_codes": {f: {str(k): v for k, v in c.items()} for f, c in t.exit_codes.items()},
                      "recovered": t.recovered, "publications_completed": t.publications_completed,
                      "temps_removed": t.temps_removed, "files_checked": t.files_checked, "files_lost": t.files_lost,
                      "temps_after_clean_stop": t.temps_after_clean_stop,
                      "temps_after_recovery": t.temps_after_recovery, "inputs_modified": t.inputs_modified,
                      "clean_run_s": round(clean, 2), "seed": args.seed}))
