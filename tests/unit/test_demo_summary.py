"""The demo summary prints commands a newcomer can paste: real client ids, unquoted, unfolded."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.console import Console

from pipeline.demo_summary import render


def _write_scores(root: Path) -> None:
    scores = root / "data" / "scores"
    scores.mkdir(parents=True)
    with (scores / "winback.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(["client_id", "winback_probability"])
        w.writerow(["C0000042", 0.5])
    (scores / "manifest.json").write_text(json.dumps({"rows": {}}), encoding="utf-8")


def test_curl_example_names_first_listed_client_unquoted_on_one_line(tmp_path: Path) -> None:
    _write_scores(tmp_path)
    out = io.StringIO()
    render(Console(file=out, width=60, color_system=None), tmp_path)
    text = out.getvalue()
    assert "http://127.0.0.1:8000/v1/clients/C0000042/score" in text
    assert '{"client_ids": ["C0000042"]}' in text
    curl_lines = [line for line in text.splitlines() if line.startswith("curl")]
    assert len(curl_lines) == 2 and all("http://127.0.0.1:8000" in line for line in curl_lines)
