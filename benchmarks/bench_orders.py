"""Time an order of 16 ARD tasks on a local cluster of 1 and of 2 workers, each from a fresh output folder and
store: the bundled Sentinel-2 sample acquired on 16 days (its band files linked, its tile metadata given a new
time and product name each), made into 19UDP at 60 m.

Three runs: one worker whose kernels use one core (the scaling baseline), one worker whose kernels use every
core (what ``--workers 1`` gives), and two workers (one core each, on 2 cores). Printed: wall time of ``musyq order run``, its fixed cost (the same command on the finished order: start-up,
cluster, imports, teardown), the tasks' own time, the speed-up, and the overhead per task: the span from the
first task's submission to the last one's end, less the tasks' own time shared over the workers, per task (the
store's updates, the scheduler's round trips, submission).

    python benchmarks/bench_orders.py [--resolution 60] [--scenes 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "src/musyq/data/samples/S2A_MSIL1C_20170729_T19UDP_900m"
MUSYQ = str(Path(sys.executable).parent / "musyq")


def clone_scenes(inputs: Path, count: int) -> None:
    info = json.loads((SAMPLE / "tileInfo.json").read_text())
    first = datetime.fromisoformat(info["timestamp"].replace("Z", "+00:00"))
    for day in range(count):
        when = first + timedelta(days=day)
        folder = inputs / f"S2A_MSIL1C_{when:%Y%m%d}_T19UDP_900m"
        folder.mkdir()
        for band in SAMPLE.glob("*.jp2"):
            (folder / band.name).symlink_to(band)
        stamp = when.strftime("%Y%m%dT%H%M%S")
        (folder / "tileInfo.json").write_text(json.dumps(info | {
            "timestamp": when.isoformat().replace("+00:00", "Z"),
            "productName": f"S2A_MSIL1C_{stamp}_N0205_R111_T19UDP_{stamp}"}))


def run_once(workers: int, resolution: float, scenes: int, kernel_threads: int | None = None) -> dict[str, float]:
    environment = os.environ | ({"NUMBA_NUM_THREADS": str(kernel_threads)} if kernel_threads else {})
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs = folder / "inputs"
        inputs.mkdir()
        clone_scenes(inputs, scenes)
        db = folder / "orders.sqlite"
        created = subprocess.run([MUSYQ, "order", "create", "--area", "-69.9,48.0,-69.1,48.9", "--from",
                                  "2017-07-01", "--to", "2017-12-31", "--products", "SR", "--inputs", str(inputs),
                                  "--out", str(folder / "out"), "--resolution", str(resolution), "--db", str(db)],
                                 capture_output=True, text=True, check=True)
        order = created.stdout.split()[-1]
        command = [MUSYQ, "order", "run", order, "--workers", str(workers), "--db", str(db)]
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, env=environment)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, env=environment)  # all done: the fixed cost
        fixed = time.perf_counter() - start
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT seconds, started, finished FROM tasks WHERE kind = 'ard'").fetchall()
    work = sum(r[0] for r in rows)
    span = (max(datetime.fromisoformat(r[2]) for r in rows) - min(datetime.fromisoformat(r[1]) for r in rows))
    return {"wall": wall, "fixed": fixed, "work": work, "tasks": len(rows),
            "overhead": (span.total_seconds() - work / workers) / len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=float, default=60.0)
    parser.add_argument("--scenes", type=int, default=16)
    args = parser.parse_args()
    runs = {"1 worker, 1 core": (1, 1), "1 worker, all cores": (1, None), "2 workers": (2, None)}
    results = {}
    for name, (workers, threads) in runs.items():
        r = run_once(workers, args.resolution, args.scenes, threads)
        results[name] = r
        print(f"{name:>19}: {r['tasks']:.0f} ARD tasks at {args.resolution:g} m, wall {r['wall']:6.1f} s "
              f"(fixed {r['fixed']:.1f} s), task time {r['work']:6.1f} s, overhead {r['overhead']:.3f} s per task")
    for baseline in ("1 worker, 1 core", "1 worker, all cores"):
        one, two = results[baseline], results["2 workers"]
        print(f"speed-up of 2 workers over {baseline}: {one['wall'] / two['wall']:.2f}x (wall), "
              f"{(one['wall'] - one['fixed']) / (two['wall'] - two['fixed']):.2f}x (less the fixed cost)")

if __name__ == "__main__":
    main()
