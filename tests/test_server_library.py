"""A shared library on a Milvus server, served by an embedded Milvus Lite (real pymilvus
client, real gRPC server in this process, real SQLite library pushed into it)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the app test below (no display here)

import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from midizero_app.cli import main
from midizero_app.core import server_push, server_store
from midizero_app.core.errors import NoLibrary
from midizero_app.core.library import Library
from midizero_app.core.server_library import (ServerError, ServerIncomplete, ServerLibrary,
                                              ServerModelMismatch, ServerReadOnly,
                                              ServerUnreachable, parse_url, push)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
QUERIES = {"played - maple leaf rag, middle.mid": "Joplin - Maple Leaf Rag.mxl",
           "played - mozart.mid": "Mozart - Sonata K.545 (I, exposition).mxl",
           "played - ode to joy.mid": "Beethoven - Ode to Joy.mid"}
FLAGGED = "played - a chorale not in the library.mid"


def _lite_reason() -> str | None:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        return f"pymilvus / milvus-lite not installed ({exc.name}): pip install midizero-app[server]"
    return None


needs_lite = pytest.mark.skipif(_lite_reason() is not None, reason=_lite_reason() or "")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, bundled_model) -> dict:
    """The demo scores indexed into a local library and pushed into an embedded Milvus
    Lite: {"local": folder, "db": the Lite data folder, "url": the library's URL}."""
    if _lite_reason():
        pytest.skip(_lite_reason())
    base = tmp_path_factory.mktemp("server")
    scores = base / "scores"
    shutil.copytree(DEMO / "scores", scores)
    local = base / "local"
    with Library(local) as lib:
        assert len(lib.add([scores]).added) == 10
    db = base / "milvus.db"
    url = f"milvus://{db}/demo"
    try:
        report = push(local, url)
    except ServerUnreachable as exc:
        pytest.skip(f"the embedded Milvus Lite did not start here: {exc}")
    assert report.sent == 10 and report.windows["texture"] > 1000
    return {"local": local, "db": db, "url": url}


def _top(lib, query: Path) -> dict:
    return lib.search(str(query))["results"][0]


@needs_lite
def test_server_gives_the_local_answers(shared):
    """Same pieces, confidences and positions from the server as from the local library."""
    with Library(shared["local"], create=False) as local, ServerLibrary(shared["url"]) as server:
        for query, piece in QUERIES.items():
            a, b = _top(server, DEMO / "queries" / query), _top(local, DEMO / "queries" / query)
            assert Path(a["path"]).name == piece, query
            assert a["confidence"] > 0.5, (query, a["confidence"])
            assert (a["path"], a["positions"][0]) == (b["path"], b["positions"][0])
            assert a["confidence"] == pytest.approx(b["confidence"], abs=0.02)
        assert _top(server, DEMO / "queries" / FLAGGED)["confidence"] < 0.5
        st = server.stats()
        assert (st["ok"], st["windows"]) == (10, local.stats()["windows"])
        assert len(server.pieces()) == 10 and server.content_state()[0] == 10


@needs_lite
def test_the_catalogue_is_served_as_stored(shared):
    """Every piece's entry, notes (voices included) and windows as the local library has
    them; notes asked for in listing order are read several pieces a request."""
    import numpy as np

    with Library(shared["local"], create=False) as local, ServerLibrary(shared["url"]) as server:
        reads = []
        read = server._read_frames
        server._read_frames = lambda pids: (reads.append(len(pids)), read(pids))[1]
        listed = server.pieces()
        assert [p["path"] for p in listed] == [p["path"] for p in local.pieces()]
        for p in listed:
            mine, theirs = server.frames_of(p["id"]), local.frames_of(p["id"])
            for name in ("onset", "offsets", "pitches", "measure", "beat"):
                assert np.array_equal(getattr(mine, name), getattr(theirs, name), equal_nan=True)
            assert (mine.voices is None) == (theirs.voices is None)
            if mine.voices is not None:
                assert np.array_equal(mine.voices, theirs.voices)
            assert server.piece(p["id"])["title"] == local.piece(p["id"])["title"]
            for view in ("texture", "melody"):
                a, b = server.window_vectors(p["id"], 0, 1e9, view), \
                    local.window_vectors(p["id"], 0, 1e9, view)
                assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-6)
        assert len(reads) < len(listed) and sum(reads) == len(listed)


