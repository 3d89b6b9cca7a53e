"""The user model folder: add/list/resolve real checkpoints, and downloads verified against a local server."""
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
from app.model_store import add_model, download_model, list_models, resolve_model, store_dir
from core.errors import InputError


def test_store_location(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOPOSE_HOME", str(tmp_path))
    assert store_dir() == tmp_path / "models"
    monkeypatch.delenv("GOPOSE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store_dir() == tmp_path / "xdg" / "gopose" / "models"


def test_no_model_explains_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NoModelError) as info:
        resolve_model(None, root=tmp_path)
    msg = str(info.value)
    assert "gopose models add" in msg and "PoseNet_77_epoch.pth" in msg and isinstance(info.value, InputError)
    with pytest.raises(NoModelError):
        load_estimator(None, store=tmp_path)
    with pytest.raises(InputError, match="checkpoint file not found"):
        resolve_model("missing.pt", root=tmp_path)


def test_add_list_resolve_load(checkpoint: Path, tmp_path: Path) -> None:
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


@pytest.fixture()
def http_folder(tmp_path: Path):
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a, **k: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
    assert sorted(p.name for p in store.iterdir()) == ["net.json", "net.pt"]
    with pytest.raises(InputError, match="cannot download"):
        download_model(f"{base}/missing.pt", digest, root=store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="cannot download"):
        download_model(f"http://127.0.0.1:{port}/net.pt", digest, root=store)
    with pytest.raises(InputError, match="64 hex"):
        download_model(f"{base}/net.pt", "abc", root=store)
    from app.cli import main

    assert main(["models", "download", f"{base}/net.pt", "--sha256", digest, "--name", "via-cli",
                 "--store", str(store)]) == 0
    assert [e.name for e in list_models(store)] == ["net", "via-cli"]
    assert main(["models", "download", f"{base}/net.pt", "--sha256", "1" * 64, "--name", "bad",
                 "--store", str(store)]) == 2


def test_models_cli_add_list_and_spec_check(checkpoint: Path, tmp_path: Path, capsys, street_video: Path) -> None:
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
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "predicts coco keypoints (17), not crowdpose" in err and len(err.splitlines()) == 1
