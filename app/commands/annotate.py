"""``gopose annotate INPUT...``: pose annotations of videos as COCO JSON, JSON lines, CSV and annotated video.

Nothing is lost: an output never replaces an input, an input's outputs appear together or not at all (journalled
in ``OUT/<stem>.manifest.json``), a run stopped by Ctrl-C or SIGTERM leaves no partial file, and what a killed
run left (unfinished renames, temporary files) is completed or removed by the next run into the same folder.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from app.commands.options import at_least, check_output_folder, fraction, long_edge, seconds
from core.errors import InputError

HELP = "annotate videos (files, folders, URLs): COCO JSON, JSONL, CSV and an annotated video per input"
LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ option value types
def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"choose auto, cpu, cuda or cuda:N, got {text!r}")


def _backends() -> tuple[str, ...]:
    from models.backends import CHOICES

    return CHOICES


def _formats(text: str) -> list[str]:
    from app.sinks import parse_formats

    try:
        return parse_formats(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ray_address(text: str) -> str:
    from app.ray_annotate import parse_address  # imports no Ray

    try:
        return parse_address(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (every video inside; a folder of images is one sequence) or URLs")
    parser.add_argument("--model", default=None, metavar="NAME|FILE",
                        help="installed model name or checkpoint file (default: the default model, "
                             "see `gopose models default`)")
    parser.add_argument("--arch", default=None, help="architecture of an authors' checkpoint (e.g. hourglass104)")
    parser.add_argument("--spec", default=None, choices=["coco", "crowdpose"],
                        help="require a model of this keypoint spec (refuse a checkpoint for another one)")
    parser.add_argument("--out", default="annotations", metavar="DIR", help="output folder (default: ./annotations)")
    parser.add_argument("--formats", default="coco,jsonl,csv,video", type=_formats,
                        help="comma-separated subset of coco,jsonl,csv,video (default: all four)")
    parser.add_argument("--device", default="auto", type=_device,
                        help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="AMP precision on CUDA (default auto = fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--threads", type=at_least(1), default=None,
                        help="CPU threads for the network (default: all CPUs but one; 1 per Ray worker)")
    parser.add_argument("--backend", default="auto", choices=_backends(),
                        help="network runtime: torch, onnx, openvino, onnx-int8, openvino-int8 (CPU); auto (default): "
                             "the fastest fp32 one, measured once per machine and model")
    parser.add_argument("--long-edge", type=long_edge, default=None,
                        help="frame long edge on the network input, 32 to 4096 (default: the model's own, from its "
                             "codec)")
    parser.add_argument("--flip", action="store_true", help="flip test (better, about 2x slower)")
    parser.add_argument("--threshold", type=fraction, default=None, help="decoder keypoint threshold, in (0, 1]")
    parser.add_argument("--batch-size", type=at_least(1), default=None,
                        help="frames per network call (default: 8 on a GPU, 1 on the CPU)")
    parser.add_argument("--no-track", action="store_true", help="no person ids (track_id = -1) and no smoothing")
    parser.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                        help="One-Euro smoothing of tracked keypoints (default on)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip inputs whose complete outputs exist already (per their manifest)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="exit 0 even when an input is damaged or truncated and frames are missing")
    parser.add_argument("--shard", default=None, type=_shard, metavar="I/N",
                        help="process only the I-th (1-based) of N interleaved slices of the inputs")
    parser.add_argument("--ray", nargs="?", const="local", default=None, type=_ray_address, metavar="ADDRESS",
                        help="annotate on Ray workers (pip install 'gopose[ray]'): alone, a local Ray on this "
                             "machine; auto, ray://HOST:PORT or HOST:PORT join a cluster (see docs/annotate.md)")
    parser.add_argument("--ray-workers", type=at_least(1), default=None, metavar="N",
                        help="Ray workers (default: one per GPU of the cluster, else its CPUs / --threads)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--progress-interval", type=seconds, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log): one progress line per this many seconds (30)")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``; I is 1-based."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 1/4), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise InputError(f"--shard {text}: need 1 <= I <= N")
    return i, n


# ------------------------------------------------------------------------------------------------ inputs
def scan_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """``(inputs, notes)``: files and URLs as given; a folder becomes every video inside (sorted), or itself
    when it holds images (one sequence) or nothing (it then fails with a clear message). Our own annotated
    videos (``*.annotated.mp4``) are never inputs; ``notes`` says what was left out. Missing paths are kept, so
    they fail with a clear message like any other bad input."""
    from app.exports import is_own_output
    from app.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_url

    out: list[str] = []
    notes: list[str] = []
    for item in items:
        path = Path(item)
        if is_url(item) or not path.is_dir():
            if not is_url(item) and is_own_output(item):
                notes.append(f"skipping {item}: it is an annotated video written by gopose")
            else:
                out.append(item)
            continue
        entries = sorted(_visible(path))
        videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        own = [p for p in videos if is_own_output(p)]
        videos = [p for p in videos if not is_own_output(p)]
        if own:
            notes.append(f"ignored {len(own)} annotated video(s) written by gopose in {item} (*.annotated.mp4)")
        if videos:
            out.extend(str(p) for p in videos)
        elif any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries) or not own:
            out.append(item)  # an image sequence, or an empty folder that fails with its own message
    return _once(out, notes), notes


def _once(items: list[str], notes: list[str]) -> list[str]:
    """``items`` with each input once, the first spelling kept: ``a.mp4``, ``./a.mp4`` and ``/abs/a.mp4`` are one
    path (before: annotated twice, into ``a.*`` and ``a-2.*``); each one left out is noted. Links stay inputs of
    their own (a folder of links to camera files names each)."""
    from app.sources import is_url

    first: dict[str, str] = {}
    for item in items:
        key = item if is_url(item) else os.path.abspath(item)
        if key in first:
            if item != first[key]:
                notes.append(f"skipping {item}: it is {first[key]}, listed before")
            continue
        first[key] = item
    return list(first.values())


def expand_inputs(items: list[str]) -> list[str]:
    """The inputs of :func:`scan_inputs`, without the notes."""
    return scan_inputs(items)[0]


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` but hidden files (macOS's ``._clip.mp4`` metadata, dot files): never inputs."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def _empty_folder(item: str) -> bool:
    from app.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    path = Path(item)
    return path.is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES for p in _visible(path))


def _planned_names(stems: list[str]) -> set[str]:
    """Every file name the inputs of this run may write (all formats, manifests): the scope of recovery."""
    from app.manifest import MANIFEST_SUFFIX
    from app.sinks import FORMATS

    return {f"{stem}{suffix}" for stem in stems for suffix in [MANIFEST_SUFFIX, *(s for s, _ in FORMATS.values())]}


# ------------------------------------------------------------------------------------------------ run
def default_threads(args: argparse.Namespace) -> int | None:
    """Network threads without ``--threads``: all CPUs but one; None on Ray, whose workers choose their own (1)."""
    from app.cli import all_cpus_but_one

    return None if args.ray is not None else all_cpus_but_one()


def run(args: argparse.Namespace) -> int:
    from app.engine import EngineConfig, load_estimator
    from app.exports import unique_stems
    from app.model_store import choose_model

    if args.ray is not None:
        from app.ray_annotate import require_ray

        require_ray()  # before anything else: one line naming the extra to install
    elif args.ray_workers is not None:
        raise InputError("--ray-workers needs --ray")
    out_dir = Path(args.out)
    check_output_folder("--out", out_dir)
    inputs, notes = scan_inputs(args.inputs)
    for note in notes:
        print(f"gopose annotate: {note}", file=sys.stderr)
    stems = unique_stems(inputs, out_dir)  # named from the whole list, before the split: every shard agrees
    plan = list(zip(inputs, stems))
    if args.shard is not None:
        i, n = args.shard
        plan = plan[i - 1::n]
    choice = choose_model(args.model)
    print(f"gopose annotate: model {choice.describe()}", file=sys.stderr)
    config = EngineConfig(device=args.device, precision=args.precision, threads=args.threads,
                          long_edge=args.long_edge, flip=args.flip, threshold=args.threshold, backend=args.backend,
                          calibration_videos=tuple(str(p) for p, _ in plan[:1] if Path(str(p)).is_file()))
    if args.ray is not None:  # the same plan, inputs and engine, annotated by Ray workers
        from app.ray_annotate import annotate_on_ray

        recover_outputs(out_dir, plan)
        return annotate_on_ray(plan, inputs, out_dir, choice, config, args)
    estimator = load_estimator(str(choice.path), config, arch=args.arch or choice.arch, spec=args.spec)
    estimator.name = choice.name
    recover_outputs(out_dir, plan)
    return _annotate_all(plan, inputs, out_dir, estimator, args)


def recover_outputs(out_dir: Path, plan: list[tuple[str, str]]) -> None:
    """Finish what killed runs left for this plan's names in ``out_dir`` (``app.manifest.recover``); one line."""
    from app.manifest import recover

    fixed = recover(out_dir, _planned_names([stem for _, stem in plan]))
    if fixed:
        print(f"gopose annotate: finished the outputs of {len(fixed.completed)} input(s) interrupted while "
              f"publishing, removed {len(fixed.removed)} temporary file(s) of interrupted runs in {out_dir}",
              file=sys.stderr)


