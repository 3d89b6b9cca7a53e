"""The codec as stored in checkpoints: a malformed stored codec is one clear error naming the field."""
import copy

import pytest

from core.codec import Codec
from core.contract import PoseContract
from core.keypoints import COCO

STORED = Codec(PoseContract(COCO)).to_dict()


def _damaged(where: str, key: str, value) -> dict:
    data = copy.deepcopy(STORED)
    target = data if where == "codec" else data[where]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return data


def test_round_trip():
    codec = Codec(PoseContract(COCO, "dense", with_scale=True), sigma=6.0, window=5, long_edge=192)
    assert Codec.from_dict(codec.to_dict()) == codec


@pytest.mark.parametrize("where, key, value", [
    ("contract", "with_scale", "false"),    # bool("false") is True: a silently different model
    ("contract", "stride", 4.7),            # int(4.7) is 4
    ("contract", "spec", 3),                # was AttributeError: 'int' object has no attribute 'lower'
    ("contract", "spec", KeyError),
    ("contract", "unknown_head", 1),
    ("codec", "contract", "coco"),
    ("codec", "contract", KeyError),
    ("codec", "sigma", "abc"),
    ("codec", "sigma", None),
    ("codec", "sigma", float("nan")),
    ("codec", "window", 7.9),
    ("codec", "future_field", 1),
    ("codec", "decoder", [1, 2]),
    ("decoder", "topk", "32"),              # was TypeError: '<' not supported between 'str' and 'int'
    ("decoder", "threshold", None),
    ("decoder", "refine", "no"),            # a non-empty string is truthy
    ("decoder", "max_people", True),
])
def test_malformed_stored_codec_names_the_field(where, key, value):
    with pytest.raises(ValueError, match=key):
        Codec.from_dict(_damaged(where, key, value))


def test_a_stored_codec_that_is_not_a_mapping_is_a_clear_error():
    with pytest.raises(ValueError, match="codec must be a mapping"):
        Codec.from_dict([1, 2])


def test_missing_optional_fields_keep_their_defaults():
    data = {"contract": {"spec": "coco"}}
    assert Codec.from_dict(data) == Codec(PoseContract(COCO))


@pytest.mark.parametrize("train_config, key", [({"data": {"target_sigma": "abc"}}, "target_sigma"),
                                               ({"data": {"target_window": 7.5}}, "target_window"),
                                               ({"data": [1]}, "data")])
def test_legacy_training_config_with_wrong_types_names_the_field(train_config, key):
    with pytest.raises(ValueError, match=key):
        Codec.from_train_config(PoseContract(COCO), train_config)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 7.0])
def test_lowest_peak_is_the_peak_of_a_keypoint_between_cell_centres(sigma):
    import numpy as np

    codec = Codec(PoseContract(COCO), sigma=sigma)
    stride = codec.contract.stride
    kps = np.zeros((1, COCO.n_keypoints, 3), np.float32)
    kps[0, 0] = (8 * stride + stride - 0.5, 8 * stride + stride - 0.5, 2)  # halfway between two cell centres
    heat = codec.encoder().encode(kps, (32 * stride, 32 * stride)).heatmaps[0]
    assert heat.max() == pytest.approx(codec.lowest_peak(), rel=1e-5)
