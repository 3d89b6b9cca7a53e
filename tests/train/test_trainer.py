"""Trainer: exact resume (stop/resume and a SIGKILLed process), DDP with two gloo processes = one process with
the same global batch, bf16 autocast on CPU, schedules, frozen backbone, init from a checkpoint."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from train import state as S
from train.config import load_config
from eval.shared_data import shared_data_dir
from train.trainer import Trainer, lr_factor

ROOT = Path(__file__).resolve().parents[2]
TINY = "model.kwargs={stem: 8, widths: [8, 8, 16, 16], depths: [1, 1, 1, 1], expand: 2, channels: 16}"


MINI = shared_data_dir() / "coco" / "train2017_mini"


def _overrides(**extra):
    base = {
        "data.train_annotations": str(MINI / "annotations.json"), "data.train_images": str(MINI / "images"),
        "data.input_size": 64, "data.batch_size": 2, "data.workers": 0, "schedule.epochs": 2,
        "optim.lr": 1e-3, "run.progress": False, "run.val_every_epochs": 0, "run.log_every_steps": 1,
        "run.tensorboard": False, "data.image_ids": [535506, 84533, 30752, 37666, 463557, 234748],
    }
    base.update(extra)
    out = [TINY]
    for k, v in base.items():
        out.append(f"{k}={json.dumps(v) if not isinstance(v, str) else v}")
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    """This process's torch thread count for a block (a subprocess gets the same through ``run.threads`` or
    ``OMP_NUM_THREADS``): bit-equal comparisons need one reduction order, whatever earlier tests set."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cfg(**extra):
    return load_config(None, _overrides(**extra))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]


def _final(run_dir: Path) -> dict[str, torch.Tensor]:
    return _weights(S.latest_checkpoint(run_dir))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    """6 steps (2 epochs of 3 batches) with augmentation, in one go."""
    run = tmp_path_factory.mktemp("full")
    summary = Trainer(_cfg(), run_dir=run).train()
    assert summary["step"] == 6 and summary["epoch"] == 2 and summary["stopped"] == "epochs"
    return _final(run)


def test_stop_and_resume_mid_epoch_is_exact(tmp_path, uninterrupted):
    first = Trainer(_cfg(**{"schedule.max_steps": 4}), run_dir=tmp_path).train()
    assert first["step"] == 4 and first["stopped"] == "max_steps"
    assert S.latest_checkpoint(tmp_path).name == "ckpt_00000004.pt"
    partial = _final(tmp_path)
    assert any(not torch.equal(partial[k], uninterrupted[k]) for k in partial)
    resumed = Trainer(_cfg(), resume=tmp_path)
    assert (resumed.step, resumed.epoch, resumed.batches_done) == (4, 1, 1)
    assert resumed.train()["step"] == 6
    _assert_same(_final(tmp_path), uninterrupted)


def test_resume_from_a_periodic_checkpoint_after_a_crash(tmp_path, uninterrupted):
    """Steps 1-5 with a checkpoint every 2 steps; the process 'dies' after step 5 before saving it: the run
    resumes from step 4 and still ends with the uninterrupted weights."""
    Trainer(_cfg(**{"schedule.max_steps": 5, "run.checkpoint_every_steps": 2}), run_dir=tmp_path).train()
    S.checkpoint_path(tmp_path, 5).unlink()
    assert S.latest_checkpoint(tmp_path).name == "ckpt_00000004.pt"
    Trainer(_cfg(**{"run.checkpoint_every_steps": 2}), resume=tmp_path).train()
    _assert_same(_final(tmp_path), uninterrupted)


def test_weight_average_is_what_checkpoints_store_and_resumes_exactly(tmp_path):
    """With ``optim.ema_decay`` the checkpoint's weights are the average (what validation, ``best.pt`` and
    packaging read), the trained weights ride in its train state, and a stop/resume ends where one go does."""
    ema = {"optim.ema_decay": 0.9}
    Trainer(_cfg(**ema), run_dir=tmp_path / "one_go").train()
    ckpt = torch.load(S.latest_checkpoint(tmp_path / "one_go"), map_location="cpu", weights_only=True)
    state = ckpt["extra"]["train_state"]
    averaged, trained = ckpt["model_state_dict"], state["trained_weights"]
    assert state["average_updates"] == 6 and averaged.keys() == trained.keys()
    assert any(not torch.equal(averaged[k], trained[k]) for k in averaged)
    assert "trained_weights" not in torch.load(S.latest_checkpoint(
        Path(Trainer(_cfg(**{"schedule.max_steps": 1}), run_dir=tmp_path / "plain").train()["run_dir"])),
        map_location="cpu", weights_only=True)["extra"]["train_state"]

    Trainer(_cfg(**ema, **{"schedule.max_steps": 4}), run_dir=tmp_path / "stopped").train()
    resumed = Trainer(_cfg(**ema), resume=tmp_path / "stopped")
    assert resumed.average.updates == 4
    resumed.train()
    again = torch.load(S.latest_checkpoint(tmp_path / "stopped"), map_location="cpu", weights_only=True)
    _assert_same(again["model_state_dict"], averaged)
    _assert_same(again["extra"]["train_state"]["trained_weights"], trained)


