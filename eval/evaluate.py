"""Keypoint AP with the official tools: pycocotools for COCO, faster-coco-eval ``keypoints_crowd`` for CrowdPose.

Both functions take the ground truth as a path, a parsed dict or a ``KeypointDataset`` and the results as a
list of COCO keypoint results (``image_id``, ``category_id``, ``keypoints``, ``score``). The evaluators'
own console chatter is captured and logged at debug level; callers print ``format_metrics_table``.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.errors import InputError
from core.keypoints import COCO as COCO_SPEC
from core.keypoints import CROWDPOSE as CROWDPOSE_SPEC
from core.io.annotations import KeypointDataset, read_json, subset_coco_dict

LOG = logging.getLogger(__name__)

COCO_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
CROWDPOSE_METRICS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")

GroundTruth = str | Path | dict | KeypointDataset


def _gt_dict(gt: GroundTruth, image_ids: Sequence[int] | None) -> tuple[dict[str, Any], str]:
    """The ground truth as a COCO dict (restricted to ``image_ids``) and a name for messages."""
    if isinstance(gt, KeypointDataset):
        raw, name = gt.raw, gt.describe()
    elif isinstance(gt, dict):
        raw, name = gt, "the ground-truth dict"
    else:
        raw, name = read_json(gt, "ground-truth file"), str(gt)
    if not isinstance(raw, dict) or "images" not in raw or "annotations" not in raw:
        raise InputError(f"ground truth {name} must be a COCO object with 'images' and 'annotations'")
    # the evaluators write flags ('ignore') into the annotation dicts: give them copies, numbered in the whole file
    raw = dict(raw, annotations=_completed(raw["annotations"]))
    if image_ids is not None:
        raw = subset_coco_dict(raw, image_ids)
    return raw, name


#: where an annotation copy keeps its id as ``KeypointDataset`` gives it (the file's, else its position in the file):
#: the evaluators get ids 1, 2, ... of their own, since pycocotools takes a match with ground-truth id 0 for none
SOURCE_ID = "gopose_source_id"


def _completed(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the annotations with the evaluators' own ids and the fields they need that a file may leave out,
    filled as ``KeypointDataset`` reads them: ``num_keypoints`` (its labelled keypoints, COCO's definition),
    ``iscrowd`` 0 and ``category_id`` 1 (the person category the results get)."""
    out = []
    for i, a in enumerate(annotations):
        c = dict(a, id=i + 1, **{SOURCE_ID: int(a.get("id", i))})
        if "num_keypoints" not in c:
            c["num_keypoints"] = int(np.count_nonzero(np.asarray(c.get("keypoints") or [], float)[2::3] > 0))
        c.setdefault("iscrowd", 0)
        c.setdefault("category_id", 1)
        out.append(c)
    return out


