"""The ONNX model of a ``.pt`` weights file, exported once and cached per file content.

``dbnet detect``'s default backend on a CPU (``auto``) is onnxruntime: it stays fast when other
processes share the cores, where PyTorch's OpenMP threads do not (bench/README.md, "Shared CPUs").
The first run on a weights file exports it (``dbcli.backends.export.export_bytes``: BN folded, verified
against PyTorch to 1e-4) into the cache folder (``dbcli.backends.cache_folder``: private, mode 0700,
never followed through links); later runs load the file, without importing torch.

The cache file's name holds the weights file's SHA-256 (its content, not its name or date), dbnet's
version and the installed torch version, so a changed file, a new dbnet or a new exporter makes a
new export. A cached file is trusted only when it is sealed for *this* weights file: its last bytes
are one more ONNX metadata entry, ``dbnet.cache_mac``, the HMAC-SHA256 (under the cache folder's
secret key) of the weights file's SHA-256 and every byte of the export before it. A file planted at
the right name (a symlink, a FIFO, another model's export, one whose ``dbnet.source_sha256`` metadata
was edited to match) fails that check and is made again; so is a damaged one. A cache folder that
cannot be used (another user's, writable by others, a name too long, unreachable, read-only) gives an
export kept in memory (made again by the next process) and one warning line (``OnnxBackend.note``).
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
from pathlib import Path

from dbcli.backends import cache_folder
from dbcli.backends.cache_folder import CacheUnusable
from dbcli.errors import DBNetError
from dbcli.files import file_sha256
from dbcli.version import __version__

SHA_KEY = "dbnet.source_sha256"
MAC_KEY = "dbnet.cache_mac"


def cache_dir() -> Path:
    """``$DBNET_CACHE``, else ``$XDG_CACHE_HOME/dbnet`` (absolute only), else ``~/.cache/dbnet``
    (``dbcli.backends.cache_folder.cache_dir``; raises ``CacheUnusable`` when there is none)."""
    return cache_folder.cache_dir()


def torch_version() -> str:
    """The installed torch's version, read from its metadata (torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


def source_prefix(sha256: str) -> str:
    """The start of the names of every cached export of the weights file hashing to ``sha256``."""
    return f"dbnet-{sha256[:24]}-"


