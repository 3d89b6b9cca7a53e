"""``gopose bench tracking``: identity quality of the tracker on a video, the current one against the first
release's matching (``Tracker.legacy``), both on the same detections.

The model runs once over the video (every frame, the exhaustive pipeline without tracking); then each tracker
runs over the stored people, frame by frame as in the pipeline. There are no ground-truth tracks, so identity
errors are counted by two proxies on the people's keypoint boxes (centre ``c``, size ``s`` = the larger side,
at least 1 px; ``r`` = ``--radius``, ``k`` = ``--gap``):

* **jump**: an id shown in frames f-1 and f whose centre moves by more than ``r`` x its size (the larger of
  its two boxes) *and* lands nearer to the f-1 centre of another id shown in f-1 than to its own: the id
  went over to another person (a swap, or a person taking a fragment's id).
* **fragmentation**: an id last shown in frame e (before the video's last frame) and an id first shown in a
  frame of (e, e + k], its first centre within ``r`` x the size of the ended id's last box: the person most
  likely continued under a new id. Each ended id and each new id is counted at most once (nearest first).

``id_switches`` = jumps + fragmentations. Both are proxies: two people swapping ids while overlapping and
then walking apart are not seen (no jump is large at any one frame); a person leaving the view where another
enters within ``k`` frames counts as a fragmentation. Track length = frames in which an id is shown. The
tracker's cost is timed too (median ms per frame); detection time is not reported (``gopose bench pipeline``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HELP = "tracking: id switches (jumps + fragmentations), track counts and lengths, current vs legacy matching"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.options import at_least, fraction, positive
    from eval.shared_data import shared_path
    from models.backends import CHOICES

    parser.add_argument("--video", default=str(shared_path("videos/pedestrians_480x360.mp4")))
    parser.add_argument("--model", default=None, help="checkpoint file or installed model (default: the installed one)")
    parser.add_argument("--arch", default=None, help="architecture of an authors' checkpoint")
    parser.add_argument("--long-edge", type=at_least(32), default=None, help="network long edge (default: the model's)")
    parser.add_argument("--threshold", type=fraction, default=None,
                        help="decoder threshold, in (0, 1] (default: the model's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=at_least(1), default=None)
    parser.add_argument("--backend", default="auto", choices=CHOICES, help="network runtime (default auto)")
    parser.add_argument("--batch-size", type=at_least(1), default=None)
    parser.add_argument("--frames", type=at_least(1), default=None, help="limit the frames (default: the whole video)")
    parser.add_argument("--min-score", type=float, default=0.0, help="the current tracker's person-score gate")
    parser.add_argument("--gap", type=at_least(1), default=10, help="frames k of the fragmentation window")
    parser.add_argument("--radius", type=positive, default=0.5, help="distance r, in box sizes, of jumps and fragments")
    parser.add_argument("--no-legacy", action="store_true", help="skip the first release's matching")


def _centres_sizes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(P, 2)`` and sizes ``(P,)`` (larger side, at least 1) of ``x0, y0, x1, y1`` boxes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = np.maximum(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), 1.0)
    return centres, sizes


def count_jumps(frames: list[tuple[np.ndarray, np.ndarray]], radius: float = 0.5) -> int:
    """Jumps (see the module docstring) in ``frames``: per frame ``(track_ids (P,), boxes (P, 4))``."""
    jumps = 0
    for (ids0, boxes0), (ids1, boxes1) in zip(frames, frames[1:]):
        c0, s0 = _centres_sizes(boxes0)
        c1, s1 = _centres_sizes(boxes1)
        ids0, ids1 = np.asarray(ids0), np.asarray(ids1)
        for i in np.flatnonzero(ids1 >= 0):
            prev = np.flatnonzero(ids0 == ids1[i])
            if len(prev) == 0:
                continue
            j = prev[0]
            move = np.linalg.norm(c1[i] - c0[j])
            if move <= radius * max(s0[j], s1[i]):
                continue
            others = (ids0 >= 0) & (ids0 != ids1[i])
            if others.any() and np.linalg.norm(c0[others] - c1[i], axis=1).min() < move:
                jumps += 1
    return jumps


def _appearances(frames: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, list[tuple[int, np.ndarray, float]]]:
    """id -> [(frame, centre, size), ...] in frame order."""
    shown: dict[int, list[tuple[int, np.ndarray, float]]] = {}
    for f, (ids, boxes) in enumerate(frames):
        centres, sizes = _centres_sizes(boxes)
        for i, tid in enumerate(np.asarray(ids).tolist()):
            if tid >= 0:
                shown.setdefault(tid, []).append((f, centres[i], float(sizes[i])))
    return shown


def count_fragmentations(frames: list[tuple[np.ndarray, np.ndarray]], gap: int = 10, radius: float = 0.5) -> int:
    """Fragmentations (see the module docstring) in ``frames``: per frame ``(track_ids (P,), boxes (P, 4))``."""
    shown = _appearances(frames)
    last_frame = len(frames) - 1
    ends = sorted((v[-1][0], tid) for tid, v in shown.items() if v[-1][0] < last_frame)
    starts = {tid: v[0] for tid, v in shown.items() if v[0][0] > 0}
    used: set[int] = set()
    count = 0
    for e, a in ends:
        _, ca, sa = shown[a][-1]
        best: tuple[float, int] | None = None
        for b, (s, cb, _) in starts.items():
            if b == a or b in used or not e < s <= e + gap:
                continue
            d = float(np.linalg.norm(cb - ca))
            if d <= radius * sa and (best is None or d < best[0]):
                best = (d, b)
        if best is not None:
            used.add(best[1])
            count += 1
    return count


def track_metrics(frames: list[tuple[np.ndarray, np.ndarray]], gap: int = 10, radius: float = 0.5) -> dict:
    """Track counts, lengths (frames shown) and the id-switch proxies of tracked ``frames``."""
    lengths = [len(v) for v in _appearances(frames).values()]
    people = sum(len(ids) for ids, _ in frames)
    tracked = sum(int((np.asarray(ids) >= 0).sum()) for ids, _ in frames)
    jumps = count_jumps(frames, radius)
    fragmentations = count_fragmentations(frames, gap, radius)
    return {"ids": len(lengths), "people": people, "tracked_share": round(tracked / max(people, 1), 4),
            "track_length_mean": round(float(np.mean(lengths)), 2) if lengths else 0.0,
            "track_length_median": float(np.median(lengths)) if lengths else 0.0,
            "jumps": jumps, "fragmentations": fragmentations, "id_switches": jumps + fragmentations}


def _detect(args) -> tuple[list, str, str, object]:
    """The people of every frame (``Poses`` without ids), the model's name, the device and the keypoint spec."""
    from app.engine import EngineConfig, load_estimator
    from app.model_store import resolve_model
    from app.pipeline import Pipeline
    from app.sources import open_source

    path, stored_arch = resolve_model(args.model)
    cfg = EngineConfig(device=args.device, threads=args.threads, long_edge=args.long_edge, backend=args.backend)
    est = load_estimator(path, cfg, arch=args.arch or stored_arch)  # the decoder settings of the model's codec
    if args.threshold is not None:
        est.update_decoder(threshold=args.threshold)
    poses: list = []
    with open_source(args.video) as src:
        Pipeline(src, est, batch_size=args.batch_size, max_frames=args.frames,
                 on_result=lambda frame, result: poses.append(result.poses)).run()
    return poses, Path(path).name, str(est.device), est.contract.spec


