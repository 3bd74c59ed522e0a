"""Benchmarks that must keep running: benchmarks/gpu.py on the CPU (its GPU figures are measured where a GPU is)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_the_gpu_benchmark_runs_on_the_cpu_and_reports_throughput():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--preset", "tiny",
                          "--encoders", "resnet1d_wang", "--steps", "2", "--warmup", "1", "--batch", "4",
                          "--loader-workers", "0"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [json.loads(text) for text in out.stdout.splitlines() if text.startswith("{")]
    assert line["encoder"] == "resnet1d_wang" and line["precision"] == "fp32" and line["processes"] == 1
    assert line["samples_per_s"] > 0 and line["model_samples_per_s"] > 0 and line["loader_samples_per_s"] > 0
    assert line["gpu_utilisation"] is None and "| resnet1d_wang[tiny] | fp32 | 1 |" in out.stdout


def test_the_gpu_benchmark_says_in_one_line_when_there_is_no_gpu():
    import torch

    if torch.cuda.is_available():
        return
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and out.stderr.strip().splitlines() == [
        "benchmarks/gpu.py: no CUDA device here; run it on a GPU machine, or with --device cpu"]
