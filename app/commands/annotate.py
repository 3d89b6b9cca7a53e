"""``gopose annotate INPUT...``: pose annotations of videos as COCO JSON, JSON lines, CSV and annotated video."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from core.errors import InputError

HELP = "annotate videos (files, folders, URLs): COCO JSON, JSONL, CSV and an annotated video per input"
LOG = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (every video inside; a folder of images is one sequence) or URLs")
    parser.add_argument("--model", default=None, metavar="NAME|FILE",
                        help="installed model name or checkpoint file (default: the installed model)")
    parser.add_argument("--arch", default=None, help="architecture of an authors' checkpoint (e.g. hourglass104)")
    parser.add_argument("--spec", default=None, choices=["coco", "crowdpose"],
                        help="require a model of this keypoint spec (refuse a checkpoint for another one)")
    parser.add_argument("--out", default="annotations", metavar="DIR", help="output folder (default: ./annotations)")
    parser.add_argument("--formats", default="coco,jsonl,csv,video",
                        help="comma-separated subset of coco,jsonl,csv,video (default: all four)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="AMP precision on CUDA (default auto = fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the network")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"],
                        help="auto: ONNX Runtime on CPU when installed and measured faster (default), else PyTorch")
    parser.add_argument("--long-edge", type=int, default=512, help="frame long edge on the network input (512)")
    parser.add_argument("--flip", action="store_true", help="flip test (better, about 2x slower)")
    parser.add_argument("--threshold", type=float, default=None, help="decoder keypoint threshold")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="frames per network call (default: 8 on a GPU, 1 on the CPU)")
    parser.add_argument("--no-track", action="store_true", help="no person ids (track_id = -1) and no smoothing")
    parser.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                        help="One-Euro smoothing of tracked keypoints (default on)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip inputs whose outputs all exist already")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="process only the I-th (1-based) of N interleaved slices of the inputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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


def expand_inputs(items: list[str]) -> list[str]:
    """Files and URLs as given; a folder becomes every video inside (sorted), or itself when it only holds
    images. Missing paths are kept, so they fail with a clear message like any other bad input."""
    from app.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_url

    out: list[str] = []
    for item in items:
        path = Path(item)
        if is_url(item) or not path.is_dir():
            out.append(item)
            continue
        videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if videos:
            out.extend(str(p) for p in videos)
        elif any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            out.append(item)
        else:
            out.append(item)  # fails later with "no images/videos in folder"
    return list(dict.fromkeys(out))


def run(args: argparse.Namespace) -> int:
    from app.engine import EngineConfig, load_estimator
    from app.exports import export_video_annotations, output_stem
    from app.sinks import parse_formats
    from core.decoder import DecoderConfig

    formats = parse_formats(args.formats)
    shard = parse_shard(args.shard)
    inputs = expand_inputs(args.inputs)
    if shard is not None:
        i, n = shard
        inputs = inputs[i - 1::n]
    out_dir = Path(args.out)
    _check_writable(out_dir)
    decoder = DecoderConfig() if args.threshold is None else DecoderConfig(threshold=args.threshold)
    config = EngineConfig(device=args.device, precision=args.precision, threads=args.threads,
                          long_edge=args.long_edge, flip=args.flip, decoder=decoder, backend=args.backend)
    estimator = load_estimator(args.model, config, arch=args.arch, spec=args.spec)
    stems: dict[str, str] = {}
    results, failures = [], []
    t0 = time.monotonic()
    for item in inputs:
        stem = _unique_stem(output_stem(item), stems, item)
        bar = None if args.quiet else _progress_bar(stem)
        try:
            res = export_video_annotations(item, out_dir, estimator, formats=formats, track=not args.no_track,
                                           smooth=args.smooth and not args.no_track, skip_existing=args.skip_existing,
                                           batch_size=args.batch_size, stem=stem,
                                           progress=None if bar is None else bar.update_to)
        except InputError as exc:
            failures.append({"input": item, "error": str(exc)})
            print(f"gopose annotate: {item}: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # noqa: BLE001 - one broken input must not stop the others
            LOG.debug("input %s failed", item, exc_info=True)
            failures.append({"input": item, "error": f"{type(exc).__name__}: {exc}"})
            print(f"gopose annotate: {item}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        finally:
            if bar is not None:
                bar.close()
        results.append(res)
        state = "skipped (outputs exist)" if res.skipped else f"{res.frames} frames, {res.fps:.1f} frames/s"
        if res.decode_errors:
            state += f", {res.decode_errors} frames/packets undecodable"
        print(f"{item}: {state} -> {', '.join(str(p) for p in res.outputs.values())}")
    seconds = time.monotonic() - t0
    frames = sum(r.frames for r in results)
    busy = sum(r.seconds for r in results if not r.skipped)
    summary = {"inputs": len(inputs), "done": len(results), "skipped": sum(r.skipped for r in results),
               "failures": len(failures), "frames": frames, "fps": round(frames / busy, 2) if busy > 0 else 0.0,
               "seconds": round(seconds, 2), "out": str(out_dir), "model": estimator.name,
               "device": str(estimator.device), "backend": estimator.backend,
               "decode_errors": sum(r.decode_errors for r in results), "failed": failures}
    print(json.dumps(summary))
    return 1 if failures else 0


def _unique_stem(stem: str, seen: dict[str, str], item: str) -> str:
    """Two inputs with the same name (a/clip.mp4, b/clip.mp4) get clip and clip-2."""
    base, k = stem, 2
    while stem in seen and seen[stem] != item:
        stem = f"{base}-{k}"
        k += 1
    seen[stem] = item
    return stem


def _check_writable(folder: Path) -> None:
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None


class _Bar:
    """A tqdm bar fed from the pipeline's sink thread."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=desc, unit="frame", dynamic_ncols=True, file=sys.stderr, leave=False)

    def update_to(self, done: int, total: int | None) -> None:
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(desc: str) -> _Bar:
    return _Bar(desc)