def _with_boxes(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (completed copies) with a ``bbox`` on every annotation, where the file has none the box of its
    labelled keypoints: pycocotools reads it, and uses it only for a person without labelled keypoints."""
    for a in raw["annotations"]:
        if not a.get("bbox"):
            xyv = np.asarray(a.get("keypoints") or [0, 0, 0], float).reshape(-1, 3)
            xy = xyv[xyv[:, 2] > 0, :2]
            a["bbox"] = [*xy.min(0), *(xy.max(0) - xy.min(0))] if len(xy) else [0.0, 0.0, 0.0, 0.0]
    return raw


def check_ground_truth(gt: GroundTruth, dataset: str) -> None:
    """``InputError`` when ``gt`` lacks what evaluating ``dataset`` needs (a COCO ``area`` on every annotation, a
    CrowdPose ``crowdIndex`` on every image): callers check before they spend time on inference."""
    raw, name = _gt_dict(gt, None)
    if dataset == "crowdpose":
        _require_crowd_index(raw, name)
        _require_boxes(raw, name)
    else:
        _require_area(raw, name)


def _require_area(raw: dict[str, Any], name: str) -> None:
    no_area = next((a[SOURCE_ID] for a in raw["annotations"] if "area" not in a), None)
    if no_area is not None:
        raise InputError(f"ground truth {name}: annotation {no_area} has no 'area' (COCO's OKS needs it)")


def _require_boxes(raw: dict[str, Any], name: str) -> None:
    no_box = next((a[SOURCE_ID] for a in raw["annotations"] if len(a.get("bbox") or []) != 4), None)
    if no_box is not None:
        raise InputError(f"ground truth {name}: annotation {no_box} has no 'bbox' (CrowdPose's OKS scales by it)")


def _require_crowd_index(raw: dict[str, Any], name: str) -> None:
    missing = [img.get("id") for img in raw["images"] if "crowdIndex" not in img]
    if missing:
        raise InputError(f"ground truth {name}: CrowdPose evaluation needs 'crowdIndex' on every image "
                         f"(missing on {len(missing)}, e.g. image {missing[0]})")


def _check_results(results: list[dict], raw: dict[str, Any], name: str, n_keypoints: int) -> list[dict]:
    """Validate results and copy them (the evaluators add fields to the dicts they are given)."""
    if not isinstance(results, list):
        raise InputError(f"results must be a list of COCO keypoint results, got {type(results).__name__}")
    ids = {int(img["id"]) for img in raw["images"]}
    out = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "image_id" not in r or "keypoints" not in r or "score" not in r:
            raise InputError(f"result {i} is not a COCO keypoint result (needs image_id, keypoints, score)")
        if len(r["keypoints"]) != 3 * n_keypoints:
            raise InputError(f"result {i} has {len(r['keypoints']) // 3} keypoints, {name} has {n_keypoints}")
        if int(r["image_id"]) not in ids:
            raise InputError(f"result {i} is for image {r['image_id']}, which is not in {name}")
        c = dict(r)
        c.setdefault("category_id", 1)
        out.append(c)
    return out


def _with_categories(raw: dict[str, Any], keypoint_names: Sequence[str]) -> dict[str, Any]:
    if raw.get("categories"):
        return raw
    out = dict(raw)
    out["categories"] = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(keypoint_names)}]
    return out


def _named(names: Sequence[str], stats: Sequence[float]) -> dict[str, Any]:
    metrics: dict[str, Any] = {n: float(v) for n, v in zip(names, stats)}
    metrics["stats"] = [float(v) for v in stats]
    return metrics


def _no_results(names: Sequence[str], raw: dict[str, Any]) -> dict[str, Any]:
    """The metrics of an empty result list as the evaluators define them: 0 for a group of people the ground truth
    has (all, COCO's medium and large areas, CrowdPose's easy / medium / hard images), -1 (n/a) for one it has none
    of."""
    people = [a for a in raw["annotations"] if _is_person(a)]
    crowd = {int(img["id"]): float(img.get("crowdIndex", 0.0)) for img in raw["images"]}
    has = {"all": bool(people),
           "medium": any(32 ** 2 <= a["area"] <= 96 ** 2 for a in people if "area" in a),
           "large": any(a["area"] >= 96 ** 2 for a in people if "area" in a),
           "easy": any(crowd[int(a["image_id"])] < 0.1 for a in people),
           "crowd_medium": any(0.1 <= crowd[int(a["image_id"])] <= 0.8 for a in people),
           "hard": any(crowd[int(a["image_id"])] > 0.8 for a in people)}
    group = {"APm": "medium", "ARm": "medium", "APl": "large", "ARl": "large", "AP_easy": "easy",
             "AP_medium": "crowd_medium", "AP_hard": "hard"}
    out = _named(names, [0.0 if has[group.get(name, "all")] else -1.0 for name in names])
    out.update(n_images=len(raw["images"]), n_results=0)
    return out


def evaluate_coco(gt: GroundTruth, results: list[dict], image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """pycocotools ``COCOeval(iouType='keypoints')``: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl and
    ``stats`` (the ten numbers in pycocotools' order). ``image_ids`` restricts the evaluation to those images.
    An empty result list scores 0 (-1, n/a, for a size no annotated person has, as pycocotools reports)."""
    return evaluate_coco_with_found(gt, results, image_ids).metrics


def people_found(gt: GroundTruth, results: list[dict], image_ids: Sequence[int] | None = None,
                 oks: float = 0.5) -> list[dict[str, Any]]:
    """Which annotated people the results find: pycocotools' own one-to-one matching at OKS ``oks`` (its 20
    best results per image), counted per size (COCO's area ranges: small < 32², medium < 96², large) and per
    whole (at least ``WHOLE_KEYPOINTS`` labelled keypoints) or partial person. Crowd regions and people without
    keypoints are left out, as COCO's AP leaves them out. Rows ``{size, keypoints, people, found}``; over all
    rows found / people is pycocotools' AR at that OKS (AR50 at 0.5)."""
    return evaluate_coco_with_found(gt, results, image_ids, oks).found


@dataclass
class CocoEvaluation:
    """One pycocotools keypoint evaluation: the metrics, the :func:`people_found` rows and, per annotated person
    (annotation id; crowd regions and people without keypoints left out), whether it was found at the OKS."""

    metrics: dict[str, Any]
    found: list[dict[str, Any]]
    matched: dict[int, bool]


def evaluate_coco_with_found(gt: GroundTruth, results: list[dict], image_ids: Sequence[int] | None = None,
                             oks: float = 0.5) -> CocoEvaluation:
    """:func:`evaluate_coco` and :func:`people_found` from one pycocotools evaluation."""
    raw, name = _gt_dict(gt, image_ids)
    raw = _with_boxes(_with_categories(raw, COCO_SPEC.keypoints))
    _require_area(raw, name)
    dets = _check_results(results, raw, name, _n_keypoints(raw, name))
    people = [a[SOURCE_ID] for a in raw["annotations"] if _is_person(a)]
    if not dets:
        return CocoEvaluation(_no_results(COCO_METRICS, raw), _found_rows(raw, {}),
                              dict.fromkeys(people, False))
    ev = _run_cocoeval(raw, dets)
    metrics = _named(COCO_METRICS, ev.stats)
    metrics.update(n_images=len(raw["images"]), n_results=len(dets))
    matched = _matched_people(ev, oks)
    return CocoEvaluation(metrics, _found_rows(raw, matched), {i: matched.get(i, False) for i in people})


def _run_cocoeval(raw: dict[str, Any], dets: list[dict]):
    """pycocotools' keypoint evaluation of checked ``dets`` on every image of ``raw`` (chatter logged)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        coco_gt = COCO()
        coco_gt.dataset = raw
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iouType="keypoints")
        ev.params.imgIds = sorted(coco_gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    LOG.debug("pycocotools:\n%s", chatter.getvalue())
    return ev


#: people of at least this many labelled keypoints count as whole in :func:`people_found` (the rest are cut off
#: by the frame or occluded)
WHOLE_KEYPOINTS = 12
SIZES = (("small", 32 ** 2), ("medium", 96 ** 2), ("large", float("inf")))


def _matched_people(ev, oks: float) -> dict[int, bool]:
    """Annotation id (``SOURCE_ID``) -> matched at OKS ``oks`` in an evaluated ``COCOeval`` (area range 'all')."""
    t = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - oks)))
    if abs(ev.params.iouThrs[t] - oks) > 1e-9:
        raise InputError(f"OKS {oks} is not one of pycocotools' thresholds {list(ev.params.iouThrs)}")
    matched: dict[int, bool] = {}
    for e in ev.evalImgs:
        if e is not None and e["aRng"] == ev.params.areaRng[0]:
            matched.update({ev.cocoGt.anns[g][SOURCE_ID]: bool(m) for g, m in zip(e["gtIds"], e["gtMatches"][t])})
    return matched


def person_kind(area: float, labelled: int) -> tuple[str, str]:
    """The people-found row of a person: its COCO size range and ``whole`` or ``partial``."""
    return (next(s for s, limit in SIZES if area < limit), "whole" if labelled >= WHOLE_KEYPOINTS else "partial")


def _labelled(annotation: dict[str, Any]) -> int:
    return int((np.asarray(annotation.get("keypoints") or [0, 0, 0]).reshape(-1, 3)[:, 2] > 0).sum())


def _is_person(annotation: dict[str, Any]) -> bool:
    """An annotated person that COCO's keypoint AP counts: not a crowd region, at least one keypoint."""
    return not annotation.get("iscrowd") and annotation.get("num_keypoints", _labelled(annotation)) > 0


def _found_rows(raw: dict[str, Any], matched: dict[int, bool]) -> list[dict[str, Any]]:
    """The rows of :func:`people_found` from the annotation ids that were matched."""
    counts = {(size, kind): [0, 0] for size, _ in SIZES for kind in ("whole", "partial")}
    for a in filter(_is_person, raw["annotations"]):
        row = counts[person_kind(a["area"], _labelled(a))]
        row[0] += 1
        row[1] += int(matched.get(a[SOURCE_ID], False))
    return [{"size": size, "keypoints": kind, "people": n, "found": f}
            for (size, kind), (n, f) in counts.items() if n]


def format_found_table(rows: list[dict[str, Any]], oks: float = 0.5) -> str:
    """The rows of :func:`people_found` as a small text table, with a total; a last column when the rows hold
    ``found_perfect_grouping`` (``gopose eval --grouping-bound``)."""
    label = {"whole": f"whole ({WHOLE_KEYPOINTS}+)", "partial": f"partial (<{WHOLE_KEYPOINTS})"}
    bound = all("found_perfect_grouping" in r for r in rows)
    extra = ("  perfect grouping", "  ----------------") if bound else ("", "")
    lines = [f"people found (OKS >= {oks:g})", "size    keypoints      found / people" + extra[0],
             "------  -------------  --------------" + extra[1]]

    def line(size: str, kind: str, found: int, people: int, perfect: int | None) -> str:
        row = f"{size:<6}  {kind:<13}  {found:>5} / {people}"
        return f"{row:<37}  {perfect:>16}" if bound else row

    lines += [line(r["size"], label[r["keypoints"]], r["found"], r["people"], r.get("found_perfect_grouping"))
              for r in rows]
    lines.append(line("all", "", sum(r["found"] for r in rows), sum(r["people"] for r in rows),
                      sum(r.get("found_perfect_grouping", 0) for r in rows)))
    return "\n".join(lines)


def evaluate_crowdpose(gt: GroundTruth, results: list[dict],
                       image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The official CrowdPose protocol (faster-coco-eval ``keypoints_crowd``, ``use_area=False``, the 14
    CrowdPose sigmas): AP, AP50, AP75, AR, AR50, AR75, AP_easy, AP_medium, AP_hard and ``stats``.
    Every image needs a ``crowdIndex`` (it decides easy / medium / hard)."""
    from faster_coco_eval import COCO, COCOeval_faster

    raw, name = _gt_dict(gt, image_ids)
    raw = _with_categories(raw, CROWDPOSE_SPEC.keypoints)
    _require_crowd_index(raw, name)
    _require_boxes(raw, name)
    dets = _check_results(results, raw, name, _n_keypoints(raw, name))
    if not dets:
        return _no_results(CROWDPOSE_METRICS, raw)
    chatter = io.StringIO()
    sink = LOG.debug
    with contextlib.redirect_stdout(chatter):
        coco_gt = COCO(raw, print_function=sink)
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="keypoints_crowd", use_area=False,
                             kpt_oks_sigmas=np.asarray(CROWDPOSE_SPEC.sigmas), print_function=sink)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if chatter.getvalue():
        LOG.debug("faster-coco-eval:\n%s", chatter.getvalue())
    out = _named(CROWDPOSE_METRICS, ev.all_stats[:len(CROWDPOSE_METRICS)])
    out.update(n_images=len(raw["images"]), n_results=len(dets))
    return out


def evaluate(dataset: str, gt: GroundTruth, results: list[dict],
             image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Dispatch on ``dataset`` (``coco`` or ``crowdpose``)."""
    if dataset == "coco":
        return evaluate_coco(gt, results, image_ids)
    if dataset == "crowdpose":
        return evaluate_crowdpose(gt, results, image_ids)
    raise InputError(f"unknown dataset {dataset!r}; choose coco or crowdpose")


def _n_keypoints(raw: dict[str, Any], name: str) -> int:
    """Keypoints per person: from the annotations, else from the person category, else 17."""
    for a in raw["annotations"]:
        if "keypoints" in a:
            return len(a["keypoints"]) // 3
    for c in raw.get("categories") or []:
        if c.get("keypoints"):
            return len(c["keypoints"])
    return COCO_SPEC.n_keypoints


_LABELS = {"AP": "AP @[.50:.95]", "AP50": "AP @ .50", "AP75": "AP @ .75", "APm": "AP medium area",
           "APl": "AP large area", "AR": "AR @[.50:.95]", "AR50": "AR @ .50", "AR75": "AR @ .75",
           "ARm": "AR medium area", "ARl": "AR large area",
           "AP_easy": "AP easy", "AP_medium": "AP medium", "AP_hard": "AP hard"}


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """A two-column text table of the named metrics (in the evaluator's order); the evaluators' -1 (no ground
    truth in that group, e.g. no "hard" CrowdPose image) is shown as n/a."""
    names = [n for n in (*COCO_METRICS, *CROWDPOSE_METRICS) if n in metrics]
    names = list(dict.fromkeys(names))
    width = max(len(_LABELS.get(n, n)) for n in names) if names else 6
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for n in names:
        v = float(metrics[n])
        lines.append(f"{_LABELS.get(n, n):<{width}}  {v:.4f}" if v >= 0 else f"{_LABELS.get(n, n):<{width}}  n/a")
    return "\n".join(lines)
