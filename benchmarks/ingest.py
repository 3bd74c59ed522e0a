"""Ingest speed and memory: the loop public ECG benchmarks use vs `stence-bench data ingest`, side by side.

Generates PTB-XL-layout records at 500 Hz (12 leads, 10 s), then, each in a fresh process so peak memory is its
own:
  baseline   the PTB-XL benchmark's loader: ``[wfdb.rdsamp(path) for path in ...]`` into one NumPy array
  ingest-1   our ingest into an ECG store, one process
  ingest-2   the same with two worker processes
and random-access batch reads (batches of 64 random records, for 5 s) from the finished store. Each method runs
--repeat times, interleaved; the table gives medians of records/s, the ratio to the baseline, and peak resident
memory. Run it with --records 2000 and --records 20000 (--skip-baseline: its memory grows with N) to see ingest
memory stay flat.

    python benchmarks/ingest.py --records 2000 [--repeat 3] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np, pandas as pd, wfdb
from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.ptbxl import PtbxlLayout
from stence_bench.data.store import ECGStore
mode, source, store = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
start = time.perf_counter()  # imports done: both sides are timed from here
if mode == "baseline":
    df = pd.read_csv(source / "ptbxl_database.csv")
    data = [wfdb.rdsamp(str(source / f)) for f in df.filename_hr]
    data = np.array([signal for signal, meta in data])
    n = len(data)
elif mode.startswith("ingest"):
    report = ingest(source, PtbxlLayout(rate=500), store, workers=int(mode.split("-")[1]))
    n = report.ingested
elif mode == "read":
    s = ECGStore(store)
    rng = np.random.default_rng(0)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 5:
        batch = rng.choice(len(s), size=64, replace=False)
        x = np.stack([s.signal(int(i)) for i in batch])
        n += len(batch)
seconds = time.perf_counter() - start
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"n": n, "seconds": seconds, "peak_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children) / 1024}))
"""


def run(mode: str, source: Path, store: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(source), str(store)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="Folder for the generated source and stores.")
    parser.add_argument("--skip-baseline", action="store_true", help="Skip the wfdb loop (its memory grows with N).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each method, interleaved; medians reported.")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="stence-ingest-bench-"))
    source = work / "ptbxl"
    if not (source / "ptbxl_database.csv").exists():
        from stence_bench.data.fake import write_ptbxl_layout

        started = time.perf_counter()
        write_ptbxl_layout(source, args.records, rates=(500,))
        print(f"generated {args.records} records in {time.perf_counter() - started:.0f} s under {source}", file=sys.stderr)
    # warm the page cache for everyone alike: every method then reads the source from memory
    for path in sorted(source.rglob("*")):
        if path.is_file():
            path.read_bytes()
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        for mode in (["baseline"] if not args.skip_baseline else []) + ["ingest-1", "ingest-2"]:
            store = work / f"store-{mode}"
            shutil.rmtree(store, ignore_errors=True)
            os.sync()  # no method pays for the write-back of the one before it
            runs.setdefault(mode, []).append(run(mode, source, store))
        runs.setdefault("read", []).append(run("read", source, work / "store-ingest-1"))
    rows = {mode: {"n": statistics.median(r["n"] for r in rs), "seconds": statistics.median(r["seconds"] for r in rs),
                   "peak_mb": max(r["peak_mb"] for r in rs)} for mode, rs in runs.items()}
    base = rows.get("baseline")
    print(f"{args.records} records, 12 leads x 5000 samples at 500 Hz; medians of {args.repeat} interleaved runs")
    print(f"{'method':10} {'records':>8} {'seconds':>8} {'records/s':>10} {'x baseline':>10} {'peak MB':>8}")
    for mode, r in rows.items():
        rate = r["n"] / r["seconds"]
        ratio = f"{rate / (base['n'] / base['seconds']):.1f}" if base and mode != "read" else "-"
        print(f"{mode:10} {r['n']:8.0f} {r['seconds']:8.2f} {rate:10.0f} {ratio:>10} {r['peak_mb']:8.0f}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