def _annotate_all(plan: list[tuple[str, str]], inputs: list[str], out_dir: Path, estimator,
                  args: argparse.Namespace) -> int:
    outcomes = []
    t0 = time.monotonic()
    for item, stem in plan:
        res, error = annotate_one(item, stem, inputs, out_dir, estimator, args)
        report_outcome(item, res, error)
        outcomes.append((item, res, error))
    summary = summarize(outcomes, time.monotonic() - t0, out_dir, estimator.name, str(estimator.device),
                        estimator.backend)
    print(json.dumps(summary))
    return exit_code(summary, args.allow_partial)


def report_outcome(item: str, res, error: str | None) -> None:
    """One input's line: what it produced on stdout, or its error on stderr."""
    if error is not None:
        print(f"gopose annotate: {item}: {error}", file=sys.stderr)
    else:
        print(_printable(f"{item}: {_describe(res)} -> {', '.join(str(p) for p in res.outputs.values())}"))
        if res.removed:
            names = ", ".join(str(p) for p in res.removed)
            print(_printable(f"gopose annotate: {item}: removed {names}, written by an earlier run of this input "
                             f"(not among this run's --formats: they would not match its outputs)"), file=sys.stderr)


def _printable(line: str) -> str:
    """``line`` encodable by stdout: a file name in another encoding, which Python reads with
    surrogate escapes (``caf\\udce9.mp4``), would stop the run with ``UnicodeEncodeError`` under a UTF-8 locale
    other than C; its odd bytes show escaped instead, as on stderr."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return line.encode(encoding, "backslashreplace").decode(encoding)


def summarize(outcomes: list[tuple[str, object, str | None]], seconds: float, out_dir: Path, model: str,
              device: str, backend: str) -> dict:
    """The final JSON summary of ``(input, result, error)`` outcomes in plan order (also of a Ray run)."""
    results = [res for _, res, error in outcomes if error is None]
    failures = [{"input": item, "error": error} for item, _, error in outcomes if error is not None]
    partial = [{"input": item, "frames": res.frames, "frames_expected": res.frames_expected,
                "frames_lost": res.frames_lost} for item, res, error in outcomes if error is None and res.partial]
    frames = sum(r.frames for r in results if not r.skipped)
    busy = sum(r.seconds for r in results if not r.skipped)
    return {"inputs": len(outcomes), "done": len(results), "skipped": sum(r.skipped for r in results),
            "failures": len(failures), "partial": len(partial), "frames": frames,
            "frames_lost": sum(r.frames_lost for r in results), "fps": round(frames / busy, 2) if busy > 0 else 0.0,
            "seconds": round(seconds, 2), "out": str(out_dir), "model": model, "device": device,
            "backend": backend, "failed": failures, "partial_inputs": partial}


def exit_code(summary: dict, allow_partial: bool) -> int:
    """1 when an input failed, or (unless ``allow_partial``) lost frames; else 0."""
    return 1 if summary["failures"] or (summary["partial"] and not allow_partial) else 0


def annotate_one(item: str, stem: str, inputs: list[str], out_dir: Path, estimator, args: argparse.Namespace,
                  report=None):
    """``(result, None)`` or ``(None, one-line error)`` for one input. ``report(done, total)``, when given, is
    told the frames done (a Ray worker reports to its driver)."""
    from app.exports import export_video_annotations
    from app.progress import progress_for

    if _empty_folder(item):
        return None, f"folder {item} holds no videos or images"
    bar = None

    def on_open(source) -> None:
        nonlocal bar
        if not args.quiet:
            bar = progress_for(stem, interval=args.progress_interval)

    def progress(done: int, total: int | None) -> None:
        if bar is not None:
            bar.update_to(done, total)
        if report is not None:
            report(done, total)

    try:
        res = export_video_annotations(item, out_dir, estimator, formats=args.formats, track=not args.no_track,
                                       smooth=args.smooth and not args.no_track, skip_existing=args.skip_existing,
                                       batch_size=args.batch_size, stem=stem, manifest=True, protect=inputs,
                                       progress=progress, on_open=on_open)
    except InputError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken input must not stop the others
        LOG.debug("input %s failed", item, exc_info=True)
        return None, f"failed: {type(exc).__name__}: {exc}"
    finally:
        if bar is not None:
            bar.close()
    return res, None


def _describe(res) -> str:
    if res.skipped:
        state = "skipped (complete outputs exist)"
    else:
        state = f"{res.frames} frames, {res.fps:.1f} frames/s"
    if res.partial:
        state += (f"; PARTIAL: {res.frames_lost} of {res.frames_expected or res.frames + res.frames_lost} "
                  f"frames could not be decoded (damaged or truncated input)")
    if res.frames_damaged:
        state += f"; {res.frames_damaged} frames decoded with errors"
    return state
