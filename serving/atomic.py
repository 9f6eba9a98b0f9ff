"""Atomic file writes for the score outputs: temp file in the same folder, fsync, then ``os.replace``.

A run killed at any point leaves each output either the previous complete file or the new
complete file, never a truncated one. Each write returns the sha256 of what it wrote, for the
manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable[[Path], None]) -> str:
    """Call ``write(tmp)`` on a temp path beside ``path``, fsync it, move it into place; return its sha256.

    The temp file is removed when ``write`` fails; a SIGKILL may leave a hidden ``.NAME.*.tmp``
    beside the output (never the output itself half-written).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        digest = sha256_file(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest


def write_bytes_atomic(path: Path, data: bytes) -> str:
    """Write bytes atomically; returns their sha256."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write_atomic(path, write)


def write_text_atomic(path: Path, text: str) -> str:
    """Write UTF-8 text atomically; returns its sha256."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed (POSIX); best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