def _track(tracker, poses: list) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Run ``tracker`` over ``poses``: per frame (ids, boxes), and the median ms of one update."""
    frames, times = [], []
    for p in poses:
        t0 = time.perf_counter()
        out = tracker.update(p)
        times.append(time.perf_counter() - t0)
        frames.append((out.track_ids, out.boxes()))
    return frames, float(np.median(times) * 1e3) if times else 0.0


def _evaluate(tracker, poses: list, args) -> dict:
    frames, ms = _track(tracker, poses)
    result = track_metrics(frames, args.gap, args.radius)
    result.update({"tracks_created": tracker.tracks_created, "tracks_confirmed": tracker.tracks_confirmed,
                   "update_ms_median": round(ms, 3)})
    return result


ROWS = (("tracks created", "tracks_created"), ("confirmed tracks (ids)", "tracks_confirmed"),
        ("people tracked (share)", "tracked_share"), ("track length mean (frames)", "track_length_mean"),
        ("track length median (frames)", "track_length_median"), ("jumps", "jumps"),
        ("fragmentations", "fragmentations"), ("ID switches (jumps + fragm.)", "id_switches"),
        ("update median (ms/frame)", "update_ms_median"))


def run(args: argparse.Namespace) -> int:
    from app.tracking import Tracker

    poses, model_name, device, spec = _detect(args)
    current = _evaluate(Tracker(spec, min_score=args.min_score), poses, args)
    legacy = None if args.no_legacy else _evaluate(Tracker.legacy(spec), poses, args)
    print(f"tracking benchmark: {Path(args.video).name}, {model_name}, "
          f"long edge {args.long_edge or 'the model default'}, {device}, "
          f"{len(poses)} frames, {sum(len(p) for p in poses)} people; jump/fragment radius {args.radius} box "
          f"sizes, fragment gap {args.gap} frames")
    width = max(len(name) for name, _ in ROWS)
    print(f"  {'':<{width}}  {'legacy':>10}  {'current':>10}")
    for name, key in ROWS:
        before = "-" if legacy is None else legacy[key]
        print(f"  {name:<{width}}  {before!s:>10}  {current[key]!s:>10}")
    result = {"bench": "tracking", "video": Path(args.video).name, "model": model_name, "long_edge": args.long_edge,
              "device": device, "frames": len(poses), "gap": args.gap, "radius": args.radius, **current}
    if legacy is not None:
        result["legacy"] = legacy
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # pragma: no cover - ``gopose bench tracking`` (bad input: one line, exit 2)
    import sys

    from app.cli import main

    raise SystemExit(main(["bench", "tracking", *sys.argv[1:]]))
