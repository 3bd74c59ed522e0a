"""How long `stence-bench list encoders` takes, next to a bare interpreter and to `import torch`.

Run: python benchmarks/cli_startup.py [--runs N]. Each command runs N times, interleaved, in fresh interpreters;
medians are printed with their ratio to a bare `python -c pass`, so a noisy machine affects all alike.
Results are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "stence-bench list encoders": [sys.executable, "-m", "stence_bench", "list", "encoders"],
    "stence-bench --version": [sys.executable, "-m", "stence_bench", "--version"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':32} {'median s':>9} {'x bare python':>14}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:32} {median:9.3f} {median / base:14.1f}")


if __name__ == "__main__":
    main()
