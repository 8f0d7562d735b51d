"""The ONNX cache cannot be turned against its user (issue 37, item 1; items 5, 6 and 7 for the cache and
weights files): links, dangling links and FIFOs planted at a cache name are replaced, never written
through or waited on; a planted export with the right name and metadata is not trusted (the seal);
the folder is made 0700 and not used when another user or anyone else can write it; a folder that
cannot be used is one warning and an export kept in memory; old exports are evicted; a relative
``$XDG_CACHE_HOME`` is ignored and ``~`` expanded; weights files that are not regular files are
refused by type. The exporter is faked (the planted model's ONNX file with the metadata the real one
adds) so that each test costs a session load, not an export; ``test_auto_backend`` runs real ones."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import time
from pathlib import Path

import pytest
from generated_files import invoke, write_rgb

import dbcli.backends.export
from dbcli.backends.cache_folder import KEY_NAME, MAX_EXPORTS, CacheUnusable, cache_dir, open_folder
from dbcli.backends.loading import load_model
from dbcli.backends.onnx_cache import (
    SHA_KEY,
    _metadata_entry,
    cache_name,
    seal,
    source_prefix,
    unseal,
)
from dbcli.errors import DBNetError
from dbcli.files import file_sha256, open_regular
from dbcli.outputs.atomic import acquire_lock, atomic_write_bytes, lock_path, release_lock

MADE_BY = "dbnet.test_made_by"  # who made an export file: the (fake) exporter or a test's planter


@pytest.fixture(autouse=True)
def never_hang():
    """A test that blocks (on a FIFO) fails after 120 s instead of hanging the suite."""
    def hung(signum, frame):
        raise TimeoutError("blocked: a FIFO was opened or waited on")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def cache(tmp_path, monkeypatch, model_files):
    """``(folder, calls)``: this test's cache folder (not made yet) and the weights files exported."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DBNET_CACHE", str(folder))
    base = model_files["onnx"].read_bytes()
    calls: list[Path] = []

    def export(weights, fmt="onnx", *args, extra_metadata=None, **kwargs):
        calls.append(Path(weights))
        extra = b"".join(_metadata_entry(k, v) for k, v in (extra_metadata or {}).items())
        return base + _metadata_entry(MADE_BY, "exporter") + extra, 0.0, (2, 3, 170, 230)

    monkeypatch.setattr(dbcli.backends.export, "export_bytes", export)
    return folder, calls


def planted(model_files, sha: str) -> bytes:
    """Another model's export whose metadata names the weights file hashing to ``sha`` (what the
    issue's attacker planted: an ``icdar15`` graph under ``general``'s name)."""
    return model_files["onnx"].read_bytes() + _metadata_entry(MADE_BY, "planter") + _metadata_entry(SHA_KEY, sha)


def cached(model_files) -> tuple[str, str]:
    """``(sha, cache name)`` of the planted weights file."""
    sha = file_sha256(model_files["pt"])
    return sha, cache_name(sha)