@needs_lite
def test_cli_searches_and_lists_a_shared_library(shared, capsys):
    query = DEMO / "queries" / "played - mozart.mid"
    assert main(["search", str(query), "--library", shared["url"], "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(res["results"][0]["path"]).name == QUERIES["played - mozart.mid"]
    assert main(["library", "stats", "--library", shared["url"], "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["index_kind"] == "milvus" and st["ok"] == 10
    # changes go through the local library and a push
    assert main(["library", "remove", "x", "--library", shared["url"]]) == 1
    assert "push" in capsys.readouterr().err
    assert main(["index", str(DEMO / "scores"), "--library", shared["url"]]) == 1
    assert "shared library" in capsys.readouterr().err


@needs_lite
def test_midizero_library_may_name_a_shared_library(shared, capsys, monkeypatch):
    """MIDIZERO_LIBRARY=milvus://…: commands that search use it; those that change a
    library say it is shared rather than falling back to a local folder."""
    monkeypatch.setenv("MIDIZERO_LIBRARY", shared["url"])
    query = DEMO / "queries" / "played - ode to joy.mid"
    assert main(["search", str(query), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(res["results"][0]["path"]).name == QUERIES["played - ode to joy.mid"]
    assert main(["library", "check"]) == 1
    assert "shared library" in capsys.readouterr().err


@needs_lite
def test_push_again_sends_only_what_changed(shared, tmp_path):
    """A second push finds every piece there; after a removal, only the removal travels."""
    local = tmp_path / "local"
    shutil.copytree(shared["local"], local)
    url = f"milvus://{shared['db']}/changed"
    assert push(local, url).sent == 10
    again = push(local, url)
    assert (again.sent, again.unchanged, again.removed) == (0, 10, 0)
    with Library(local) as lib:
        gone = [p["path"] for p in lib.pieces() if "Ode to Joy" in p["path"]]
        lib.remove(*gone)
    after = push(local, url)
    assert (after.sent, after.unchanged, after.removed) == (0, 9, 1)
    with ServerLibrary(url) as server:
        assert server.stats()["ok"] == 9
        assert all("Ode to Joy" not in p["path"] for p in server.pieces())
        res = server.search(str(DEMO / "queries" / "played - ode to joy.mid"))
        assert not res["results"] or res["results"][0]["confidence"] < 0.5


@needs_lite
def test_a_stopped_push_is_not_served_and_a_second_push_finishes_it(shared, monkeypatch,
                                                                    capsys):
    url = f"milvus://{shared['db']}/stopped"
    cancel = threading.Event()
    monkeypatch.setattr(server_push, "PUSH_BATCH_FRAMES", 300)  # several batches for ten pieces

    def stop_after_first(done, total, message):
        cancel.set()

    first = push(shared["local"], url, progress=stop_after_first, cancel=cancel)
    assert first.cancelled and 0 < first.sent < 10
    with pytest.raises(ServerIncomplete, match="not complete"):
        ServerLibrary(url)
    assert main(["search", str(DEMO / "queries" / "played - mozart.mid"),
                 "--library", url]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "library push" in err
    second = push(shared["local"], url)
    assert second.unchanged == first.sent and second.sent == 10 - first.sent
    with ServerLibrary(url) as server:
        assert Path(_top(server, DEMO / "queries" / "played - mozart.mid")["path"]).name == \
            QUERIES["played - mozart.mid"]


@needs_lite
def test_a_library_of_another_model_is_refused(shared):
    url = f"milvus://{shared['db']}/othermodel"
    push(shared["local"], url)
    server = server_store.Server(parse_url(url))
    meta = server.read_meta()
    server.write_meta({**meta, "model_id": "0123456789abcdef"})
    server.close()
    with pytest.raises(ServerModelMismatch, match="0123456789abcdef"):
        ServerLibrary(url)
    with pytest.raises(ServerModelMismatch, match="--replace"):
        push(shared["local"], url)
    assert push(shared["local"], url, replace=True).sent == 10
    with ServerLibrary(url) as server:
        assert server.model_id != "0123456789abcdef"


@needs_lite
def test_no_library_of_that_name_and_read_only(shared):
    with pytest.raises(NoLibrary, match="push one first"):
        ServerLibrary(f"milvus://{shared['db']}/nothing_here")
    with ServerLibrary(shared["url"]) as server:
        with pytest.raises(ServerReadOnly):
            server.remove("anything")
        with pytest.raises(KeyError):
            server.piece(10**6)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_lite
def test_an_unreachable_server_is_one_line_quickly(capsys, monkeypatch):
    port = _closed_port()
    t = time.monotonic()
    with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}"):
        ServerLibrary(f"milvus://127.0.0.1:{port}/lib")
    assert time.monotonic() - t < 5
    # a port that accepts connections but never answers: the connect timeout, not a hang
    monkeypatch.setattr(server_store, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"milvus://127.0.0.1:{silent.getsockname()[1]}/lib"
        t = time.monotonic()
        code = main(["search", str(DEMO / "queries" / "played - mozart.mid"), "--library", url])
        took = time.monotonic() - t
    err = capsys.readouterr().err.strip()
    assert code == 1 and took < 8, took
    assert len(err.splitlines()) == 1 and "cannot reach" in err and "running" in err


@needs_lite
def test_an_embedded_folder_another_process_holds_is_one_line(tmp_path, capsys):
    import subprocess

    db = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
         f"MilvusClient({str(db)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["library", "stats", "--library", f"milvus://{db}/lib"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another process" in err, err
    finally:
        holder.kill()
        holder.wait()


def test_urls():
    assert parse_url("milvus://school.example:19531/scores").uri == "http://school.example:19531"
    assert parse_url("milvus://school.example/scores").uri == "http://school.example:19530"
    lite = parse_url("milvus:///srv/lib/milvus.db/scores")
    assert (lite.uri, lite.name, lite.embedded) == ("/srv/lib/milvus.db", "scores", True)
    for bad in ("milvus://host/", "milvus://host/a/b", "milvus://host/9lives",
                "milvus://host:port/x", "milvus:///not/a/db/x", "milvus://host/a-b", "http://h/x"):
        with pytest.raises(ServerError, match="milvus://HOST"):
            parse_url(bad)


def test_without_the_client_the_app_still_runs_and_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import pymilvus → ImportError
    with pytest.raises(ServerUnreachable, match=r"pip install midizero-app\[server\]"):
        ServerLibrary("milvus://127.0.0.1:1/lib")
    assert main(["library", "stats", "--library", "milvus://127.0.0.1:1/lib"]) == 1
    assert "midizero-app[server]" in capsys.readouterr().err


def test_the_compose_file_runs_milvus_standalone():
    """Docker does not run here: the compose file is checked as YAML, in the shape of
    Milvus's own (etcd, MinIO, standalone on 19530)."""
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((ROOT / "packaging" / "milvus" / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) == {"etcd", "minio", "standalone"}
    milvus = services["standalone"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.")
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert "19530:19530" in milvus["ports"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert set(milvus["depends_on"]) == {"etcd", "minio"}
    for name, svc in services.items():
        assert svc["image"] and svc["healthcheck"]["test"][0] == "CMD", name


@needs_lite
def test_the_app_opens_a_shared_library_and_identifies_from_it(shared, qtbot, tmp_path,
                                                                monkeypatch):
    """File ▸ Open shared library: the app searches the server's library (a dropped query
    file identified from it), lists its pieces and offers no changes to it."""
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import QSettings

    from midizero_app.gui.app import MainWindow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(settings=settings, library_dir=str(tmp_path / "lib"), first_run_demo=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.library is not None, timeout=120_000)
    assert w.switch_library(shared["url"])
    assert isinstance(w.library, ServerLibrary)
    tab = w.library_tab
    assert tab.read_only and not any(b.isEnabled() for b in tab.action_buttons())
    assert len(tab.rows()) == 10 and shared["url"] in tab.hint.text()
    assert settings.value("library/dir") == shared["url"]  # remembered for the next start
    assert w.drop_paths([str(DEMO / "scores")]) is None  # nothing is indexed into it
    w.tabs.setCurrentWidget(w.identify)
    job = w.drop_paths([str(DEMO / "queries" / "played - mozart.mid")])
    qtbot.waitUntil(lambda: job.settled, timeout=120_000)
    top = w.identify.file_result["results"][0]
    assert Path(top["path"]).name == QUERIES["played - mozart.mid"]
    # back to a folder: the buttons return
    assert w.switch_library(str(tmp_path / "lib"))
    assert not tab.read_only and tab.add_folder_btn.isEnabled()
    w.close()
