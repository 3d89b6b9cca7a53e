"""The one inference path: flip test through a network whose output is known, codec in checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.codec import Codec
from core.contract import PoseContract
from core.keypoints import COCO
from models.checkpoint import load_checkpoint, save_checkpoint
from models.factory import build_model, make_config
from models.predictor import Predictor

CODEC = Codec(PoseContract(COCO), long_edge=160)  # 160 x 120 frames map 1:1 onto the canvas
#: one person, x, y in a 160 x 120 frame (all 17 keypoints, left and right clearly apart)
PERSON = np.array([[80, 20], [84, 16], [76, 16], [90, 18], [70, 18], [96, 40], [64, 40], [104, 60], [56, 60],
                   [108, 80], [52, 80], [92, 76], [68, 76], [94, 96], [66, 96], [96, 112], [64, 112]], np.float32)


def marker_frame(points: np.ndarray, size=(160, 120)) -> np.ndarray:
    """A frame that draws each keypoint as a marker a real network could read: blue = keypoint code (1 + the
    index of its left-side or centre name), and a green pixel on the marker's right for a left-side keypoint,
    on its left for a right-side one. Mirroring the frame horizontally moves that pixel to the other side, as a
    mirrored person's left shoulder looks like a right shoulder."""
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    perm = COCO.flip_permutation
    for k, (x, y) in enumerate(points.round().astype(int)):
        side = COCO.keypoints[k].split("_")[0]
        frame[y, x, 0] = 1 + min(k, perm[k])
        if side in ("left", "right"):
            frame[y, x + (1 if side == "left" else -1), 1] = 255
    return frame


class MarkerNetwork:
    """A perfect single-person "network" for marker frames: reads the markers of its input and answers with the
    codec's encoding of that person (heatmaps and guiding offsets), like a network that sees what it is shown."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.encoder = codec.encoder()

    def read(self, image: np.ndarray) -> np.ndarray:
        kps = np.zeros((1, 17, 3), np.float32)
        perm = COCO.flip_permutation
        for y, x in zip(*np.nonzero(image[:, :, 0])):
            k = int(image[y, x, 0]) - 1
            left = x + 1 < image.shape[1] and image[y, x + 1, 1] == 255
            right = x > 0 and image[y, x - 1, 1] == 255
            k = perm[k] if right and not left else k
            kps[0, k] = (x, y, 2)
        return kps

    def __call__(self, x: torch.Tensor) -> dict:
        images = x.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()
        maps = [self.encoder.encode(self.read(img), (img.shape[1], img.shape[0])) for img in images]
        return {"heatmaps": torch.from_numpy(np.stack([m.heatmaps for m in maps])),
                "offsets": torch.from_numpy(np.stack([m.offsets for m in maps])), "scales": None}


def _predictor(flip: bool) -> Predictor:
    return Predictor(MarkerNetwork(CODEC), CODEC, normalize=lambda b: b.permute(0, 3, 1, 2).float(), flip=flip)


def test_marker_network_reads_mirrored_people_as_a_network_would():
    frame = marker_frame(PERSON)
    kps = MarkerNetwork(CODEC).read(frame)[0]
    assert np.allclose(kps[:, :2], PERSON.round())
    mirrored = MarkerNetwork(CODEC).read(frame[:, ::-1].copy())[0]
    perm = list(COCO.flip_permutation)
    assert np.allclose(mirrored[perm, 0], 159 - PERSON.round()[:, 0])  # the left shoulder reads as a right one


def test_flip_test_mirrors_horizontally_and_merges_back():
    frame = marker_frame(PERSON)
    plain = _predictor(flip=False).predict([frame])[0]
    flipped = _predictor(flip=True).predict([frame])[0]
    assert len(plain) >= 1 and len(flipped) >= 1
    best_plain, best_flip = plain.keypoints[0], flipped.keypoints[0]
    assert (best_plain[:, 2] > 0).all() and (best_flip[:, 2] > 0).all()
    # a horizontal mirror, un-mirrored with left/right swapped, lands on the same keypoints with full-height peaks
    assert np.abs(best_flip[:, :2] - PERSON.round()).max() < 1.0
    assert np.abs(best_flip[:, :2] - best_plain[:, :2]).max() < 0.5
    assert np.allclose(best_flip[:, 2], best_plain[:, 2], atol=0.05)


def test_checkpoints_carry_the_codec_to_encoder_and_decoder(tmp_path):
    model = build_model(make_config("realtime"))
    model.codec = Codec(model.contract, sigma=5.0, window=5, long_edge=320,
                        decoder=model.codec.decoder.with_(threshold=0.08))
    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded, info = load_checkpoint(path)
    assert loaded.codec == model.codec and info["codec"]["sigma"] == 5.0
    encoder = loaded.codec.encoder()
    assert (encoder.sigma, encoder.window) == (5.0, 5)
    predictor = Predictor.from_model(loaded)
    assert predictor.decoder_config.sigma == 5.0 and predictor.decoder_config.threshold == 0.08
    assert predictor.long_edge == 320
    with pytest.raises(ValueError, match="sigma"):
        predictor.update_decoder(sigma=3.0)


def test_checkpoints_without_a_codec_take_sigma_and_window_from_their_training_config(tmp_path):
    model = build_model(make_config("realtime"))
    path = save_checkpoint(tmp_path / "old.pt", model, train_config={"data": {"target_sigma": 6.0, "target_window": 5}})
    data = torch.load(path, weights_only=True)
    del data["codec"]
    torch.save(data, path)
    loaded, _ = load_checkpoint(path)
    assert (loaded.codec.sigma, loaded.codec.window, loaded.codec.decoder.sigma) == (6.0, 5, 6.0)


def test_nonfinite_network_output_is_reported_once_and_the_rest_still_decodes(caplog):
    class Overflowing(MarkerNetwork):  # the left half of every heatmap overflowed, as an fp16 network can
        def __call__(self, x):
            out = super().__call__(x)
            out["heatmaps"][..., :10] = float("nan")
            return out

    predictor = Predictor(Overflowing(CODEC), CODEC, normalize=lambda b: b.permute(0, 3, 1, 2).float())
    frame = marker_frame(PERSON)
    with caplog.at_level("WARNING", logger="models.predictor"):
        people = predictor.predict([frame])[0]
        predictor.predict([frame])
    warnings = [r for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(warnings) == 1 and predictor.nonfinite_batches == 2
    assert len(people) == 1 and (people.keypoints[0, :, 2] > 0).sum() >= 15  # keypoints right of the NaN columns
    clean = _predictor(flip=False)
    clean.predict([frame])
    assert clean.nonfinite_batches == 0


def test_an_infinite_heatmap_cell_gives_no_keypoint_and_results_stay_valid_json():
    class Overflowing(MarkerNetwork):  # one heatmap cell overflowed to +inf (fp16), away from the person
        def __call__(self, x):
            out = super().__call__(x)
            out["heatmaps"][:, 0, 2, 2] = float("inf")
            return out

    predictor = Predictor(Overflowing(CODEC), CODEC, normalize=lambda b: b.permute(0, 3, 1, 2).float())
    people = predictor.predict([marker_frame(PERSON)])[0]
    assert np.isfinite(people.scores).all() and np.isfinite(people.keypoints).all()
    assert len(people) == 1 and people.visible[0].sum() == 17  # the person, not an infinitely sure nose
    json.dumps(people.to_coco(1), allow_nan=False)  # results.json must be JSON (no Infinity)
