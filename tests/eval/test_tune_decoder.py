"""The decoder tuning script looks at its tuning sets only, and reports bad input in one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from eval.tune_decoder import LSPET_TUNING_IMAGES, main, tuning_sets

BUILTIN = Path(__file__).resolve().parents[2] / "resources" / "models" / "default.pt"


@pytest.mark.parametrize("images", ["201", "500", "0"])
def test_tuning_never_reads_the_held_out_lspet_images(images: str, capsys) -> None:
    # the images of LSPET val after the first 200 are held out for reporting: the tuning must not see them
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(BUILTIN), "--lspet-images", images, "--skeletons", "none"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "--lspet-images" in err and str(LSPET_TUNING_IMAGES) in err
    with pytest.raises(InputError, match="LSPET val"):
        tuning_sets(Path("data"), int(images))


def test_tuning_sets_are_never_the_evaluation_sets() -> None:
    sets = tuning_sets(Path("data"), LSPET_TUNING_IMAGES)
    assert all("val2017" not in str(s["annotations"]) for s in sets)
    lspet = next(s for s in sets if "lspet" in str(s["annotations"]))
    assert lspet["split"] == "val" and lspet["limit"] == LSPET_TUNING_IMAGES


def test_a_missing_checkpoint_is_one_line(capsys) -> None:
    assert main(["--checkpoint", "/nonexistent/best.pt"]) == 2  # was a CheckpointError traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent/best.pt" in err[0]


@pytest.mark.parametrize("option", [["--long-edges", "192,abc"], ["--thresholds", "0.2,-1"]])
def test_bad_grids_stop_before_any_evaluation(option: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:  # was a ValueError traceback after the first stage's evaluations
        main(["--checkpoint", str(BUILTIN), *option])
    assert stop.value.code == 2 and option[0] in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, message", [(["--long-edges", "192,8"], "at least 16"),
                                             (["--thresholds", "0.1,2"], "<= 1")])
def test_grid_values_the_evaluation_refuses_stop_before_any_evaluation(option: list[str], message: str,
                                                                       tmp_path: Path, capsys) -> None:
    """A long edge below the evaluation's 16 px or a heatmap threshold above 1 (no peak reaches it) is refused by
    the parser, not after the first stage's evaluations (here: with no tuning data, where they would fail)."""
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(BUILTIN), "--data", str(tmp_path), *option])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and option[0] in err and message in err


def test_each_grouping_variant_sets_every_field_the_variants_differ_in() -> None:
    """Stage 3 applies a variant over the model's stored decoder: a model storing the coverage score was run as
    'linked score (default)' unchanged (the variant named no field)."""
    from core.decoder import DecoderConfig
    from eval.bench_decoder import VARIANTS, variant_fields

    stored = DecoderConfig(person_score="coverage", order="skeleton", limb_norm="distance", single_radius=0.0)
    for name, fields in VARIANTS.items():
        config = stored.with_(**variant_fields(name))
        assert config == DecoderConfig().with_(**fields), name
