"""The ``gopose`` command line layer (``app/cli.py``) and the option checks of ``gopose oracle`` and ``gopose eval``:
bad input exits 2 with one line naming the option, before any work."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_ctrl_c_while_starting_is_one_line(ped_video: Path, tmp_path: Path) -> None:
    """Ctrl-C in the first seconds (torch still importing, before the command runs): exit 130 with one line, as
    during the run (before: a traceback from inside the import)."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see when torch is being imported")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "annotate", str(ped_video), "--out",
                             str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text(errors="replace"):
            break  # torch's libraries are loading: its Python side takes a second more
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "gopose: interrupted"


@pytest.mark.parametrize("option, value, message", [
    ("--limit", "0", "argument --limit: must be at least 1, got 0"),     # was: every image
    ("--limit", "-2", "argument --limit: must be at least 1, got -2"),   # was: all images but the last two
    ("--topk", "0", "argument --topk: must be at least 1, got 0"),       # was: a traceback
    ("--threshold", "-1", "argument --threshold: must be > 0 and <= 1, got -1"),
    ("--dist-max", "0", "argument --dist-max: must be > 0, got 0"),
])
def test_oracle_numbers_are_checked_by_the_parser(option: str, value: str, message: str, data_dir: Path,
                                                  capsys) -> None:
    annotations = data_dir / "coco" / "val2017_subset" / "annotations.json"
    assert main(["oracle", "--annotations", str(annotations), option, value]) == 2
    assert message in _one_line(capsys)


@pytest.fixture
def eval_args(data_dir: Path) -> list[str]:
    subset = data_dir / "coco" / "val2017_subset"
    return ["eval", "--oracle-model", "--annotations", str(subset / "annotations.json"), "--images",
            str(subset / "images"), "--limit", "1", "--workers", "0", "--no-progress"]


def test_eval_checks_its_output_folders_before_evaluating(eval_args: list[str], tmp_path: Path, capsys) -> None:
    """A file given as --out or --draw-misses is named at once (before: found after the whole evaluation, naming
    no option, with results.json already written)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = tmp_path / "out"
    assert main([*eval_args, "--out", str(a_file)]) == 2
    assert f"--out {a_file} is a file, not a folder" in _one_line(capsys)
    assert main([*eval_args, "--out", str(out), "--draw-misses", str(a_file / "pics")]) == 2
    assert f"--draw-misses {a_file / 'pics'}: {a_file} is a file, not a folder" in _one_line(capsys)
    assert not out.exists()


def test_eval_names_its_model_before_it_starts(data_dir: Path, tmp_path: Path, capsys) -> None:
    """As ``gopose annotate``, ``gopose eval`` says which model runs and why before any work (before: only the
    file's path, in the report printed after the whole evaluation, and nothing when the run then failed)."""
    subset = data_dir / "coco" / "val2017_subset"
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["eval", "--annotations", str(subset / "annotations.json"), "--images", str(empty), "--limit", "1",
            "--workers", "0", "--no-progress", "--out", str(tmp_path / "out")]
    builtin = ROOT / "resources" / "models" / "default.pt"
    assert main(args) == 2
    model, error = capsys.readouterr().err.strip().splitlines()
    assert model == f"gopose eval: model default (the built-in model): {builtin}"
    assert "missing from" in error
    assert main([*args, "--checkpoint", str(builtin)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == f"gopose eval: model default (--checkpoint): {builtin}"


@pytest.mark.parametrize("argv, message", [
    (["--skeleton", "bogus"], "--skeleton 'bogus' is not a coco skeleton"),  # was: a KeyError traceback
    (["--topk", "0"], "argument --topk: must be at least 1, got 0"),        # was: the whole DecoderConfig
    (["--threshold", "1.5"], "argument --threshold: must be > 0 and <= 1, got 1.5"),
    (["--dist-max", "-1"], "argument --dist-max: must be > 0, got -1"),
])
def test_eval_oracle_options_are_one_line(argv: list[str], message: str, eval_args: list[str], tmp_path: Path,
                                          capsys) -> None:
    assert main([*eval_args, "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in _one_line(capsys)


def test_the_overview_of_commands_with_sub_commands_names_each(capsys) -> None:
    """``gopose --help`` lists what ``models`` and ``bench`` hold (before: ``models package`` was missing)."""
    import re

    from app.commands.bench import BENCHES
    from app.commands.models import SUBCOMMANDS

    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    models = out[out.index(" models "):out.index(" train ")]
    bench = out[out.index(" bench "):]
    assert [n for n in SUBCOMMANDS if not re.search(rf"\b{n}\b", models)] == []
    assert [n for n in BENCHES if not re.search(rf"\b{n}\b", bench)] == []


class _Writes:
    """A stderr that keeps each write apart, as processes sharing one pipe see them."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_an_error_line_is_one_write(eval_args: list[str], tmp_path: Path, monkeypatch) -> None:
    """Under torchrun every rank prints the same error line to one stderr: a line whose newline came in a second
    write was interleaved with another rank's (CI saw two lines glued into one)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    stderr = _Writes()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main([*eval_args, "--out", str(a_file)]) == 2
    errors = [w for w in stderr.writes if "error:" in w]
    assert len(errors) == 1 and errors[0].endswith("is a file, not a folder\n"), stderr.writes


@pytest.mark.parametrize("value, message", [
    ("100000", "must be at most 4096 (pixels of the network's square input"),  # was: a 17 GB allocation (or the
    ("16", "must be at least 32, got 16"),                                      # OOM killer), a whole run for each
])
@pytest.mark.parametrize("command", ["annotate", "eval", "oracle", "gui"])
def test_one_long_edge_check_for_every_command(command: str, value: str, message: str, street_video: Path,
                                               eval_args: list[str], data_dir: Path, tmp_path: Path,
                                               capsys) -> None:
    """``--long-edge`` is the side of the network's square canvas: every command refuses an absurd one (and one
    below 32) in one line naming the option and the limit, before loading or creating anything (one check,
    ``core.geometry.long_edge_problem``; the GUI words it as its other option errors)."""
    out = tmp_path / "out"
    argv = {"annotate": ["annotate", str(street_video), "--out", str(out)],
            "eval": [*eval_args, "--out", str(out)],
            "oracle": ["oracle", "--annotations", str(data_dir / "coco" / "val2017_subset" / "annotations.json")],
            "gui": ["gui"]}[command]
    assert main([*argv, "--long-edge", value]) == 2
    line = _one_line(capsys)
    option = "--long-edge " if command == "gui" else "argument --long-edge: "  # as each command's other errors
    assert f"{option}{message}" in line
    assert not out.exists()


def test_eval_refuses_an_absurd_fixed_height_as_a_long_edge(eval_args: list[str], tmp_path: Path, capsys) -> None:
    assert main([*eval_args, "--out", str(tmp_path / "out"), "--fixed-height", "--height", "50000"]) == 2
    assert "argument --height: must be at most 4096" in _one_line(capsys)
