"""The ONNX model of a ``.pt`` weights file, exported once and cached per file content.

``dbnet detect``'s default backend on a CPU (``auto``) is onnxruntime: it stays fast when other
processes share the cores, where PyTorch's OpenMP threads do not (bench/README.md, "Shared CPUs").
The first run on a weights file exports it (``dbcli.backends.export.export_bytes``: BN folded, verified
against PyTorch to 1e-4) into ``cache_dir()``; later runs load the file, without importing torch.

The cache file's name holds the weights file's SHA-256 (its content, not its name or date), dbnet's
version and the installed torch version, so a changed file, a new dbnet or a new exporter makes a
new export. Files are written atomically; an unwritable cache directory gives an export kept in
memory (made again by the next process); a cached file that onnxruntime cannot load, or that names
another weights file's hash, is made again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dbcli.errors import DBNetError
from dbcli.version import __version__

SHA_KEY = "dbnet.source_sha256"


def cache_dir() -> Path:
    """``$DBNET_CACHE``, else ``$XDG_CACHE_HOME/dbnet``, else ``~/.cache/dbnet``."""
    if os.environ.get("DBNET_CACHE"):
        return Path(os.environ["DBNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dbnet"


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of ``path``'s bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def torch_version() -> str:
    """The installed torch's version, read from its metadata (torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


def cache_path(sha256: str) -> Path:
    """Where the export of the weights file whose content hashes to ``sha256`` is cached (by content:
    the same bytes under another name share it)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{__version__}-torch{torch_version()}")
    return cache_dir() / f"dbnet-{sha256[:24]}-{safe}.onnx"


def cached_onnx_backend(weights: Path, device: str = "cpu", threads: int | None = None):
    """An ``OnnxBackend`` for the ``.pt`` file ``weights``: from the cache, or exported now (and
    cached when the cache directory is writable). Raises ``DBNetError`` when ``weights`` cannot be
    read or exported (e.g. the onnx package is missing)."""
    from dbcli.backends.onnx_backend import OnnxBackend

    try:
        sha = file_sha256(weights)
    except OSError as exc:
        raise DBNetError(f"{weights}: cannot read ({exc.strerror or exc})") from None
    path = cache_path(sha)
    if path.is_file():
        try:
            backend = OnnxBackend(path, device, threads)
            if backend.metadata.get(SHA_KEY) == sha:
                return backend
        except DBNetError:
            pass  # damaged (a disk error, a foreign file): made again below
    from dbcli.backends.export import export_bytes
    from dbcli.outputs.atomic import atomic_write_bytes

    data, _, _ = export_bytes(weights, "onnx", extra_metadata={SHA_KEY: sha})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except OSError:  # a read-only home, a full disk: this process keeps it in memory
        return OnnxBackend(data, device, threads, name=f"{weights} (exported to ONNX)")
    return OnnxBackend(path, device, threads)
