"""`make bench`: every benchmark at a size that finishes in minutes on 2 cores, one after another.

Each benchmark prints its own ratios against a baseline measured in the same run (these machines
are noisy; absolute times are only context). The reported figures in the README come from the
larger sizes named beside each line (``--full``).

    python bench/run_all.py           # quick sizes
    python bench/run_all.py --full    # the README sizes (1M clients; the better part of an hour)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def benchmarks(full: bool) -> list[list[str]]:
    """Command lines of the benchmarks, quick or README-sized."""
    py = sys.executable
    return [
        [py, "bench/generate.py", *(["--million"] if full else [])],
        [py, "-m", "bench.ingest", "1000000" if full else "200000", "2"],
        [py, "bench/features.py", "--clients", "1000000" if full else "100000"],
        [py, "bench/train.py"],
        [py, "bench/score.py", "--clients", "1000000" if full else "100000"],
        [py, "bench/api.py", "--seconds", "4"],
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the sizes reported in the README")
    args = ap.parse_args()
    failed = []
    for cmd in benchmarks(args.full):
        name = " ".join(Path(c).name for c in cmd[1:])
        print(f"\n=== {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
