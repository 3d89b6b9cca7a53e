"""Training config: YAML -> dataclasses, typed overrides, errors naming the key, shipped recipes load."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import InputError
from train.config import TrainConfig, apply_overrides, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert isinstance(cfg, TrainConfig)
    assert cfg.data.input_size == 512 and cfg.model.arch == "realtime"
    assert (cfg.loss.heatmap_weight, cfg.loss.offset_weight, cfg.loss.scale_weight) == (1.0, 10000.0, 10.0)


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=2e-4", "data.batch_size=3", "augmentation.enabled=false",
                             "schedule.milestones=[3, 5]", "model.kwargs.channels=32", "run.amp=bf16"])
    assert cfg.optim.lr == pytest.approx(2e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 3 and cfg.augmentation.enabled is False
    assert cfg.schedule.milestones == [3, 5] and cfg.model.kwargs == {"channels": 32} and cfg.run.amp == "bf16"


@pytest.mark.parametrize("override, words", [
    ("optim.lr=fast", ["optim.lr", "float"]),
    ("data.batch_size=2.5", ["data.batch_size", "int"]),
    ("optim.momentum=0.9", ["optim", "momentum"]),
    ("nosection.x=1", ["nosection"]),
    ("run.amp=fp8", ["run.amp", "fp16"]),
    ("data=1", ["data", "section"]),
    ("optim.lr", ["optim.lr", "key=value"]),
    ("augmentation.scale_min=3", ["augmentation.scale_min"]),
    ("augmentation.occlusion_prob=1.5", ["augmentation.occlusion_prob"]),
    ("augmentation.occlusion_size=0.1", ["augmentation.occlusion_size"]),
    ("optim.ema_decay=1", ["optim.ema_decay"]),
    ("optim.ema_warmup_steps=-1", ["optim.ema_warmup_steps"]),
    ("schedule.min_lr_factor=-0.1", ["schedule.min_lr_factor"]),  # a negative rate: gradient ascent
    ("schedule.min_lr_factor=1.5", ["schedule.min_lr_factor"]),
    ("schedule.gamma=-0.1", ["schedule.gamma"]),
    ("schedule.gamma=0", ["schedule.gamma"]),
    ("run.seed=-1", ["run.seed"]),
    ("loss.gamma=-1", ["loss.gamma"]),
    ("loss.tau=0", ["loss.tau"]),
    ("loss.tau=1.5", ["loss.tau"]),  # NumPy's seed sequences refuse it: the data workers crashed
    # these crashed with a traceback at the first sample or while the run was built, or were silently wrong
    ("augmentation.translate=-0.1", ["augmentation.translate"]),
    ("augmentation.brightness=-0.5", ["augmentation.brightness"]),
    ("augmentation.contrast=-0.5", ["augmentation.contrast"]),
    ("augmentation.saturation=-0.5", ["augmentation.saturation"]),
    ("augmentation.hue_deg=-5", ["augmentation.hue_deg"]),
    ("augmentation.rotation_deg=-30", ["augmentation.rotation_deg"]),  # was: no rotation at all
    ("optim.weight_decay=-1", ["optim.weight_decay"]),
    ("loss.heatmap_weight=-1", ["loss.heatmap_weight"]),  # was: gradient ascent on the heatmaps
    ("run.val_input_size=16", ["run.val_input_size"]),
    ("run.val_images=-2", ["run.val_images"]),  # was: all but the last 2 images
    ("run.val_every_epochs=-1", ["run.val_every_epochs"]),
    ("data.min_keypoints=-1", ["data.min_keypoints"]),
    ("run.threads=-1", ["run.threads"]),
    ("model.skeleton=nope", ["model.skeleton", "nope", "dense"]),
    ("data.sources=[{annotations: 5}]", ["data.sources[0].annotations"]),
    ("data.sources=[{annotations: a.json, images: [b]}]", ["data.sources[0].images"]),
    ("data.sources=[{annotations: a.json, split: 3}]", ["data.sources[0].split"]),
])
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(InputError) as err:
        load_config(None, [override])
    for w in words:
        assert w in str(err.value)


def test_yaml_errors_name_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  lr: 1e-4\n  nesterov: true\n")
    with pytest.raises(InputError, match=r"bad.yaml.*optim.nesterov"):
        load_config(p)
    p.write_text("optim: [1, 2]\n")
    with pytest.raises(InputError, match="optim"):
        load_config(p)
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_syntax_errors_are_one_line_naming_the_file_or_key_and_the_place(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("optim:\n  lr: [1\n")
    with pytest.raises(InputError) as err:
        load_config(p)
    assert "broken.yaml" in str(err.value) and "line" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError) as err:
        load_config(None, ["optim.lr=[1"])
    assert "optim.lr" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, where", [
    (["model.kwargs.widths=[8, 8]", "model.kwargs.widths.first=4"], "model.kwargs.widths"),
    (["model.kwargs.a=1", "model.kwargs.a.b=2"], "model.kwargs.a"),
])
def test_a_free_form_override_below_a_value_names_it(overrides, where):
    with pytest.raises(InputError, match=f"{where} is not a mapping"):
        load_config(None, overrides)


def test_yaml_1e4_without_dot_is_a_float(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(p).optim.lr == pytest.approx(1e-4)


def test_base_config_is_merged_under_the_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("optim:\n  lr: 1.0e-3\n  backbone_lr_factor: 0.3\n"
                                          "model:\n  kwargs: {alpha: 0.5, channels: 64}\n")
    child = tmp_path / "sub" / "child.yaml"
    child.parent.mkdir()
    child.write_text("base: ../parent.yaml\noptim:\n  lr: 5.0e-4\nmodel:\n  kwargs: {channels: 32}\n")
    cfg = load_config(child, ["optim.backbone_lr_factor=0.5"])
    assert cfg.optim.lr == pytest.approx(5e-4)  # the file wins over its base
    assert cfg.optim.backbone_lr_factor == pytest.approx(0.5)  # --set wins over both
    assert cfg.model.kwargs == {"alpha": 0.5, "channels": 32}  # mappings merge key by key


def test_base_errors_name_the_file(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(InputError, match="loop.yaml is its own base"):
        load_config(loop)
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("base: gone.yaml\n")
    with pytest.raises(InputError, match="gone.yaml does not exist"):
        load_config(orphan)


def test_a_missing_base_names_the_file_that_names_it(tmp_path):
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("base: gone.yaml\n")
    with pytest.raises(InputError, match=r"orphan\.yaml: base .*gone\.yaml does not exist"):
        load_config(orphan)


def test_an_unknown_key_of_a_base_file_names_that_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("optim:\n  lrr: 1.0\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nrun:\n  seed: 1\n")
    with pytest.raises(InputError, match=r"parent\.yaml: unknown config key optim\.lrr") as err:
        load_config(tmp_path / "child.yaml")
    assert "child.yaml" not in str(err.value)


def test_a_folder_given_as_config_is_called_a_folder(tmp_path):
    with pytest.raises(InputError, match="is a folder") as err:
        load_config(tmp_path)
    assert "does not exist" not in str(err.value)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_recipes_load_and_round_trip(name, tmp_path):
    cfg = load_config(CONFIGS / name)
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again) == cfg



@pytest.mark.parametrize("name", ["coco_hourglass104.yaml", "crowdpose_hourglass104.yaml", "coco_realtime.yaml"])
def test_shipped_recipes_stack_weights_fit_their_network(name):
    """The paper's recipes weight Hourglass-104's two stacks [1, 1]; the network must say it has two (it said 1,
    so the trainer refused both recipes before their first step)."""
    import torch

    from models.factory import build_model, make_config
    from models.losses import LossConfig, PoseLoss

    cfg = load_config(CONFIGS / name)
    with torch.device("meta"):  # shapes only: no memory or initialisation time
        model = build_model(make_config(cfg.model.arch, spec=cfg.data.dataset, skeleton=cfg.model.skeleton,
                                        with_scale=cfg.model.with_scale, **cfg.model.kwargs))
    assert len(model.eval()(torch.zeros(1, 3, 128, 128, device="meta"))) == model.n_stacks
    loss = PoseLoss(LossConfig(stack_weights=tuple(cfg.loss.stack_weights) or None))
    assert len(loss.stack_weights(model.n_stacks)) == model.n_stacks

def test_default_model_stage3_changes_only_the_canvas_schedule_and_start_of_stage2():
    stage2 = load_config(CONFIGS / "default_model_stage2.yaml")
    stage3 = load_config(CONFIGS / "default_model_stage3.yaml")
    assert (stage3.data.input_size, stage3.run.val_input_size, stage3.schedule.epochs) == (256, 256, 15)
    assert stage3.model.init_checkpoint == "../runs/default_model_stage2/best.pt"
    assert (stage3.augmentation, stage3.optim, stage3.loss) == (stage2.augmentation, stage2.optim, stage2.loss)
    assert stage3.data.sources == stage2.data.sources and stage3.model.kwargs == stage2.model.kwargs


@pytest.mark.parametrize("stage,epochs,start", [(4, 8, "best.pt"), (5, 13, "best.pt"),
                                                (6, 15, "checkpoints/ckpt_00008086.pt"),
                                                (7, 15, "checkpoints/ckpt_00009330.pt")])
def test_default_model_stage_repeats_the_previous_one_from_its_shipped_weights(stage, epochs, start):
    previous = load_config(CONFIGS / f"default_model_stage{stage - 1}.yaml")
    config = load_config(CONFIGS / f"default_model_stage{stage}.yaml")
    assert config.model.init_checkpoint == f"../runs/default_model_stage{stage - 1}/{start}"
    assert config.schedule.epochs == epochs and config.run.name == f"default_model_stage{stage}"
    assert (config.data, config.augmentation, config.optim, config.loss) == (previous.data, previous.augmentation,
                                                                             previous.optim, previous.loss)


def test_paper_recipe_values_and_unconfirmed_marks():
    cfg = load_config(CONFIGS / "coco_hourglass104.yaml")
    assert cfg.model.arch == "hourglass104" and cfg.data.input_size == 512 and cfg.data.batch_size == 8
    assert cfg.optim.lr == pytest.approx(1.25e-4) and cfg.optim.scale_lr_with_world_size
    assert (cfg.loss.heatmap_weight, cfg.loss.offset_weight, cfg.loss.scale_weight) == (1.0, 10000.0, 10.0)
    assert cfg.loss.gamma == 2.0 and cfg.loss.sqrt_re
    assert "UNCONFIRMED" in (CONFIGS / "coco_hourglass104.yaml").read_text()
    assert load_config(CONFIGS / "crowdpose_hourglass104.yaml").data.dataset == "crowdpose"


def test_apply_overrides_does_not_mutate_input():
    data = {"optim": {"lr": 0.1}}
    out = apply_overrides(data, ["optim.lr=0.2"])
    assert data["optim"]["lr"] == 0.1 and out["optim"]["lr"] == 0.2


def test_cli_prints_the_resolved_config_and_reports_bad_keys_in_one_line(capsys):
    from app.cli import main

    assert main(["train", "--config", str(CONFIGS / "coco_realtime.yaml"), "--set", "optim.lr=3e-4",
                 "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "arch: realtime" in out and "lr: 0.0003" in out
    assert main(["train", "--set", "optim.nope=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim" in err[0] and "nope" in err[0]


def test_default_model_stage8_fine_tunes_stage7_at_a_lower_learning_rate():
    stage7 = load_config(CONFIGS / "default_model_stage7.yaml")
    stage8 = load_config(CONFIGS / "default_model_stage8.yaml")
    assert stage8.model.init_checkpoint == "../runs/default_model_stage7/checkpoints/ckpt_00009330.pt"
    assert (stage8.optim.lr, stage7.optim.lr) == (2e-4, 5e-4)
    assert (stage8.schedule.epochs, stage8.schedule.warmup_steps, stage8.run.name) == (6, 100, "default_model_stage8")
    assert (stage8.data, stage8.augmentation, stage8.loss) == (stage7.data, stage7.augmentation, stage7.loss)


def test_default_model_stage11_grows_stage8s_packaged_file_to_a_wider_neck():
    stage8 = load_config(CONFIGS / "default_model_stage8.yaml")
    stage11 = load_config(CONFIGS / "default_model_stage11.yaml")
    assert stage11.model.init_checkpoint == "../runs/default_model_stage8/default.pt" and stage11.model.init_widen
    assert (stage11.model.skeleton, stage11.model.kwargs) == ("dense", {"alpha": 0.5, "channels": 128, "refine": 2})
    assert (stage8.model.skeleton, stage8.model.kwargs["channels"]) == ("all", 64)
    assert (stage11.optim.lr, stage11.schedule.epochs, stage11.run.name) == (3e-4, 9, "default_model_stage11")
    assert (stage11.data, stage11.augmentation, stage11.loss) == (stage8.data, stage8.augmentation, stage8.loss)


def test_default_model_stage13_grows_stage11s_packaged_file_again_with_its_recipe():
    stage11 = load_config(CONFIGS / "default_model_stage11.yaml")
    stage13 = load_config(CONFIGS / "default_model_stage13.yaml")
    assert stage13.model.init_checkpoint == "../runs/default_model_stage11/default.pt" and stage13.model.init_widen
    assert (stage13.model.skeleton, stage13.model.kwargs) == ("dense", {"alpha": 0.5, "channels": 192, "refine": 2})
    assert (stage13.schedule.epochs, stage13.run.name) == (8, "default_model_stage13")
    assert (stage13.data, stage13.augmentation, stage13.loss, stage13.optim) == (stage11.data, stage11.augmentation,
                                                                                 stage11.loss, stage11.optim)


def test_default_model_stage14_fine_tunes_stage13s_packaged_file_at_a_lower_rate():
    stage13 = load_config(CONFIGS / "default_model_stage13.yaml")
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    assert stage14.model.init_checkpoint == "../runs/default_model_stage13/default.pt"
    assert stage14.model.kwargs == stage13.model.kwargs == {"alpha": 0.5, "channels": 192, "refine": 2}
    assert (stage14.optim.lr, stage14.schedule.epochs, stage14.run.name) == (1e-4, 3, "default_model_stage14")
    assert stage14.run.amp == stage13.run.amp == "auto"
    assert (stage14.data, stage14.augmentation, stage14.loss) == (stage13.data, stage13.augmentation, stage13.loss)


def test_default_model_stage15_restarts_stage14s_recipe_from_its_packaged_file():
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    stage15 = load_config(CONFIGS / "default_model_stage15.yaml")
    assert stage15.model.init_checkpoint == "../runs/default_model_stage14/default.pt"
    assert (stage15.schedule.epochs, stage15.run.name) == (2, "default_model_stage15")
    assert (stage15.model.kwargs, stage15.optim, stage15.schedule.warmup_steps) == (
        stage14.model.kwargs, stage14.optim, stage14.schedule.warmup_steps)
    assert (stage15.data, stage15.augmentation, stage15.loss) == (stage14.data, stage14.augmentation, stage14.loss)


def test_default_model_stage17_adds_occlusion_to_stage14s_recipe():
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    stage17 = load_config(CONFIGS / "default_model_stage17.yaml")
    assert stage17.model.init_checkpoint == "../runs/default_model_stage14/default.pt"
    assert (stage17.schedule.epochs, stage17.run.name) == (6, "default_model_stage17")
    assert (stage17.augmentation.occlusion_prob, stage17.augmentation.occlusion_size) == (0.5, 0.5)
    assert stage14.augmentation.occlusion_prob == 0.0
    assert replace(stage17.augmentation, occlusion_prob=0.0) == stage14.augmentation
    assert (stage17.model.kwargs, stage17.optim, stage17.data, stage17.loss) == (
        stage14.model.kwargs, stage14.optim, stage14.data, stage14.loss)


def test_default_model_stage18_averages_the_weights_of_stage14s_recipe():
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    stage18 = load_config(CONFIGS / "default_model_stage18.yaml")
    assert stage18.model.init_checkpoint == "../runs/default_model_stage14/default.pt"
    assert (stage18.optim.ema_decay, stage18.optim.ema_warmup_steps, stage18.run.name) == (
        0.999, 0.0, "default_model_stage18")
    assert stage14.optim.ema_decay == 0.0
    assert replace(stage18.optim, ema_decay=0.0) == stage14.optim
    assert (stage18.model.kwargs, stage18.schedule, stage18.data, stage18.augmentation, stage18.loss) == (
        stage14.model.kwargs, stage14.schedule, stage14.data, stage14.augmentation, stage14.loss)


def test_default_model_stage19_trains_stage14s_recipe_at_the_shipped_input_size():
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    stage19 = load_config(CONFIGS / "default_model_stage19.yaml")
    assert stage19.model.init_checkpoint == "../runs/default_model_stage14/default.pt"
    assert (stage14.data.input_size, stage14.run.val_input_size) == (256, 256)
    assert (stage19.data.input_size, stage19.run.val_input_size, stage19.run.name) == (
        192, 192, "default_model_stage19")
    assert replace(stage19.data, input_size=256) == stage14.data
    assert (stage19.model.kwargs, stage19.optim, stage19.schedule, stage19.augmentation, stage19.loss) == (
        stage14.model.kwargs, stage14.optim, stage14.schedule, stage14.augmentation, stage14.loss)


def test_default_model_stage20_is_stage14s_recipe_from_stage14s_file():
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    stage20 = load_config(CONFIGS / "default_model_stage20.yaml")
    assert stage20.model.init_checkpoint == "../runs/default_model_stage14/default.pt"
    assert stage20.run.name == "default_model_stage20"
    assert (stage20.model.kwargs, stage20.optim, stage20.schedule, stage20.data, stage20.augmentation,
            stage20.loss) == (stage14.model.kwargs, stage14.optim, stage14.schedule, stage14.data,
                              stage14.augmentation, stage14.loss)


@pytest.mark.parametrize("milestones", ["[-1, 5]", "[5, 3]", "[3, 3]", "[true]", "[2.5]"])
def test_milestones_must_be_increasing_epochs_from_0(milestones):
    """A negative milestone decayed the rate before the first step (epoch >= -1 always holds); an unsorted or
    repeated list, most likely a typo, was taken as is. Each is refused in one line naming the key."""
    with pytest.raises(InputError) as err:
        load_config(None, [f"schedule.milestones={milestones}"])
    message = str(err.value)
    assert "schedule.milestones" in message and "increasing" in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("milestones, value", [("[]", []), ("[0]", [0]), ("[70, 90]", [70, 90])])
def test_increasing_milestones_from_epoch_0_are_accepted(milestones, value):
    assert load_config(None, [f"schedule.milestones={milestones}"]).schedule.milestones == value


def test_default_model_stage21_is_stage14s_recipe_at_a_gpu_batch():
    """Stage 21 (the first GPU stage) changes only the batch, the loader, the rate, the weight average and the
    schedule length of stage 14's recipe, from stage 14's file."""
    stage14 = load_config(CONFIGS / "default_model_stage14.yaml")
    stage21 = load_config(CONFIGS / "default_model_stage21.yaml")
    assert stage21.model.init_checkpoint == "../runs/default_model_stage14/default.pt"
    assert (stage21.data.batch_size, stage21.data.worker_start, stage21.optim.lr, stage21.optim.ema_decay,
            stage21.schedule.epochs) == (128, "fork", 6e-4, 0.999, 21)
    assert (stage21.model.kwargs, stage21.model.skeleton, stage21.augmentation, stage21.loss,
            stage21.data.input_size, stage21.data.sources) == (stage14.model.kwargs, stage14.model.skeleton,
                                                               stage14.augmentation, stage14.loss,
                                                               stage14.data.input_size, stage14.data.sources)