@pytest.mark.slow  # ~11 s: a real training process SIGKILLed; the in-process stop/crash resumes run by default
def test_sigkilled_process_resumes_exactly(tmp_path, data_dir):
    """A real ``python -m train`` process killed with SIGKILL mid-run; ``--resume`` continues exactly."""
    reference = tmp_path / "reference"
    with torch_threads(1):
        Trainer(_cfg(**{"schedule.epochs": 4}), run_dir=reference).train()     # 12 steps in one go
    run = tmp_path / "killed"
    over = _overrides(**{"run.checkpoint_every_steps": 1, "schedule.epochs": 1000, "run.threads": 1})
    cmd = [sys.executable, "-m", "train", "--run-dir", str(run)] + [a for o in over for a in ("--set", o)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 600  # a hang guard only
        while not S.checkpoint_path(run, 2).exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint after 600 s"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = int(S.latest_checkpoint(run).stem.split("_")[1])
    if killed_at >= 12:
        pytest.skip(f"the process reached step {killed_at} before the kill landed")
    for ckpt in S.list_checkpoints(run):  # atomic writes: whatever exists is complete
        assert "model_state_dict" in torch.load(ckpt, map_location="cpu", weights_only=True)
    rc = subprocess.run([sys.executable, "-m", "train", "--resume", str(run), "--set", "schedule.epochs=4",
                         "--set", "run.checkpoint_every_steps=0", "--set", "run.threads=1"], cwd=ROOT,
                        capture_output=True, text=True,
                        timeout=120)
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert json.loads(rc.stdout.strip().splitlines()[-1])["step"] == 12
    _assert_same(_final(run), _final(reference))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_match_one_process(tmp_path, data_dir):
    """2 processes x batch 2 (lr scaled x2 by world size) == 1 process x batch 4 at lr 2e-3, after 3 steps.

    BatchNorm normalises with per-process batch statistics, so plain BN cannot match (and SyncBatchNorm is
    GPU-only in torch); ``model.freeze_bn`` uses the running statistics instead. ``loss.per_sample`` makes the
    paper's batch-normalised offset term a mean over images, so splitting the batch does not change the loss."""
    common = {"augmentation.enabled": True, "model.freeze_bn": True, "loss.per_sample": True,
              "schedule.epochs": 3, "schedule.max_steps": 3, "optim.lr": 1e-3}
    single = tmp_path / "single"
    with torch_threads(1):  # the same reduction order as the OMP_NUM_THREADS=1 workers
        one = Trainer(_cfg(**{**common, "data.batch_size": 4, "optim.lr": 2e-3}), run_dir=single).train()
    multi = tmp_path / "multi"
    over = _overrides(**common)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "train", "--run-dir", str(multi)] + [a for o in over for a in ("--set", o)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150, env=env)
    assert rc.returncode == 0, rc.stderr[-3000:]
    two = json.loads(rc.stdout.strip().splitlines()[-1])
    assert two["step"] == 3
    # what the summary, the log's end record and the checkpoint report is the mean over both processes
    assert two["losses"]["loss"] == pytest.approx(one["losses"]["loss"], rel=1e-3)
    assert _log(multi, "end")[0]["losses"]["loss"] == pytest.approx(_log(multi, "train")[-1]["loss"])
    a, b = _final(single), _final(multi)
    init = Trainer(_cfg(**common), run_dir=tmp_path / "init").model.state_dict()
    moved = sum(float((a[k].float() - init[k].float()).abs().sum()) for k in a)
    diff = sum(float((a[k].float() - b[k].float()).abs().sum()) for k in a)
    assert moved > 0 and diff < 1e-3 * moved, (diff, moved)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=2e-5)


