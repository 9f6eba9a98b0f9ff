"""The hand-made ingest export of tests/fixtures/ingest, shared by the ingest test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


def make_export(tmp_path: Path, **replace: str) -> Path:
    """A copy of the base export with some tables replaced by defect files."""
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "base", raw)
    for table, defect in replace.items():
        shutil.copy(FIXTURES / "defects" / defect, raw / f"{table}.csv")
    return raw
