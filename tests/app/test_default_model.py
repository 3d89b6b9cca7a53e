"""The embedded default model: it ships in the package, is what runs without --model, and finds people.

A regression guard for future changes of the network, the codec, the predictor or the decoder: on a few
`coco/val2017_subset` images, every large, unoccluded annotated person (area >= 96^2 px, at least 12 labelled
keypoints) is found with a COCO OKS above 0.5 by some predicted person.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.engine import EngineConfig, load_estimator
from app.model_store import builtin_model_path, choose_model
from core.keypoints import COCO

#: the coco/val2017_subset images all of whose large, unoccluded people the shipped model finds (OKS 0.80, 0.55,
#: 0.55, 0.61, 0.70, 0.61, 0.62). It finds 10 of the subset's 38 such people (docs/model_card.md): a guard against
#: regressions, to be widened when a stronger model ships.
IMAGES = [785, 5060, 8021, 9483, 109313, 153797, 349860]
SIGMAS = np.asarray(COCO.sigmas, np.float64)


def oks(pred: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO's object keypoint similarity of one predicted and one annotated person (over labelled keypoints)."""
    labelled = gt[:, 2] > 0
    d2 = ((pred[:, :2].astype(np.float64) - gt[:, :2]) ** 2).sum(1)
    sim = np.exp(-d2 / (2 * area * (2 * SIGMAS) ** 2 + np.spacing(1)))
    found = labelled & (pred[:, 2] > 0)
    return float(sim[found].sum() / max(int(labelled.sum()), 1))


def large_people(raw: dict, image_id: int) -> list[dict]:
    """Annotations of ``image_id`` that are large and mostly visible."""
    return [a for a in raw["annotations"] if a["image_id"] == image_id and not a.get("iscrowd")
            and a["area"] >= 96 ** 2 and (np.asarray(a["keypoints"]).reshape(17, 3)[:, 2] > 0).sum() >= 12]


ROOT = Path(__file__).resolve().parents[2]


def test_the_default_model_ships_in_the_package_and_is_the_default() -> None:
    path = builtin_model_path()
    assert path.is_file(), f"the embedded model {path} is missing"
    assert path.stat().st_size <= 4 * 1024 * 1024
    choice = choose_model(None)  # the test's own empty GOPOSE_HOME: no user models, so the built-in one runs
    assert (choice.name, choice.path, choice.reason) == ("default", path, "the built-in model")


def test_a_regular_install_carries_the_model_and_its_recipes(tmp_path: Path) -> None:
    """``pip install .`` (a wheel, not the editable checkout) installs the weights and the training configs, and
    the installed ``gopose`` lists its own copy as the default model."""
    pytest.importorskip("setuptools", reason="building a wheel offline needs setuptools in this environment")
    src, site, home = tmp_path / "src", tmp_path / "site", tmp_path / "home"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                              ".pytest_cache", "runs", "out", ".whl", ".gl"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("gopose-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)], check=True)
    shutil.rmtree(src)  # the copy is gone; the checkout's editable install ranks below PYTHONPATH
    env = {**os.environ, "PYTHONPATH": str(site), "GOPOSE_HOME": str(home)}
    script = ("import sys, app; from app.model_store import builtin_model_path; from main import main; "
              "print(app.__file__); print(builtin_model_path()); sys.exit(main(['models', 'list']))")
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    package, model, *listing = run.stdout.splitlines()
    assert Path(package).is_relative_to(site) and Path(model).is_relative_to(site)
    assert Path(model).read_bytes() == builtin_model_path().read_bytes()
    assert any(line.startswith("*  default (built-in)") for line in listing), run.stdout
    assert (site / "resources" / "configs" / "default_model_stage14.yaml").is_file()


@pytest.fixture(scope="module")
def estimator():
    return load_estimator(None, EngineConfig(device="cpu", backend="torch", threads=1))


def test_the_default_model_finds_the_large_people_of_real_coco_images(estimator, data_dir: Path) -> None:
    subset = data_dir / "coco" / "val2017_subset"
    raw = json.loads((subset / "annotations.json").read_text())
    files = {img["id"]: img["file_name"] for img in raw["images"]}
    checked = 0
    for image_id in IMAGES:
        frame = cv2.imread(str(subset / "images" / files[image_id]))
        poses = estimator.estimate(frame).poses
        for ann in large_people(raw, image_id):
            gt = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
            best = max((oks(p, gt, ann["area"]) for p in poses.keypoints), default=0.0)
            assert best > 0.5, f"image {image_id}, annotation {ann['id']}: best OKS {best:.2f}"
            checked += 1
    assert checked >= 4


def test_annotate_without_a_model_runs_the_default_model(street_video: Path, tmp_path: Path, capsys) -> None:
    rc = main(["annotate", str(street_video), "--out", str(tmp_path), "--formats", "jsonl", "--quiet",
               "--threads", "1", "--backend", "torch"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err.splitlines()[0] == f"gopose annotate: model default (the built-in model): {builtin_model_path()}"
    frames = [json.loads(line) for line in next(tmp_path.glob("*.jsonl")).read_text().splitlines()]
    assert len(frames) == 5 and sum(len(f["people"]) for f in frames) >= 5