def cache_name(sha256: str) -> str:
    """The cache file name of the export of the weights file whose content hashes to ``sha256``, for
    this dbnet and torch version."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{__version__}-torch{torch_version()}")
    return f"{source_prefix(sha256)}{safe}.onnx"


def cache_path(sha256: str) -> Path:
    """Where the export of the weights file whose content hashes to ``sha256`` is cached (by content:
    the same bytes under another name share it)."""
    return cache_dir() / cache_name(sha256)


# --- the seal: one ONNX metadata entry appended to the export --------------------------------------
def _metadata_entry(key: str, value: str) -> bytes:
    """``ModelProto.metadata_props`` (field 14) entry ``key: value`` as protobuf bytes; appended to a
    serialized model it adds that entry (repeated fields concatenate). Short strings only (< 128 B)."""
    body = b"\x0a" + bytes([len(key)]) + key.encode() + b"\x12" + bytes([len(value)]) + value.encode()
    return b"\x72" + bytes([len(body)]) + body


def _mac(key: bytes, sha256: str, export: bytes | memoryview) -> str:
    mac = hmac.new(key, sha256.encode() + b"\n", hashlib.sha256)
    mac.update(export)
    return mac.hexdigest()


def seal(export: bytes, sha256: str, key: bytes) -> bytes:
    """``export`` (ONNX bytes) with the ``dbnet.cache_mac`` entry appended: still a valid ONNX model."""
    return export + _metadata_entry(MAC_KEY, _mac(key, sha256, export))


def unseal(data: bytes | mmap.mmap, sha256: str, key: bytes) -> bool:
    """Whether ``data`` (bytes, or a file mapped in memory: not copied) is an export sealed by ``seal``
    for the weights file hashing to ``sha256``."""
    size = len(_metadata_entry(MAC_KEY, "0" * 64))
    if len(data) <= size:
        return False
    with memoryview(data) as view:
        expected = _metadata_entry(MAC_KEY, _mac(key, sha256, view[:-size]))
        return hmac.compare_digest(bytes(view[-size:]), expected)


def _sealed(fd: int, sha256: str, key: bytes) -> bool:
    """Whether the open file ``fd`` is sealed for ``sha256`` (read through a memory map)."""
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            return unseal(mapped, sha256, key)
    except (OSError, ValueError, BufferError):  # (an empty file cannot be mapped)
        return False


def _fd_source(fd: int) -> str | bytes:
    """What onnxruntime loads for the open file ``fd``: a name of that very file (``/proc/self/fd/N``,
    ``/dev/fd/N``: what was verified is what is loaded, even if the name is replaced meanwhile), else
    its bytes."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.exists(f"{folder}/{fd}"):
            return f"{folder}/{fd}"
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# --- the backend -----------------------------------------------------------------------------------
def _load_cached(folder: Path, name: str, sha: str, device: str, threads: int | None):
    """The cached export ``folder / name`` as an ``OnnxBackend`` when it is sealed for ``sha`` and
    loads, else None (missing, planted, damaged: made again)."""
    from dbcli.backends.onnx_backend import OnnxBackend

    key = cache_folder.read_key(folder)
    fd = cache_folder.open_file(folder, name, touch=True) if key else None
    if fd is None or key is None:
        return None
    try:
        if not _sealed(fd, sha, key):
            return None
        backend = OnnxBackend(_fd_source(fd), device, threads, name=str(folder / name))
    except (DBNetError, OSError):
        return None
    finally:
        os.close(fd)
    return backend if backend.metadata.get(SHA_KEY) == sha else None


def _store(folder: Path, name: str, sha: str, export: bytes) -> bytes:
    """Seal ``export`` and write it as ``folder / name``, then evict old exports. Returns the sealed
    bytes. Raises ``OSError`` when the folder cannot be written."""
    sealed = seal(export, sha, cache_folder.cache_key(folder))
    cache_folder.write_file(folder, name, sealed)
    cache_folder.evict(folder, name, source_prefix(sha))
    return sealed


def _open_cache() -> tuple[Path | None, str | None]:
    """``(folder, None)`` for a usable cache folder, else ``(None, why not)``."""
    try:
        return cache_folder.open_folder(cache_dir()), None
    except CacheUnusable as exc:
        return None, str(exc)


def cached_onnx_backend(weights: Path, device: str = "cpu", threads: int | None = None):
    """An ``OnnxBackend`` for the ``.pt`` file ``weights``: from the cache, or exported now (and
    cached when the cache folder can be used; else kept in memory, and the backend's ``note`` says
    why). Raises ``DBNetError`` when ``weights`` cannot be read or exported (e.g. the onnx package is
    missing)."""
    from dbcli.backends.onnx_backend import OnnxBackend

    sha = file_sha256(weights, "weights file")
    name = cache_name(sha)
    folder, problem = _open_cache()
    if folder is not None:
        backend = _load_cached(folder, name, sha, device, threads)
        if backend is not None:
            return backend
    from dbcli.backends.export import export_bytes

    data, _, _ = export_bytes(weights, "onnx", extra_metadata={SHA_KEY: sha})
    if folder is not None:
        try:
            sealed = _store(folder, name, sha, data)
            return OnnxBackend(sealed, device, threads, name=str(folder / name))
        except OSError as exc:  # a read-only home, a full disk
            problem = f"{cache_folder.shown(folder)}: cannot be written ({exc.strerror or exc})"
    backend = OnnxBackend(data, device, threads, name=f"{weights} (exported to ONNX in memory)")
    backend.note = (f"ONNX cache {problem}; the export of {weights} is kept in memory (made again by "
                    "each run; $DBNET_CACHE names another folder)")
    return backend
