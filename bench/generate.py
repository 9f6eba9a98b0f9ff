"""Benchmark of `comeback generate`: wall time, peak memory and rows per second.

    python bench/generate.py            # 20k clients (the default export)
    python bench/generate.py --million  # also 1M clients (several minutes)

Each size runs in a fresh child process. Two peaks are printed: the largest single process
(resource.getrusage of the children) and the whole process tree (main + worker processes, sampled
from /proc every 0.2 s). The ratio line compares 1M with 50 x the 20k run measured here: below 1
means the generator scales better than linearly (the per-day work is shared by more clients).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import sys
from pathlib import Path
from pipeline.generate import generate_export, load_sections
gen, truth = load_sections(Path(sys.argv[1]))
gen = gen.model_copy(update={"clients": int(sys.argv[2]), "seed": 7, "format": sys.argv[4]})
generate_export(gen, truth, Path(sys.argv[3]), workers=int(sys.argv[5]))
"""


def _tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (Linux /proc), KiB."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(d.name)] = int(stat[1])
            rss[int(d.name)] = int(stat[21]) * (resource.getpagesize() // 1024)
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0) for p in tree)


def run(clients: int, fmt: str, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(REPO / "params.yaml"), str(clients), tmp, fmt, str(workers)],
            cwd=REPO,
        )
        peak = [0]

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        if proc.wait() != 0:
            raise SystemExit(f"generate failed for {clients} clients")
        sampler.join()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        manifest = json.loads((Path(tmp) / "generate_manifest.json").read_text(encoding="utf-8"))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return {
        "clients": clients,
        "wall_s": wall,
        "generate_s": manifest["elapsed_seconds"],
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        # ru_maxrss of children is the largest single child (the main process or one worker), in KiB
        "peak_rss_mib": after.ru_maxrss / 1024,
        "tree_rss_mib": peak[0] / 1024,
        "orders": manifest["rows"]["orders"],
        "orders_per_client": manifest["rows"]["orders"] / clients,
        "mib_written": size / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--million", action="store_true", help="also run 1M clients")
    ap.add_argument("--format", default="csv", choices=("csv", "parquet"))
    ap.add_argument("--workers", type=int, default=0, help="0: up to 2 processes")
    args = ap.parse_args()
    sizes = [20_000] + ([1_000_000] if args.million else [])
    results = [run(n, args.format, args.workers) for n in sizes]
    print(
        f"{'clients':>10} {'wall s':>8} {'gen s':>8} {'cpu s':>8} {'peak MiB':>9} {'tree MiB':>9} "
        f"{'orders':>11} {'ord/cl':>7} {'MiB out':>8}"
    )
    for r in results:
        print(
            f"{r['clients']:>10,} {r['wall_s']:>8.1f} {r['generate_s']:>8.1f} {r['cpu_s']:>8.1f} "
            f"{r['peak_rss_mib']:>9.0f} {r['tree_rss_mib']:>9.0f} {r['orders']:>11,} "
            f"{r['orders_per_client']:>7.2f} {r['mib_written']:>8.0f}"
        )
    if len(results) == 2:
        ratio = results[1]["generate_s"] / (50 * results[0]["generate_s"])
        print(f"1M time / (50 x 20k time) = {ratio:.2f}  (targets: 20k < 10 s, 1M < 300 s and < 3 GiB)")


if __name__ == "__main__":
    main()
