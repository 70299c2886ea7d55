"""Time an order of the bundled samples' every tile (16 ARD tasks at 900 m, Sentinel-2 and Landsat 8) on a local
cluster of 1 and of 2 workers, each from a fresh output folder and store: wall time, the speed-up, and the
overhead per task (wall time less the tasks' own time shared over the workers, per task; it holds planning-free
scheduling, the store and the cluster start-up).

    python benchmarks/bench_orders.py
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "src/musyq/data/samples"
MUSYQ = str(Path(sys.executable).parent / "musyq")


def run_once(workers: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs = folder / "inputs"
        inputs.mkdir()
        for name in ("S2A_MSIL1C_20170729_T19UDP_900m", "LC08_L1TP_016037_20170813_20170814_01_RT_900m"):
            (inputs / name).symlink_to(SAMPLES / name)
        db = folder / "orders.sqlite"
        created = subprocess.run([MUSYQ, "order", "create", "--area", "-82,31,-68,50", "--from", "2017-07-01",
                                  "--to", "2017-08-31", "--products", "SR", "--inputs", str(inputs), "--out",
                                  str(folder / "out"), "--resolution", "900", "--db", str(db)],
                                 capture_output=True, text=True, check=True)
        order = created.stdout.split()[-1]
        start = time.perf_counter()
        subprocess.run([MUSYQ, "order", "run", order, "--workers", str(workers), "--db", str(db)],
                       capture_output=True, check=True)
        wall = time.perf_counter() - start
        with sqlite3.connect(db) as connection:
            seconds = [s for (s,) in connection.execute("SELECT seconds FROM tasks")]
    return wall, sum(seconds), len(seconds)


def main() -> None:
    results = {}
    for workers in (1, 2):
        wall, work, tasks = run_once(workers)
        results[workers] = wall
        overhead = (wall - work / workers) / tasks
        print(f"{workers} worker(s): {tasks} tasks, wall {wall:6.1f} s, task time {work:6.1f} s, "
              f"overhead {overhead:.2f} s per task (cluster start-up included)")
    print(f"speed-up with 2 workers: {results[1] / results[2]:.2f}x")


if __name__ == "__main__":
    main()
