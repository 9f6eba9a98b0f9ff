"""Atomic writes: every output goes to a temp file in the same folder, then ``os.replace``.

A crash half-way leaves the previous file (or none), never a truncated one that a later stage
would read as valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable[[Path], object]) -> str:
    """Call ``write(tmp)`` on a temp path beside ``path``, fsync it, move it into place; return its sha256.

    The temp file is removed when ``write`` fails; a SIGKILL may leave a hidden ``.NAME.*.tmp``
    beside the output, never the output itself half-written. The file gets the usual permissions
    (0666 less the umask), not mkstemp's owner-only 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        tmp.chmod(0o666 & ~_umask())
        digest = sha256_file(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest


def write_bytes_atomic(path: Path, data: bytes) -> str:
    """Write bytes atomically; returns their sha256."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> str:
    """Write UTF-8 text atomically; returns its sha256."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed (POSIX); best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, data: Any) -> str:
    """Write indented JSON atomically (numpy scalars/arrays and dates are converted); returns its sha256."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> str:
    """Write a CSV without the index atomically; returns its sha256."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_parquet_atomic(path: Path, frame: pd.DataFrame) -> str:
    """Write a Parquet file without the index atomically; returns its sha256."""
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _json_default(o: object) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
