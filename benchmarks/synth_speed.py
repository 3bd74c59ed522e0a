"""Synthetic ECG generation speed, on one core: the generator alone, and the whole cohort written to disk.

    python benchmarks/synth_speed.py [--ecgs 2048] [--patients 300]

Runs in a child process with every thread pool limited to one thread (OMP, OpenBLAS, MKL), so the numbers are
one core's. Results are kept in docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, tempfile, time
import numpy as np
from stence_bench.synth.cohort import _rng, plan_ecgs, synthesize
from stence_bench.synth.ecg import generate
from stence_bench.synth.physiology import morphology, sample_patients
n_ecgs, n_patients = int(sys.argv[1]), int(sys.argv[2])
pats, _ = sample_patients(n_ecgs, _rng(0, 0))
ecgs = pats.assign(potassium=pats["k_base"], heart_rate=pats["hr_base"])
out = {}
for batch in (32, 128, 512):
    start = time.perf_counter()
    for i in range(0, n_ecgs, batch):
        part = ecgs.iloc[i : i + batch]
        rng = _rng(0, 3, i)
        beats, rhythm, noise, _ = morphology(part, rng)
        generate(beats, rhythm, noise, rng=rng)
    out[f"generator, batch {batch}"] = n_ecgs / (time.perf_counter() - start)
with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    summary = synthesize(tmp + "/c", n_patients, seed=0, angiograms=False)
    out["cohort to disk (2 layouts + 100 Hz copy)"] = summary["ecgs"] / (time.perf_counter() - start)
    from stence_bench.synth.angiography import write_angiogram
    start = time.perf_counter()
    for i in range(50):
        write_angiogram(f"{tmp}/a{i}.dcm", {"pLAD": 70.0, "mRCA": 50.0}, patient_id=str(i), seed=i)
    out["angiograms (128 px, 8 frames, RLE) per second"] = 50 / (time.perf_counter() - start)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecgs", type=int, default=2048)
    parser.add_argument("--patients", type=int, default=300)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.ecgs), str(args.patients)], env=env, check=True,
                          capture_output=True, text=True)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'what':48} {'per s':>8}")
    for name, rate in results.items():
        print(f"{name:48} {rate:8.0f}")


if __name__ == "__main__":
    main()