# --- 1. links, FIFOs, planted exports ---------------------------------------------------------------
def test_the_cache_is_private_and_its_exports_sealed(model_files, cache):
    folder, calls = cache
    model = load_model(model_files["pt"], device="cpu")
    sha, name = cached(model_files)
    assert model.info["backend"] == "onnx" and model.note is None and len(calls) == 1
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0  # made 0700 (less with a strict umask)
    assert stat.S_IMODE((folder / KEY_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    key = (folder / KEY_NAME).read_bytes().strip()
    assert unseal((folder / name).read_bytes(), sha, key)
    again = load_model(model_files["pt"], device="cpu")
    assert len(calls) == 1 and again.prob_fn.label == str(folder / name)


@pytest.mark.parametrize("target", ["victim.txt", "victim.pt", "dangling", "key link"])
def test_a_link_planted_in_the_cache_is_replaced_never_written_through(model_files, cache, tmp_path, target):
    folder, calls = cache
    sha, name = cached(model_files)
    open_folder(folder)
    victim = tmp_path / ("victim.pt" if target == "victim.pt" else "victim.txt")
    if target == "victim.pt":
        shutil.copyfile(model_files["pt"], victim)
    elif target != "dangling":
        victim.write_text("the user's file")
    before = victim.read_bytes() if victim.exists() else None
    link = folder / (KEY_NAME if target == "key link" else name)
    os.symlink(victim, link)
    model = load_model(model_files["pt"], device="cpu")
    assert model.info["backend"] == "onnx" and len(calls) == 1
    assert (victim.read_bytes() if victim.exists() else None) == before  # (dangling: not created)
    assert not link.is_symlink() and stat.S_ISREG(link.lstat().st_mode)
    load_model(model_files["pt"], device="cpu")
    assert len(calls) == 1  # the export written in the link's place is used


@pytest.mark.parametrize("where", ["export", "key"])
def test_a_fifo_in_the_cache_is_replaced_not_waited_on(model_files, cache, where):
    folder, calls = cache
    _, name = cached(model_files)
    open_folder(folder)
    fifo = folder / (name if where == "export" else KEY_NAME)
    os.mkfifo(fifo)
    model = load_model(model_files["pt"], device="cpu")
    assert model.info["backend"] == "onnx" and len(calls) == 1
    assert stat.S_ISREG(fifo.lstat().st_mode)


@pytest.mark.parametrize("plant", ["forged metadata", "another file's sealed export", "moved key"])
def test_a_planted_export_with_the_right_name_is_not_trusted(model_files, cache, tmp_path, plant):
    folder, calls = cache
    sha, name = cached(model_files)
    load_model(model_files["pt"], device="cpu")  # a good export, and the folder's key
    if plant == "forged metadata":
        (folder / name).write_bytes(planted(model_files, sha))
    elif plant == "another file's sealed export":
        other = tmp_path / "other.pt"
        other.write_bytes(model_files["pt"].read_bytes() + b"\0")
        load_model(other, device="cpu")
        shutil.copyfile(folder / cache_name(file_sha256(other)), folder / name)
    else:  # the export sealed under another folder's key
        good = (folder / name).read_bytes()
        (folder / KEY_NAME).unlink()
        (folder / name).write_bytes(good)
    exported = len(calls)
    model = load_model(model_files["pt"], device="cpu")
    assert len(calls) == exported + 1 and model.prob_fn.metadata[MADE_BY] == "exporter"
    assert model.prob_fn.metadata[SHA_KEY] == sha


def test_the_seal_binds_the_weights_the_bytes_and_the_key():
    export, sha, key = b"\x08\x07onnx bytes", "ab" * 32, b"k" * 64
    sealed = seal(export, sha, key)
    assert sealed.startswith(export) and unseal(sealed, sha, key)
    assert not unseal(sealed, "cd" * 32, key) and not unseal(sealed, sha, b"x" * 64)
    assert not unseal(b"\x09" + sealed[1:], sha, key) and not unseal(sealed[:-1], sha, key)
    assert not unseal(export, sha, key) and not unseal(b"", sha, key)


# --- 1. and 6. folders that are not used ------------------------------------------------------------
@pytest.mark.parametrize("problem", ["group-writable", "world-writable", "another user's",
                                     "in a folder anyone can write"])
def test_a_cache_folder_others_can_write_is_not_used(model_files, cache, monkeypatch, problem):
    folder, calls = cache
    folder.mkdir()
    os.chmod(folder, {"group-writable": 0o770, "world-writable": 0o777}.get(problem, 0o700))
    if problem == "another user's":
        monkeypatch.setattr(os, "geteuid", lambda: folder.stat().st_uid + 1)
    if problem == "in a folder anyone can write":  # (anyone could rename the cache and put theirs)
        os.chmod(folder.parent, 0o777)
    model = load_model(model_files["pt"], device="cpu")
    assert model.info["backend"] == "onnx" and "in memory" in model.prob_fn.label
    assert "not used" in (model.note or "") and str(folder) in (model.note or "")
    assert list(folder.iterdir()) == []  # nothing read or written there
    load_model(model_files["pt"], device="cpu")
    assert len(calls) == 2
    os.chmod(folder.parent, 0o700)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="makes a link of another user's")
def test_a_cache_reached_through_another_users_link_is_not_used(model_files, cache, monkeypatch, tmp_path):
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(own)
    os.lchown(link, 4242, 4242)  # planted by someone else: they could point it elsewhere any time
    monkeypatch.setenv("DBNET_CACHE", str(link))
    model = load_model(model_files["pt"], device="cpu")
    assert "a symlink of another user's" in (model.note or "") and list(own.iterdir()) == []


def test_a_cache_folder_in_a_sticky_folder_is_used(model_files, cache, monkeypatch, tmp_path):
    shared = tmp_path / "shared"  # as /tmp: anyone can write it, no one can rename another's entries
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setenv("DBNET_CACHE", str(shared / "mine"))
    model = load_model(model_files["pt"], device="cpu")
    assert model.note is None and (shared / "mine" / KEY_NAME).exists()


def _unusable_cache(tmp_path: Path, case: str) -> Path:
    if case == "name over 255 bytes":
        return tmp_path / ("c" * 300)
    if case == "path over PATH_MAX":
        return tmp_path.joinpath(*["d" * 200] * 25)
    if case == "a file in the way":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "cache"
    locked = tmp_path / "locked"  # no search permission
    locked.mkdir()
    locked.chmod(0o600)
    return locked / "cache"


def _no_search_as_root(monkeypatch, locked: Path) -> None:
    """Root searches every folder: make the cache folder's creation fail as it does for a user."""
    real = os.makedirs

    def makedirs(name, *args, **kwargs):
        if str(name).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)


