"""The user model folder: add/list/resolve real checkpoints, the explicit default model, downloads verified against
a local server, and clear refusals of files that are not checkpoints."""
from __future__ import annotations

import functools
import json
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from app.engine import EngineConfig, NoModelError, load_estimator
from app.model_store import (add_model, builtin_entry, choose_model, clear_default, download_model, list_models,
                             remove_model, resolve_model, set_default, store_dir)
from core.errors import InputError


def test_store_location(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOPOSE_HOME", str(tmp_path))
    assert store_dir() == tmp_path / "models"
    monkeypatch.delenv("GOPOSE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store_dir() == tmp_path / "xdg" / "gopose" / "models"


def test_no_model_explains_what_to_do(tmp_path: Path, without_builtin_model: Path) -> None:
    with pytest.raises(NoModelError) as info:
        resolve_model(None, root=tmp_path)
    msg = str(info.value)
    assert "gopose models add" in msg and "PoseNet_77_epoch.pth" in msg and isinstance(info.value, InputError)
    with pytest.raises(NoModelError):
        load_estimator(None, store=tmp_path)
    with pytest.raises(InputError, match="checkpoint file not found"):
        resolve_model("missing.pt", root=tmp_path)


def test_add_list_resolve_load(checkpoint: Path, tmp_path: Path, without_builtin_model: Path) -> None:
    entry = add_model(checkpoint, root=tmp_path)
    assert entry.name == "realtime_random" and entry.arch == "realtime" and entry.contract["spec"] == "coco"
    assert entry.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert [e.name for e in list_models(tmp_path)] == ["realtime_random"]
    assert resolve_model(None, root=tmp_path)[0] == tmp_path / "realtime_random.pt"
    assert resolve_model("realtime_random", root=tmp_path)[0] == tmp_path / "realtime_random.pt"
    with pytest.raises(InputError, match="already installed"):
        add_model(checkpoint, root=tmp_path)
    add_model(checkpoint, name="second", root=tmp_path)
    with pytest.raises(InputError, match="installed: realtime_random, second"):
        resolve_model("third", root=tmp_path)
    est = load_estimator("second", EngineConfig(long_edge=128), store=tmp_path)
    assert est.contract.spec.name == "coco" and est.name == "second"


def test_add_rejects_what_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_bytes(b"not a checkpoint at all")
    store = tmp_path / "store"
    with pytest.raises(InputError):
        add_model(bad, root=store)
    assert list_models(store) == [] and not list(store.glob("*.pt"))
    with pytest.raises(InputError, match="invalid model name"):
        add_model(bad, name="../evil", root=store)


def _someone_waits_for(lock: Path) -> bool:
    """Whether a process or thread is blocked on ``lock`` (Linux's /proc/locks marks waiters with '->')."""
    inode = f":{lock.stat().st_ino} "
    return any("->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines())


def test_adds_of_one_name_take_turns(checkpoint: Path, tmp_path: Path) -> None:
    """Two `gopose models add FILE --name m --force` at once could leave m.pt of one file and m.json of the other
    (1 of 4 tries: a wrong sha256, contract and architecture listed and used); now installs take turns."""
    from core.io.files import exclusive
    from models.checkpoint import save_checkpoint
    from models.factory import build_model, make_config

    store = tmp_path / "store"
    add_model(checkpoint, name="m", root=store)
    other = save_checkpoint(tmp_path / "crowd.pt", build_model(make_config("realtime", spec="crowdpose")), epoch=0)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (add_model(other, name="m", root=store, force=True), done.set()))
    with exclusive(store / ".store"):  # another install is writing m.pt and m.json
        worker.start()
        lock = store / ".store.lock"
        for _ in range(1000):  # 10 s hang guard
            if done.is_set() or _someone_waits_for(lock):
                break
            done.wait(0.01)
        assert not done.is_set(), "the second install did not wait for the first"
        assert (store / "m.pt").read_bytes() == checkpoint.read_bytes()
    worker.join(30)
    meta = json.loads((store / "m.json").read_text())
    assert meta["contract"]["spec"] == "crowdpose" and meta["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert (store / "m.pt").read_bytes() == other.read_bytes()


@pytest.fixture()
def http_folder(tmp_path: Path):
    folder = tmp_path / "www"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _visible(store: Path) -> list[str]:
    """The store's files but its hidden ones (the lock that installs take turns on, the default's choice)."""
    return sorted(p.name for p in store.iterdir() if not p.name.startswith("."))


def test_download_verifies_sha256(checkpoint: Path, tmp_path: Path, http_folder) -> None:
    folder, base = http_folder
    (folder / "net.pt").write_bytes(checkpoint.read_bytes())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    store = tmp_path / "store"
    with pytest.raises(InputError, match="failed verification"):
        download_model(f"{base}/net.pt", "0" * 64, root=store)
    assert list(store.iterdir()) == []  # nothing installed, no partial file
    seen = []
    entry = download_model(f"{base}/net.pt", digest, root=store, progress=lambda d, t: seen.append((d, t)))
    assert entry.name == "net" and entry.sha256 == digest and entry.source == f"{base}/net.pt"
    assert seen[-1] == (checkpoint.stat().st_size, checkpoint.stat().st_size)
    assert _visible(store) == ["net.json", "net.pt"]
    with pytest.raises(InputError, match="cannot download"):
        download_model(f"{base}/missing.pt", digest, root=store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="cannot download"):
        download_model(f"http://127.0.0.1:{port}/net.pt", digest, name="elsewhere", root=store)
    with pytest.raises(InputError, match="64 hex"):
        download_model(f"{base}/net.pt", "abc", root=store)
    from app.cli import main

    assert main(["models", "download", f"{base}/net.pt", "--sha256", digest, "--name", "via-cli",
                 "--store", str(store)]) == 0
    assert [e.name for e in list_models(store)] == ["net", "via-cli"]
    assert main(["models", "download", f"{base}/net.pt", "--sha256", "1" * 64, "--name", "bad",
                 "--store", str(store)]) == 2


def test_download_refuses_a_name_before_downloading(checkpoint: Path, tmp_path: Path, http_folder) -> None:
    """A taken or invalid name was refused only after the whole (for Hourglass-104: 750 MB) file was downloaded
    and verified; now before the first byte."""
    folder, base = http_folder
    (folder / "net.pt").write_bytes(checkpoint.read_bytes())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    store = tmp_path / "store"
    add_model(checkpoint, name="net", root=store)
    seen = []
    with pytest.raises(InputError, match="a model named 'net' is already installed"):
        download_model(f"{base}/net.pt", digest, root=store, progress=lambda d, t: seen.append(d))
    with pytest.raises(InputError, match="invalid model name '../net'"):
        download_model(f"{base}/net.pt", digest, name="../net", root=store, progress=lambda d, t: seen.append(d))
    assert seen == [] and _visible(store) == ["net.json", "net.pt"]
    entry = download_model(f"{base}/net.pt", digest, root=store, force=True, progress=lambda d, t: seen.append(d))
    assert entry.name == "net" and entry.source == f"{base}/net.pt" and seen


@pytest.fixture()
def cutting_server(checkpoint: Path):
    """A server that sends half of the checkpoint and closes: with its full Content-Length (``/short.pt``), or
    chunked, cut inside a chunk (``/chunked.pt``)."""
    data = checkpoint.read_bytes()

    class Cutting(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            if self.path == "/short.pt":
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n" % len(data) + data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cutting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hashlib.sha256(data).hexdigest()
    server.shutdown()
    server.server_close()


def test_a_cut_download_says_so_and_installs_nothing(cutting_server, tmp_path: Path) -> None:
    base, digest = cutting_server
    store = tmp_path / "store"
    with pytest.raises(InputError, match=r"/short.pt is incomplete: \d+ of \d+ bytes arrived"):
        download_model(f"{base}/short.pt", digest, root=store)
    with pytest.raises(InputError, match=r"cannot download .*/chunked.pt: IncompleteRead"):
        download_model(f"{base}/chunked.pt", digest, root=store)
    assert list(store.iterdir()) == []


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_download_timeout_must_be_positive(timeout: str, tmp_path: Path, capsys) -> None:
    """--timeout 0 or below is refused by the parser (before: 'Operation now in progress' or 'Timeout value out of
    range', naming no option)."""
    from app.cli import main

    assert main(["models", "download", "http://127.0.0.1:9/m.pt", "--sha256", "0" * 64, "--timeout", timeout,
                 "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument --timeout: must be > 0 seconds, got {timeout}" in err, err

def test_a_downloaded_file_that_is_no_checkpoint_is_named_by_its_url(tmp_path: Path, http_folder) -> None:
    folder, base = http_folder
    (folder / "notes.pt").write_bytes(b"not a checkpoint" * 100)
    digest = hashlib.sha256((folder / "notes.pt").read_bytes()).hexdigest()
    store = tmp_path / "store"
    with pytest.raises(InputError) as err:
        download_model(f"{base}/notes.pt", digest, root=store)
    assert f"{base}/notes.pt" in str(err.value) and ".part" not in str(err.value)
    assert list(store.iterdir()) == []


def test_a_web_page_instead_of_the_model_is_named_as_such(tmp_path: Path, http_folder) -> None:
    """A link to a download page (a sign-in or a share page) sent HTML; the error only said the sha256 differed,
    as if the file were damaged, and trying again could not help."""
    folder, base = http_folder
    (folder / "model.pt").write_text("\n  <!DOCTYPE html>\n<html><body>Sign in to download</body></html>\n")
    store = tmp_path / "store"
    with pytest.raises(InputError) as err:
        download_model(f"{base}/model.pt", "0" * 64, root=store)
    msg = str(err.value)
    assert msg.startswith(f"download of {base}/model.pt failed verification: the server sent a web page (HTML), "
                          f"not the file; is the URL a direct download link?") and "0" * 64 in msg, msg
    assert list(store.iterdir()) == []


def test_an_installed_name_wins_over_a_folder_of_that_name(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "store"
    add_model(checkpoint, name="foo", root=store)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foo").mkdir()  # e.g. the --out folder of an earlier run
    assert choose_model("foo", root=store).path == store / "foo.pt"
    with pytest.raises(InputError, match="is a folder, not a checkpoint file or an installed model name"):
        choose_model("store", root=store)


def test_a_training_run_folder_given_as_the_model_points_at_its_best_checkpoint(tmp_path: Path) -> None:
    """``gopose eval --checkpoint RUN`` (the folder, not RUN/best.pt): the error names the file to pass, and not
    ``--model`` when the user typed ``--checkpoint``."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"x")
    with pytest.raises(InputError) as err:
        choose_model(str(run), root=tmp_path / "store")
    assert str(err.value) == (f"{run} is a folder, not a checkpoint file or an installed model name (a training "
                              f"run? its best checkpoint is {run / 'best.pt'})")


def test_models_cli_add_list_and_spec_check(checkpoint: Path, tmp_path: Path, capsys, street_video: Path,
                                            without_builtin_model: Path) -> None:
    from app.cli import main

    store = tmp_path / "store"
    assert main(["models", "list", "--store", str(store)]) == 0
    assert "no models installed" in capsys.readouterr().out
    assert main(["models", "add", str(checkpoint), "--name", "rt", "--store", str(store)]) == 0
    assert main(["models", "list", "--json", "--store", str(store)]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [e["name"] for e in listed] == ["rt"] and listed[0]["contract"]["spec"] == "coco"
    assert main(["models", "add", str(tmp_path / "none.pt"), "--store", str(store)]) == 2
    assert "not found" in capsys.readouterr().err
    # a checkpoint for another keypoint spec is refused with one clear line
    rc = main(["annotate", str(street_video), "--model", str(checkpoint), "--spec", "crowdpose",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[0].startswith("gopose annotate: model realtime_random (--model)")  # printed first
    assert len(err) == 2 and "predicts coco keypoints (17), not crowdpose" in err[1]


def test_default_model_is_chosen_explicitly(checkpoint: Path, tmp_path: Path, capsys, monkeypatch,
                                            street_video: Path, without_builtin_model: Path) -> None:
    """Adding a model never changes the default: one installed model is used, two need a choice, the choice
    (`gopose models default NAME`) sticks and is printed at the start of every run; --model always wins."""
    from app.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("GOPOSE_HOME", str(home))
    store = home / "models"
    add_model(checkpoint, name="first", root=store)
    assert choose_model(None).describe() == f"first (the only installed model): {store / 'first.pt'}"
    add_model(checkpoint, name="second", root=store)
    with pytest.raises(InputError, match=r"2 models are installed \(first, second\) and none is the default"):
        resolve_model(None)
    assert main(["models", "default", "second"]) == 0
    assert "default model: second (the default set with `gopose models default`)" in capsys.readouterr().out
    add_model(checkpoint, name="third", root=store)
    assert resolve_model(None) == (store / "second.pt", "realtime")
    assert choose_model("third").name == "third" and choose_model(str(checkpoint)).reason == "--model"
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing[1:4]] == ["first", "*", "third"] and "second" in listing[2]
    rc = main(["annotate", str(street_video), "--out", str(tmp_path / "o"), "--long-edge", "128", "--quiet",
               "--formats", "jsonl"])
    err = capsys.readouterr().err
    assert rc == 0 and err.splitlines()[0] == (f"gopose annotate: model second (the default set with "
                                               f"`gopose models default`): {store / 'second.pt'}")
    assert main(["models", "default", "nope"]) == 2
    assert "no installed model named 'nope'; installed: first, second, third" in capsys.readouterr().err
    assert remove_model("second") is True  # removing the default forgets it: the next run asks again
    with pytest.raises(InputError, match="none is the default"):
        resolve_model(None)


def test_builtin_model_is_the_default_unless_one_is_chosen(checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint standing in for the package's resources/models/default.pt."""
    builtin = tmp_path / "resources" / "models" / "default.pt"
    builtin.parent.mkdir(parents=True)
    builtin.write_bytes(checkpoint.read_bytes())
    store = tmp_path / "store"
    with pytest.raises(NoModelError):
        choose_model(None, store, builtin=tmp_path / "absent.pt")
    choice = choose_model(None, store, builtin=builtin)
    assert (choice.name, choice.path, choice.reason) == ("default", builtin, "the built-in model")
    entry = builtin_entry(builtin)  # what `gopose models list` shows for it
    assert entry.builtin and (entry.name, entry.arch, entry.contract["spec"]) == ("default", "realtime", "coco")
    assert builtin_entry(tmp_path / "absent.pt") is None
    add_model(checkpoint, name="mine", root=store)
    assert choose_model(None, store, builtin=builtin).name == "default"  # adding a model changes nothing
    set_default("mine", store, builtin=builtin)
    assert choose_model(None, store, builtin=builtin).name == "mine"
    assert choose_model("default", store, builtin=builtin).path == builtin
    set_default("default", store, builtin=builtin)
    assert choose_model(None, store, builtin=builtin).path == builtin
    assert clear_default(store) and choose_model(None, store, builtin=builtin).name == "default"
    with pytest.raises(InputError, match="reserved for the built-in model"):
        add_model(checkpoint, name="default", root=store)


def test_model_names_with_spaces(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from app.cli import main

    store = tmp_path / "store"
    assert main(["models", "add", str(checkpoint), "--name", "my model", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("gopose models: error: invalid model name 'my model': use letters, digits, '.', '_' or '-' "
                   "(max 64), e.g. 'my-model'")
    spaced = tmp_path / "my model (v2).pt"
    spaced.write_bytes(checkpoint.read_bytes())
    assert main(["models", "add", str(spaced), "--store", str(store)]) == 0  # a file's name is made valid
    assert [e.name for e in list_models(store)] == ["my-model-v2"]
    assert main(["models", "add", str(tmp_path), "--store", str(store)]) == 2
    assert f"{tmp_path} is a folder, not a checkpoint file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["rt\n", "rt.\n"])
def test_a_name_ending_in_a_newline_is_refused(name: str, checkpoint: Path, tmp_path: Path) -> None:
    """A name read from a file or a shell variable kept its newline: the model was installed as 'rt\\n.pt' and
    then neither `list` showed it on one line nor `remove rt` found it."""
    store = tmp_path / "store"
    with pytest.raises(InputError, match="invalid model name"):
        add_model(checkpoint, name=name, root=store)
    assert not store.exists() or _visible(store) == []
    add_model(checkpoint, name="rt", root=store)
    with pytest.raises(InputError, match="no installed model named"):
        remove_model("rt\n", root=store)
    assert _visible(store) == ["rt.json", "rt.pt"]


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo this would run",))


def _not_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    import pickle
    import warnings
    import zipfile

    import torch

    files = {}
    files["random"] = (folder / "random.pt", "it is not a PyTorch checkpoint (neither torch.save's zip format nor "
                                             "its legacy format)")
    files["random"][0].write_bytes(bytes(range(256)) * 20)
    files["pickle"] = (folder / "data.pkl", "it is not a PyTorch checkpoint but a plain Python pickle (not a file "
                                            "written by torch.save)")
    files["pickle"][0].write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    files["code"] = (folder / "code.pkl", "it is not a PyTorch checkpoint but a plain Python pickle that imports "
                                          "posix.system; loading it would run arbitrary Python code")
    files["code"][0].write_bytes(pickle.dumps(_RunsCode(), protocol=4))
    files["torch-code"] = (folder / "code.pt", "it is not a weights-only file")
    torch.save({"model": _RunsCode()}, files["torch-code"][0])
    files["zip"] = (folder / "archive.pt", "is a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
    with zipfile.ZipFile(files["zip"][0], "w") as zf:
        zf.writestr("readme.txt", "hello")
    files["empty"] = (folder / "empty.pt", "the file is empty (not a PyTorch checkpoint)")
    files["empty"][0].write_bytes(b"")
    files["torchscript"] = (folder / "scripted.pt", "it is a TorchScript archive (torch.jit.save), not a checkpoint")
    with warnings.catch_warnings():  # torch.jit.script is deprecated, and still writes what users have
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(files["torchscript"][0]))
    return files


@pytest.mark.parametrize("kind", ["random", "pickle", "code", "torch-code", "zip", "empty", "torchscript"])
def test_files_that_are_not_checkpoints(kind: str, tmp_path: Path, capsys) -> None:
    """Each refused with one line saying what the file is (no torch.load advice, no warning); pickles that
    would run code are refused without being run."""
    import os

    from app.cli import main

    path, message = _not_checkpoints(tmp_path)[kind]
    assert main(["models", "info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err, err
    assert "documentation of torch.load" not in err
    assert main(["models", "add", str(path), "--store", str(tmp_path / "store")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "store").exists() or os.listdir(tmp_path / "store") == []


@pytest.mark.parametrize("command", [["list"], ["default", "x"], ["add", "x.pt"]])
def test_a_store_that_is_a_file_is_one_line(tmp_path, capsys, command) -> None:
    """``--store FILE`` listed 0 models as if the folder were empty; now the parser names the file."""
    from app.cli import main

    afile = tmp_path / "models.txt"
    afile.write_text("not a folder")
    assert main(["models", *command, "--store", str(afile)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument --store: {afile} is a file, not a folder" in err


def test_models_remove_command(checkpoint: Path, tmp_path: Path, capsys, without_builtin_model: Path) -> None:
    """`gopose models remove NAME` uninstalls a model (also one whose .pt was deleted by hand, which `list` no
    longer shows) and forgets it as the default; unknown names and the built-in model are one-line errors."""
    from app.cli import main

    store = tmp_path / "store"
    add_model(checkpoint, name="a", root=store)
    add_model(checkpoint, name="b", root=store)
    assert main(["models", "default", "a", "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["models", "remove", "a", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "removed a (it was the default; the choice is forgotten)" in out
    assert "default model: b (the only installed model)" in out
    assert not (store / "a.pt").exists() and not (store / "a.json").exists()
    (store / "b.pt").unlink()  # deleted by hand: its .json stays behind, hidden from the listing
    assert main(["models", "remove", "b", "--store", str(store)]) == 0
    assert not (store / "b.json").exists()
    capsys.readouterr()
    assert main(["models", "remove", "b", "--store", str(store)]) == 2
    assert f"no installed model named 'b' in {store} (installed: none)" in capsys.readouterr().err
    assert main(["models", "remove", "default", "--store", str(store)]) == 2
    assert "the built-in model 'default' is part of the package" in capsys.readouterr().err
    assert main(["models", "remove", "../x", "--store", str(store)]) == 2


def test_a_model_named_from_a_url_is_decoded_and_valid(checkpoint: Path, tmp_path: Path, http_folder,
                                                        capsys) -> None:
    """The name a download takes from its URL: %-escapes decoded and made valid; an escaped '/' (%2F) is part of
    the one name (before: ``coco%2Fhg.pt`` installed as ``hg``), a query or fragment is no part of it."""
    from app.cli import main

    folder, base = http_folder
    (folder / "coco").mkdir()
    for served in ("my model.pt", "coco/hg.pt", "net.pt"):  # the server decodes the escapes of the request
        (folder / served).write_bytes(checkpoint.read_bytes())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    store = tmp_path / "store"
    assert download_model(f"{base}/my%20model.pt", digest, root=store).name == "my-model"
    assert download_model(f"{base}/coco%2Fhg.pt", digest, root=store).name == "coco-hg"
    assert main(["models", "download", f"{base}/net.pt?dl=1#weights", "--sha256", digest,
                 "--store", str(store)]) == 0
    assert "installed net from" in capsys.readouterr().out
    assert [e.name for e in list_models(store)] == ["coco-hg", "my-model", "net"]
    assert _visible(store) == ["coco-hg.json", "coco-hg.pt", "my-model.json", "my-model.pt", "net.json", "net.pt"]


def test_sizes_are_printed_in_decimal_megabytes(checkpoint: Path, tmp_path: Path, capsys,
                                                without_builtin_model: Path) -> None:
    """``models add`` and ``list`` printed ``size / 2**20`` labelled "MB" (MiB, 5 % less than the MB a file
    manager shows); they print decimal megabytes now."""
    from app.cli import main

    size = checkpoint.stat().st_size
    assert f"{size / 1e6:.1f}" != f"{size / 2**20:.1f}"  # the file tells the two units apart
    store = tmp_path / "store"
    assert main(["models", "add", str(checkpoint), "--name", "rt", "--store", str(store)]) == 0
    assert f"{size / 1e6:.1f} MB, sha256" in capsys.readouterr().out
    assert main(["models", "list", "--store", str(store)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["rt"])
    assert f"{size / 1e6:.1f} MB" in row