def test_bf16_autocast_on_cpu_gives_finite_losses(tmp_path, data_dir, caplog):
    from models.precision import native_bf16

    with caplog.at_level(logging.WARNING, logger="train.trainer"):
        trainer = Trainer(_cfg(**{"run.amp": "bf16", "schedule.max_steps": 2}), run_dir=tmp_path)
    assert ("without bf16 instructions" in caplog.text) is not native_bf16("cpu")  # emulated bf16 is slow: said
    seen = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    summary = trainer.train()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert summary["step"] == 2 and summary["nonfinite_steps"] == 0
    assert all(math.isfinite(v) for v in summary["losses"].values()) and summary["losses"]["loss"] > 0


def test_amp_auto_trains_in_bf16_only_on_a_cpu_with_bf16_instructions(tmp_path, data_dir):
    from models.precision import native_bf16

    trainer = Trainer(_cfg(**{"run.amp": "auto", "schedule.max_steps": 1}), run_dir=tmp_path)
    assert trainer.amp == ("bf16" if native_bf16("cpu") else "none")
    assert trainer.amp_dtype == (torch.bfloat16 if native_bf16("cpu") else None)
    assert trainer.train()["step"] == 1


def test_fp16_on_cpu_is_refused(tmp_path):
    from core.errors import InputError

    with pytest.raises(InputError, match="run.amp=fp16"):
        Trainer(_cfg(**{"run.amp": "fp16"}), run_dir=tmp_path)


def test_lr_schedules():
    cfg = _cfg(**{"schedule.kind": "step", "schedule.milestones": [2, 4], "schedule.warmup_steps": 10,
                  "schedule.warmup_factor": 0.1})
    assert lr_factor(cfg, 0, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 5, 10) == pytest.approx(0.55)
    assert lr_factor(cfg, 19, 10) == 1.0 and lr_factor(cfg, 20, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 45, 10) == pytest.approx(0.01)
    cos = _cfg(**{"schedule.kind": "cosine", "schedule.epochs": 10, "schedule.min_lr_factor": 0.1})
    assert lr_factor(cos, 0, 10) == 1.0 and lr_factor(cos, 50, 10) == pytest.approx(0.55)
    assert lr_factor(cos, 100, 10) == pytest.approx(0.1)


def test_the_logged_lr_is_the_one_each_step_trained_with(tmp_path):
    """A warm-up from 0.1 x lr: step 1 trained at 1e-4 and its record says so (not the next step's rate)."""
    cfg = _cfg(**{"schedule.max_steps": 3, "schedule.warmup_steps": 4, "schedule.warmup_factor": 0.1})
    Trainer(cfg, run_dir=tmp_path).train()
    lrs = {r["step"]: r["lr"] for r in _log(tmp_path, "train")}
    assert lrs[1] == pytest.approx(1e-4)
    assert lrs == pytest.approx({n: 1e-3 * lr_factor(cfg, n - 1, 3) for n in (1, 2, 3)})


def test_backbone_lr_factor_on_a_network_without_a_separate_backbone_is_refused(tmp_path):
    from core.errors import InputError

    with pytest.raises(InputError, match="optim.backbone_lr_factor"):
        Trainer(_cfg(**{"optim.backbone_lr_factor": 0.3}), run_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_frozen_backbone_trains_heads_only(tmp_path, data_dir):
    trainer = Trainer(_cfg(**{"model.freeze_backbone": True, "schedule.max_steps": 1}), run_dir=tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k]) and "running" not in k
               and "num_batches" not in k}
    assert changed and all(k.startswith("headnets.") for k in changed)


def test_init_from_checkpoint_with_fresh_heads(tmp_path, data_dir):
    src = tmp_path / "src"
    Trainer(_cfg(**{"schedule.max_steps": 1}), run_dir=src).train()
    ckpt = S.latest_checkpoint(src)
    trained = _weights(ckpt)
    t = Trainer(_cfg(**{"model.init_checkpoint": str(ckpt), "model.reinit_heads": True, "run.seed": 5}),
                run_dir=tmp_path / "dst")
    own = t.model.state_dict()
    backbone = [k for k in own if not k.startswith("headnets.")]
    assert all(torch.equal(own[k], trained[k]) for k in backbone)
    assert not torch.equal(own["headnets.0.hp_convs.0.weight"], trained["headnets.0.hp_convs.0.weight"])