@pytest.mark.parametrize("case", ["name over 255 bytes", "path over PATH_MAX", "a file in the way",
                                  "no search permission"])
def test_an_unusable_cache_folder_is_one_warning_and_an_export_in_memory(model_files, cache, tmp_path,
                                                                         monkeypatch, case):
    folder, calls = cache
    monkeypatch.setenv("DBNET_CACHE", str(_unusable_cache(tmp_path, case)))
    if case == "no search permission" and os.geteuid() == 0:
        _no_search_as_root(monkeypatch, tmp_path / "locked")
    image, out = write_rgb(tmp_path / "a.png"), tmp_path / "out.json"
    result = invoke("detect", image, "--weights", model_files["pt"], "--out", out)
    assert result.exit_code == 0 and out.exists(), result.output
    assert "Traceback" not in result.output and len(calls) == 1
    cache_lines = [line for line in result.stderr.splitlines() if "ONNX cache" in line]
    assert len(cache_lines) == 1 and cache_lines[0].startswith("warning:") and "kept in memory" in cache_lines[0]
    assert len(cache_lines[0]) < 400  # a path over PATH_MAX is shortened
    if case == "no search permission":
        (tmp_path / "locked").chmod(0o700)  # (for the clean-up)


def test_visualize_says_the_cache_warning_too(model_files, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("DBNET_CACHE", str(_unusable_cache(tmp_path, "a file in the way")))
    result = invoke("visualize", write_rgb(tmp_path / "a.png"), "--weights", model_files["pt"],
                    "--out", tmp_path / "drawn")
    assert result.exit_code == 0 and (tmp_path / "drawn" / "a.png").exists(), result.output
    assert len([line for line in result.stderr.splitlines() if "warning: ONNX cache" in line]) == 1


def test_serve_logs_the_cache_warning(model_files, cache, tmp_path, monkeypatch, caplog):
    pytest.importorskip("starlette")
    from dbcli.engine.options import InferenceOptions
    from dbcli.serve.app import load_service
    from dbcli.serve.config import ServeConfig

    monkeypatch.setenv("DBNET_CACHE", str(_unusable_cache(tmp_path, "a file in the way")))
    service = load_service(ServeConfig(inference=InferenceOptions(weights=str(model_files["pt"])),
                                       spool=str(tmp_path)))
    service.scheduler.close(timeout=30)
    logged = [r.getMessage() for r in caplog.records if r.name == "dbnet.serve" and r.levelname == "WARNING"]
    assert len(logged) == 1 and logged[0].startswith("ONNX cache") and "kept in memory" in logged[0]


# --- 7. where the cache is, eviction -----------------------------------------------------------------
def test_where_the_cache_is(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBNET_CACHE", "~/mine")
    assert cache_dir() == home / "mine"  # expanded: no folder named `~`
    monkeypatch.setenv("DBNET_CACHE", "rel")
    assert cache_dir() == tmp_path / "rel"
    monkeypatch.delenv("DBNET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignored
    assert cache_dir() == home / ".cache" / "dbnet"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dbnet"


def test_a_tilde_that_cannot_be_expanded_makes_no_folder(model_files, cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBNET_CACHE", "~/cache")
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # no home folder to expand to
    with pytest.raises(CacheUnusable, match="no folder named `~`"):
        cache_dir()
    model = load_model(model_files["pt"], device="cpu")
    assert "kept in memory" in (model.note or "") and not (tmp_path / "~").exists()


def _aged(path: Path, days: float) -> Path:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def test_old_exports_are_evicted(model_files, cache, tmp_path):
    folder, calls = cache
    sha, name = cached(model_files)
    open_folder(folder)
    older_version = (folder / f"{source_prefix(sha)}0.0.1-torch1.0.onnx")
    older_version.write_bytes(b"x")
    others = []  # other weights files' exports, the most recently used first
    for i in range(MAX_EXPORTS + 2):
        other = folder / f"dbnet-{i:024x}-0.1.0.onnx"
        other.write_bytes(b"x")
        others.append(_aged(other, i + 1))
    unused = folder / f"dbnet-{'f' * 24}-0.1.0.onnx"
    unused.write_bytes(b"x")
    _aged(unused, 90)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    os.symlink(victim, folder / f"dbnet-{'e' * 24}-0.1.0.onnx")
    crashed, writing = folder / ".dbnet-x.onnx.abcd1234.tmp", folder / ".dbnet-y.onnx.abcd1234.tmp"
    crashed.write_bytes(b"x")
    _aged(crashed, 2)
    writing.write_bytes(b"x")
    notes = folder / "notes.txt"
    notes.write_text("not dbnet's")
    load_model(model_files["pt"], device="cpu")
    left = sorted(p.name for p in folder.glob("dbnet-*.onnx"))
    assert len(left) == MAX_EXPORTS and name in left and older_version.name not in left
    assert left == sorted([name] + [p.name for p in others[: MAX_EXPORTS - 1]])  # the most recently used
    assert not unused.exists() and victim.read_text() == "keep"
    assert not crashed.exists() and writing.exists() and notes.exists()
    _aged(folder / name, 30)  # a use marks it as used now
    load_model(model_files["pt"], device="cpu")
    assert len(calls) == 1 and time.time() - (folder / name).stat().st_mtime < 86400


# --- 5. weights files that are not regular files ----------------------------------------------------
def _special(tmp_path: Path, kind: str, suffix: str) -> Path:
    path = tmp_path / f"w{suffix}"
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        os.symlink("/dev/zero", path)
    return path


@pytest.mark.parametrize("backend", ["auto", "torch", "onnx"])
@pytest.mark.parametrize("kind", ["FIFO", "folder", "device"])
@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_weights_that_are_not_regular_files_are_refused_by_type(tmp_path, cache, backend, kind, suffix):
    path = _special(tmp_path, kind, suffix)
    with pytest.raises(DBNetError) as error:
        load_model(path, backend=backend, device="cpu")
    message = str(error.value)
    assert message.startswith(str(path))
    assert {"FIFO": "a FIFO", "folder": "a folder, not a", "device": "a device"}[kind] in message
    assert kind == "folder" or "not a regular file" in message
    assert cache[1] == []


def test_detect_with_a_fifo_as_weights_is_one_error_line(tmp_path):
    fifo = _special(tmp_path, "FIFO", ".pt")
    result = invoke("detect", write_rgb(tmp_path / "a.png"), "--weights", fifo, "--out", tmp_path / "o.json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: {fifo}: a FIFO (named pipe), not a regular file (weights file expected; not opened: it "
        "could block forever)"]


def test_open_regular_reads_files_and_links_to_them_and_refuses_the_rest(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"data")
    (tmp_path / "link.bin").symlink_to(real)
    for path in (real, tmp_path / "link.bin"):
        with open_regular(path) as f:
            assert f.read() == b"data"
    for kind in ("FIFO", "folder", "device"):
        with pytest.raises(DBNetError, match="not a regular file|a folder, not a file"):
            open_regular(_special(tmp_path, kind, f".{kind}"))
    with pytest.raises(DBNetError, match="weights file not found"):
        open_regular(tmp_path / "missing.pt", "weights file")
    with pytest.raises(DBNetError, match="cannot read"):
        open_regular(tmp_path / ("n" * 300))


def test_an_upper_case_onnx_suffix_is_an_onnx_model(model_files, tmp_path):
    upper = tmp_path / "MODEL.ONNX"
    shutil.copyfile(model_files["onnx"], upper)
    assert load_model(upper, device="cpu").info["backend"] == "onnx"
    with pytest.raises(DBNetError, match="an ONNX model"):
        load_model(upper, backend="torch", device="cpu")


# --- the write that never follows a link -------------------------------------------------------------
@pytest.mark.parametrize("planted_kind", ["link", "dangling link", "FIFO"])
def test_an_atomic_write_without_following_links_replaces_what_is_there(tmp_path, planted_kind):
    victim, target = tmp_path / "victim.txt", tmp_path / "own.bin"
    if planted_kind == "FIFO":
        os.mkfifo(target)
    else:
        if planted_kind == "link":
            victim.write_text("the user's file")
        os.symlink(victim, target)
    atomic_write_bytes(target, b"dbnet's", follow_links=False, mode=0o600)
    assert stat.S_ISREG(target.lstat().st_mode) and target.read_bytes() == b"dbnet's"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (victim.read_text() == "the user's file") if planted_kind == "link" else not victim.exists()


@pytest.mark.parametrize("planted_kind", ["FIFO", "link"])
def test_a_lock_planted_as_a_fifo_or_link_is_taken_over_not_read(tmp_path, planted_kind):
    out, victim = tmp_path / "out.json", tmp_path / "victim.txt"
    victim.write_text(f"{os.getppid()}\n")  # a live process's id, behind a link: not dbnet's lock
    if planted_kind == "FIFO":
        os.mkfifo(lock_path(out))
    else:
        os.symlink(victim, lock_path(out))
    lock = acquire_lock(out)
    assert stat.S_ISREG(lock.lstat().st_mode) and lock.read_text().split()[0] == str(os.getpid())
    release_lock(lock)
    assert not lock.exists() and victim.read_text() == f"{os.getppid()}\n"