def test_init_widen_grows_a_narrower_checkpoint_with_its_function_intact(tmp_path, data_dir):
    src = tmp_path / "src"
    Trainer(_cfg(**{"schedule.max_steps": 2}), run_dir=src).train()
    ckpt = str(S.latest_checkpoint(src))
    wide = {"stem": 8, "widths": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "expand": 2, "channels": 24}
    narrow = Trainer(_cfg(**{"model.init_checkpoint": ckpt}), run_dir=tmp_path / "narrow").model.eval()
    grown = Trainer(_cfg(**{"model.kwargs": wide, "model.init_checkpoint": ckpt, "model.init_widen": True}),
                    run_dir=tmp_path / "grown").model.eval()
    assert grown.headnets[0].hp_convs[0].in_channels == 24 and narrow.headnets[0].hp_convs[0].in_channels == 16
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = narrow(x)[0], grown(x)[0]
    assert a["heatmaps"].abs().max() > 0
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_widened_copies_the_leading_block_and_cuts_new_inputs_to_old_outputs():
    from models.widen import fits_inside, widened

    small, big = torch.ones(2, 3, 1, 1), torch.full((4, 5, 1, 1), 7.0)
    grown = widened(small, big)
    assert torch.equal(grown[:2, :3], small) and torch.all(grown[:2, 3:] == 0) and torch.all(grown[2:] == 7)
    assert torch.equal(widened(torch.ones(2), torch.zeros(3)), torch.tensor([1.0, 1.0, 0.0]))
    assert fits_inside(small, big) and not fits_inside(big, small) and not fits_inside(small, small)
    assert not fits_inside(torch.ones(2, 3, 1, 1), torch.ones(4, 5, 3, 3))  # another kernel is another function


def _log(run_dir: Path, kind: str) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == kind]


def test_resume_with_another_learning_rate_or_length_follows_the_new_schedule(tmp_path):
    Trainer(_cfg(**{"schedule.max_steps": 2}), run_dir=tmp_path).train()
    new = _cfg(**{"optim.lr": 1e-2, "schedule.epochs": 4, "schedule.max_steps": 4})
    resumed = Trainer(new, resume=tmp_path)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * lr_factor(new, 2, 3))
    resumed.train()
    lrs = {r["step"]: r["lr"] for r in _log(tmp_path, "train")}
    # step n trains with the rate after n - 1 steps
    assert lrs[3] == pytest.approx(1e-2 * lr_factor(new, 2, 3)) and lrs[4] == pytest.approx(1e-2 * lr_factor(new, 3, 3))


def test_resume_with_another_batch_size_keeps_the_schedule_at_the_same_point_of_the_data(tmp_path):
    """One epoch of 3 steps at batch 2, resumed at batch 3 (2 steps an epoch): half of the 2-epoch cosine is
    done, so the next step trains at the cosine's middle, not where step 3 of 4 would be."""
    cos = {"schedule.kind": "cosine", "schedule.epochs": 2}
    Trainer(_cfg(**cos, **{"schedule.max_steps": 3}), run_dir=tmp_path).train()
    new = _cfg(**cos, **{"data.batch_size": 3})
    resumed = Trainer(new, resume=tmp_path)
    assert (resumed.step, resumed.epoch, resumed.batches_done) == (3, 1, 0)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)


def test_a_resume_that_cannot_load_names_the_cause_and_keeps_the_config(tmp_path):
    from core.errors import InputError

    Trainer(_cfg(**{"schedule.max_steps": 1}), run_dir=tmp_path).train()
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(InputError, match="does not fit this config's trainable parameters.*freeze_backbone"):
        Trainer(_cfg(**{"model.freeze_backbone": True}), resume=tmp_path)
    assert (tmp_path / "config.yaml").read_text() == before



@pytest.mark.parametrize("change", [{"model.with_scale": True}, {"model.skeleton": "dense"}])
def test_a_resume_with_another_network_is_refused_in_one_line_and_keeps_the_config(tmp_path, change):
    """Was a RuntimeError traceback listing every tensor whose shape differs."""
    from core.errors import InputError

    Trainer(_cfg(**{"schedule.max_steps": 1}), run_dir=tmp_path).train()
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(InputError, match=r"cannot resume .*ckpt_00000001\.pt: its weights do not fit this config's "
                                         r"network .*model\.") as err:
        Trainer(_cfg(**change), resume=tmp_path)
    assert "\n" not in str(err.value)
    assert (tmp_path / "config.yaml").read_text() == before

def test_a_run_killed_while_validating_validates_that_epoch_on_resume(tmp_path, data_dir):
    val = {"run.val_every_epochs": 1, "run.val_on_train": True, "run.val_images": 2, "run.val_input_size": 64}
    Trainer(_cfg(**val, **{"schedule.epochs": 1}), run_dir=tmp_path).train()
    assert [r["step"] for r in _log(tmp_path, "val")] == [3]
    # as if killed after the epoch's checkpoint, before its validation was logged
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    (tmp_path / "log.jsonl").write_text("".join(f"{x}\n" for x in lines if json.loads(x)["kind"] != "val"))
    Trainer(_cfg(**val, **{"schedule.epochs": 2}), resume=tmp_path).train()
    assert [r["step"] for r in _log(tmp_path, "val")] == [3, 6]


def test_a_log_line_cut_short_by_a_full_disk_does_not_stop_the_resume(tmp_path, data_dir):
    val = {"run.val_every_epochs": 1, "run.val_on_train": True, "run.val_images": 2, "run.val_input_size": 64}
    Trainer(_cfg(**val, **{"schedule.epochs": 1}), run_dir=tmp_path).train()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    cut = next(x for x in lines if json.loads(x)["kind"] == "val")[:25]  # the disk filled while it was written
    (tmp_path / "log.jsonl").write_text("".join(f"{x}\n" for x in lines if json.loads(x)["kind"] == "train") + cut)
    Trainer(_cfg(**val, **{"schedule.epochs": 2}), resume=tmp_path).train()
    rest = [x for x in (tmp_path / "log.jsonl").read_text().splitlines() if x != cut]  # the next record: own line
    assert [r["step"] for r in map(json.loads, rest) if r["kind"] == "val"] == [3, 6]


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` in one file fail with EFBIG, as writes on a full disk fail with ENOSPC."""
    import resource

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_checkpoint_that_cannot_be_written_is_named_in_one_error_and_leaves_no_file(tmp_path):
    from core.errors import InputError

    trainer = Trainer(_cfg(**{"schedule.max_steps": 1}), run_dir=tmp_path)
    with file_size_limit(20_000), pytest.raises(InputError) as err:
        trainer.train()
    message = str(err.value)
    assert "ckpt_00000001.pt" in message and "--resume" in message and "\n" not in message
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_under_ddp_every_process_stops_with_the_checkpoint_error(tmp_path):
    """Rank 0 cannot write the checkpoint (real writes past a file-size limit fail, as on a full disk): every
    process stops with the same line, not the others with gloo's 'Connection closed by peer' traceback."""
    import resource

    def limit() -> None:  # in the torchrun process, inherited by both workers
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))

    over = _overrides(**{"schedule.max_steps": 1})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "train", "--run-dir", str(tmp_path / "run")] + [a for o in over for a in ("--set", o)]
    rc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150, preexec_fn=limit,
                        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert rc.returncode != 0
    lines = [line for line in rc.stderr.splitlines() if line.startswith("gopose train: error: cannot write checkpoint")]
    assert len(lines) == 2 and lines[0] == lines[1], rc.stderr[-3000:]
    assert "Connection closed by peer" not in rc.stderr


def test_a_step_checkpoint_due_at_an_epoch_end_is_written(tmp_path):
    Trainer(_cfg(**{"run.checkpoint_every_steps": 3, "run.checkpoint_every_epochs": 5, "run.keep_last": 9}),
            run_dir=tmp_path).train()
    assert [p.name for p in S.list_checkpoints(tmp_path)] == ["ckpt_00000003.pt", "ckpt_00000006.pt"]


def test_a_signal_stops_a_single_process_after_the_current_step(tmp_path, monkeypatch):
    """SIGINT during step 2 of a run that logs every 20 steps: it stops after step 2, not at the next log step."""
    trainer = Trainer(_cfg(**{"run.log_every_steps": 20}), run_dir=tmp_path)
    step = trainer.train_step

    def step_then_signal(batch):
        out = step(batch)
        if trainer.step == 1:  # counted after this call: this is step 2
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(trainer, "train_step", step_then_signal)
    summary = trainer.train()
    assert (summary["stopped"], summary["step"]) == ("signal", 2)
    assert S.latest_checkpoint(tmp_path).name == "ckpt_00000002.pt"


@pytest.mark.parametrize("key, value", [("optim.betas", "[a, b]"), ("loss.stack_weights", "[a]"),
                                        ("optim.betas", "[0.9, 1.5]")])
def test_list_values_of_the_wrong_kind_name_their_key(key, value):
    from core.errors import InputError

    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        load_config(None, [f"{key}={value}"])


def test_stack_weights_that_do_not_fit_the_network_stop_before_the_run_starts(tmp_path):
    """Two weights for a one-stack network: refused while the run is built (before: at the first step, after the
    run folder and the data workers were made)."""
    from core.errors import InputError

    with pytest.raises(InputError, match="2 weights for a network with 1 stack"):
        Trainer(_cfg(**{"loss.stack_weights": [1.0, 1.0]}), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_of_a_missing_run_names_the_folder(tmp_path):
    from core.errors import InputError

    with pytest.raises(InputError, match="no checkpoints"):
        Trainer(_cfg(), resume=tmp_path)


def test_resume_of_a_folder_that_does_not_exist_says_so_and_creates_nothing(tmp_path):
    from core.errors import InputError

    with pytest.raises(InputError, match="new does not exist"):
        Trainer(_cfg(), resume=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_new_run_is_refused_in_a_folder_that_holds_another_run(tmp_path):
    """Its checkpoints would mix with the new run's (and pruning would delete the new ones)."""
    from core.errors import InputError

    S.checkpoint_path(tmp_path, 7).parent.mkdir()
    S.checkpoint_path(tmp_path, 7).write_bytes(b"another run")
    with pytest.raises(InputError, match=f"{tmp_path} already holds a run.*--resume"):
        Trainer(_cfg(), run_dir=tmp_path)
    assert S.checkpoint_path(tmp_path, 7).read_bytes() == b"another run"


def test_an_unknown_validation_split_fails_before_training(tmp_path, data_dir):
    """Not after the first epoch, and naming data.val_split rather than the run's subset file."""
    from core.errors import InputError

    subset = data_dir / "coco" / "val2017_subset"
    raw = json.loads((subset / "annotations.json").read_text())
    for i, img in enumerate(raw["images"]):
        img["split"] = "val" if i % 2 else "train"
    ann = tmp_path / "split.json"
    ann.write_text(json.dumps(raw))
    val = {"data.val_annotations": str(ann), "data.val_images": str(subset / "images"), "data.val_split": "vall",
           "run.val_every_epochs": 1}
    with pytest.raises(InputError, match=r"data\.val_split 'vall'.*train, val"):
        Trainer(_cfg(**val), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # a config that fails leaves no run folder behind


def test_a_validation_file_without_people_fails_before_training_naming_it(tmp_path, data_dir):
    """Not after the first epoch as 'RUN/val_subset.json lists no images'."""
    from core.errors import InputError

    raw = json.loads((MINI / "annotations.json").read_text())
    raw["annotations"] = []
    ann = tmp_path / "nobody.json"
    ann.write_text(json.dumps(raw))
    val = {"data.val_annotations": str(ann), "data.val_images": str(MINI / "images"), "run.val_every_epochs": 1}
    with pytest.raises(InputError, match=r"data\.val_annotations .*nobody\.json.*no image with people"):
        Trainer(_cfg(**val), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()



def test_a_missing_validation_image_folder_fails_before_training_naming_it(tmp_path, data_dir):
    """Not after the first epoch (hours on COCO) as 'image folder ... does not exist'."""
    from core.errors import InputError

    val = {"data.val_annotations": str(MINI / "annotations.json"), "data.val_images": str(tmp_path / "val2017"),
           "run.val_every_epochs": 1}
    with pytest.raises(InputError, match=r"data\.val_images .*val2017 does not exist"):
        Trainer(_cfg(**val), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_new_run_in_a_folder_of_a_run_killed_before_its_first_checkpoint_starts_its_own_log(tmp_path, data_dir):
    """The shipped recipes name their run folder (run.name); rerunning one after a crash in its first epoch
    appended the new run's records (steps from 1 again) to the dead run's log.jsonl. That log is kept aside."""
    from train.trainer import read_log_records

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    dead = json.dumps({"kind": "train", "step": 40, "epoch": 0, "loss": 9.0}) + "\n"
    (run / "log.jsonl").write_text(dead)
    Trainer(_cfg(**{"schedule.max_steps": 1}), run_dir=run).train()
    steps = [r["step"] for r in read_log_records(run / "log.jsonl")]
    assert steps == [1, 1]  # its train record and its end record only
    assert (run / "log.abandoned.jsonl").read_text() == dead

def test_a_folder_given_as_training_annotations_is_called_a_folder_and_leaves_no_run_folder(tmp_path):
    from core.errors import InputError

    with pytest.raises(InputError, match=f"data.train_annotations {tmp_path} is a folder"):
        Trainer(_cfg(**{"data.train_annotations": str(tmp_path)}), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_refuses_run_dir_with_resume_in_one_line(tmp_path, capsys):
    from app.cli import main

    assert main(["train", "--resume", str(tmp_path / "run"), "--run-dir", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run-dir" in err[0] and "--resume" in err[0]
    assert not (tmp_path / "other").exists()


def test_crowdpose_training_and_validation_with_the_official_protocol(tmp_path, data_dir):
    """One epoch on the shared CrowdPose images (14 keypoints, 15 limbs), validated with the CrowdPose evaluator."""
    mini = data_dir / "crowdpose" / "mini"
    cfg = _cfg(**{"data.dataset": "crowdpose", "data.image_ids": [], "data.batch_size": 2, "schedule.epochs": 1,
                  "data.train_annotations": str(mini / "test_crowdpose.json"), "data.train_images": str(mini),
                  "run.val_on_train": True, "run.val_every_epochs": 1, "run.val_input_size": 64})
    trainer = Trainer(cfg, run_dir=tmp_path)
    assert trainer.contract.n_keypoints == 14 and trainer.contract.n_limbs == 15
    summary = trainer.train()
    assert summary["step"] == 1 and summary["best_ap"] is not None
    val = [r for r in trainer.history if r["kind"] == "val"]
    assert val and 0.0 <= val[0]["AP"] <= 1.0
    assert (tmp_path / "best.pt").is_file() and json.loads((tmp_path / "best.json").read_text())["step"] == 1
    summary_json = json.loads(next((tmp_path / "val").glob("step_*/summary.json")).read_text())
    assert "AP_hard" in summary_json["metrics"]


def test_the_trainer_has_no_hidden_data_default(tmp_path):
    """Data defaults belong to the command line (its demo set), never to the library."""
    from core.errors import InputError

    with pytest.raises(InputError, match="data.train_annotations"):
        Trainer(load_config(None, [TINY, "run.progress=false", "run.tensorboard=false"]), run_dir=tmp_path)


def test_val_on_train_with_several_sources_validates_the_first_sources_training_images(tmp_path, data_dir):
    """Image ids of another source must not pick images of the first one (here its held-out split)."""
    raw = json.loads((MINI / "annotations.json").read_text())
    with_people = sorted({a["image_id"] for a in raw["annotations"] if a.get("num_keypoints", 0) > 0})
    a, b, c = with_people[:3]

    def subset(ids, split=None, renumber=None):
        images = [dict(i, split=split(i["id"]) if split else None) for i in raw["images"] if i["id"] in ids]
        anns = [dict(x) for x in raw["annotations"] if x["image_id"] in ids]
        for item in images + anns:  # renumber: the second source's image takes a first-source id
            key = "id" if "file_name" in item else "image_id"
            item[key] = (renumber or {}).get(item[key], item[key])
        return dict(raw, images=images, annotations=anns)

    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(subset({a, b}, split=lambda i: "train" if i == a else "val")))
    second.write_text(json.dumps(subset({c}, renumber={c: b})))
    sources = [{"annotations": str(first), "images": str(MINI / "images"), "split": "train"},
               {"annotations": str(second), "images": str(MINI / "images")}]
    cfg = _cfg(**{"data.sources": sources, "data.image_ids": [], "run.val_on_train": True,
                  "run.val_every_epochs": 1})
    subset_file, images = Trainer(cfg, run_dir=tmp_path / "run").validation_set()
    assert [i["id"] for i in json.loads(subset_file.read_text())["images"]] == [a]
    assert images == MINI / "images"


def test_a_heatmap_sigma_too_narrow_for_the_stride_is_refused_before_training(tmp_path, data_dir):
    """At sigma 1 px and stride 4 a keypoint between cells is drawn at 0.018, below the decoder's 0.04."""
    from core.errors import InputError

    with pytest.raises(InputError, match=r"data.target_sigma 1 px is too narrow .* at least 1.2"):
        Trainer(_cfg(**{"data.target_sigma": 1.0}), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    Trainer(_cfg(**{"data.target_sigma": 1.2, "schedule.max_steps": 1}), run_dir=tmp_path / "ok").train()


class _RecordingWriter:
    """Stands in for TensorBoard's ``SummaryWriter`` (an optional extra): records its arguments and scalars and
    leaves an event file, as the real one does."""

    def __init__(self, made: list, log_dir: str, purge_step: int | None = None, **_: object) -> None:
        self.log_dir, self.purge_step, self.scalars = Path(log_dir), purge_step, []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / f"events.out.tfevents.{len(made)}.test").write_bytes(b"")
        made.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, step))

    def close(self) -> None:
        pass


def _fake_tensorboard(monkeypatch) -> list:
    """Install a recording ``torch.utils.tensorboard``; returns the list of writers the trainer makes."""
    import functools
    import types

    made: list = []
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = functools.partial(_RecordingWriter, made)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    return made


def test_a_new_run_sets_the_tensorboard_events_of_a_run_killed_before_its_first_checkpoint_aside(tmp_path,
                                                                                                 monkeypatch):
    """The dead run's log.jsonl was set aside, but its event files stayed in tensorboard/, where TensorBoard
    showed its curves mixed with the new run's (the same steps, one run folder)."""
    writers = _fake_tensorboard(monkeypatch)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 40, "epoch": 0, "loss": 9.0}) + "\n")
    dead = run / "tensorboard" / "events.out.tfevents.1.dead"
    dead.parent.mkdir()
    dead.write_bytes(b"the dead run")
    (run / "tensorboard.abandoned").mkdir()  # an older abandoned run's: replaced, as log.abandoned.jsonl is
    (run / "tensorboard.abandoned" / "events.out.tfevents.0.older").write_bytes(b"older")
    Trainer(_cfg(**{"schedule.max_steps": 1, "run.tensorboard": True}), run_dir=run).train()
    assert [p.name for p in (run / "tensorboard.abandoned").iterdir()] == [dead.name]
    assert (run / "tensorboard.abandoned" / dead.name).read_bytes() == b"the dead run"
    assert [p.name for p in (run / "tensorboard").iterdir()] == ["events.out.tfevents.0.test"]
    assert len(writers) == 1 and writers[0].purge_step is None and {s for _, s in writers[0].scalars} == {1}


def test_a_resumed_run_hides_the_tensorboard_scalars_logged_after_its_checkpoint(tmp_path, monkeypatch):
    """A run killed after logging steps past its last checkpoint logs them again when resumed: TensorBoard's
    purge step (the first step the resumed run logs) hides the earlier values, so each step has one."""
    writers = _fake_tensorboard(monkeypatch)
    run = tmp_path / "run"
    Trainer(_cfg(**{"schedule.max_steps": 2, "run.tensorboard": True}), run_dir=run).train()
    Trainer(_cfg(**{"schedule.max_steps": 3, "run.tensorboard": True}), resume=run).train()
    assert [w.purge_step for w in writers] == [None, 3]
    assert not (run / "tensorboard.abandoned").exists()


FIVE_IMAGES = [535506, 84533, 30752, 37666, 463557]


@pytest.mark.parametrize("extra, words", [
    ({"data.batch_size": 1}, ["data.batch_size 1", "data.input_size 32", "model.freeze_bn"]),
    ({"data.batch_size": 2, "data.drop_last": False, "data.image_ids": FIVE_IMAGES},
     ["data.drop_last", "last batch of 1", "data.input_size 32", "per channel"]),
])
def test_a_step_of_one_image_on_a_1x1_deepest_feature_map_is_refused_before_training(tmp_path, extra, words):
    """BatchNorm cannot normalise one value per channel: a batch of one image crashed at its first step (the
    whole epoch lost when it was the last, partial batch) once the network's deepest map was 1x1 (data.input_size
    equal to its input multiple: 32 here, 128 for hourglass104)."""
    from core.errors import InputError

    with pytest.raises(InputError) as err:
        Trainer(_cfg(**{"data.input_size": 32, **extra}), run_dir=tmp_path / "run")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and all(w in message for w in words), message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra", [
    {"data.batch_size": 1, "data.input_size": 64},  # a 2x2 deepest map: 2 values per channel
    {"data.batch_size": 1, "data.input_size": 32, "model.freeze_bn": True},  # running statistics
    {"data.batch_size": 2, "data.input_size": 32, "data.image_ids": FIVE_IMAGES},  # drop_last drops the 5th
])
def test_a_batch_of_one_image_trains_where_batchnorm_can_take_it(tmp_path, extra):
    summary = Trainer(_cfg(**{"schedule.epochs": 1, "schedule.max_steps": 3, **extra}), run_dir=tmp_path).train()
    assert summary["step"] >= 2 and math.isfinite(summary["losses"]["loss"])
