"""`stence-bench run` under torchrun on CPU (2 gloo processes) against one process: the same losses at every
step, one checkpoint and one result per cell (rank 0 writes), and a run killed during distributed pretraining
resumes from its last finished epoch and ends as the uninterrupted run does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_env, make_distribution

from stence_bench.protocol.pretrain import read_log

SUITE = """
name = "ddp"
tasks = ["stenosis.70"]
# clip on precomputed angiography embeddings: a gathered loss and no random augmentation, so two processes can
# match one exactly; the transformer has no batch statistics that differ by rank
objectives = [{name = "clip", options = {modality_encoders = {angiography = "angio_embedding"}, learn_temperature = false}}]
encoders = [{name = "ecg_transformer", preset = "tiny"}]
controls = false

[protocol]
stages = ["linear_probe", "finetune"]
fractions = [1.0]
bootstrap = 20
pretrain = {epochs = 3, batch_size = 16}
finetune = {max_epochs = 2, patience = 2, batch_size = 16}

[data]
synthetic = {patients = 40, seed = 2, angiograms = false}
"""

KILLER = """
import os
from stence_bench import hookimpl

@hookimpl
def epoch_finished(cell, epoch, metrics):
    if cell.stage == "pretrain" and epoch == 2:
        os._exit(17)  # as a kill would: no clean-up, the other rank left waiting
"""


def run(suite: Path, out: Path, processes: int, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    if processes == 1:
        command = [sys.executable, "-m", "stence_bench", "run", str(suite), "--out", str(out), "--workers", "1"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   "-m", "stence_bench", "run", str(suite), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          env=cli_env(pythonpath, OMP_NUM_THREADS="1", STENCE_BENCH_DEVICE="cpu"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ddp")
    suite = base / "suite.toml"
    suite.write_text(SUITE)
    out = {"suite": suite}
    for name, processes in (("one", 1), ("two", 2)):
        proc = run(suite, base / name, processes)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        out[name] = base / name
    return out


def files(root: Path, folder: str, suffix: str = "") -> list[str]:
    return sorted(p.name for p in (root / folder).iterdir() if p.name.endswith(suffix))


def single(root: Path, folder: str, suffix: str) -> Path:
    (path,) = [p for p in (root / folder).iterdir() if p.name.endswith(suffix)]
    return path


def test_two_processes_train_as_one_on_the_same_global_batch(runs):
    one, two = read_log(single(runs["one"], "logs", ".jsonl")), read_log(single(runs["two"], "logs", ".jsonl"))
    assert len(one) == len(two) > 6  # 3 epochs of several steps
    for a, b in zip(one, two):
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4), (a, b)
    # exactly one checkpoint and one result per cell: rank 1 wrote nothing, no training state left behind
    assert files(runs["two"], "checkpoints") == files(runs["one"], "checkpoints")
    assert len(files(runs["two"], "checkpoints")) == 1 and files(runs["two"], "checkpoints")[0].endswith(".safetensors")
    assert files(runs["two"], "results") == files(runs["one"], "results")  # results and rank 0's predictions
    assert len(files(runs["two"], "results", ".json")) == 3 and len(files(runs["two"], "results", ".npz")) == 2
    for name in files(runs["two"], "results", ".json"):
        a = json.loads((runs["one"] / "results" / name).read_text())
        b = json.loads((runs["two"] / "results" / name).read_text())
        assert a["status"] == b["status"] == "done"
        if a["value"] is not None:  # the probe reads the checkpoint; finetuning runs on both processes (DDP)
            assert b["value"] == pytest.approx(a["value"], abs=1e-3), name
    results = [json.loads((runs["two"] / "results" / n).read_text()) for n in files(runs["two"], "results", ".json")]
    pretrain = next(r for r in results if r["cell"]["stage"] == "pretrain")
    assert pretrain["pretrain"]["processes"] == 2 and "2 processes (gloo)" in pretrain["device"]


def test_a_run_killed_during_distributed_pretraining_resumes_from_its_last_checkpoint(runs, tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "stence-bench-killer", "stence_bench_killer", KILLER)
    out = tmp_path / "run"
    killed = run(runs["suite"], out, 2, pythonpath=site)
    assert killed.returncode != 0
    state = single(out, "checkpoints", ".state.pt")
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] == 2  # the last finished epoch before the kill
    assert not list((out / "checkpoints").glob("*.safetensors"))  # the pretraining did not finish
    assert not list(out.glob("results/*.json"))
    assert {line["epoch"] for line in read_log(single(out, "logs", ".jsonl"))} == {1, 2}

    resumed = run(runs["suite"], out, 2)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming from epoch 2/3" in resumed.stderr
    # the resumed run ends as the uninterrupted one: the same losses at every step and the same weights
    log, reference = read_log(single(out, "logs", ".jsonl")), read_log(single(runs["two"], "logs", ".jsonl"))
    assert [(s["epoch"], s["step"]) for s in log] == [(s["epoch"], s["step"]) for s in reference]
    assert [s["loss"] for s in log] == pytest.approx([s["loss"] for s in reference], abs=1e-6)
    from safetensors.torch import load_file

    weights = load_file(single(out, "checkpoints", ".safetensors"))
    expected = load_file(single(runs["two"], "checkpoints", ".safetensors"))
    assert weights.keys() == expected.keys()
    assert all(torch.allclose(weights[k], expected[k], atol=1e-6) for k in weights)
    assert not list((out / "checkpoints").glob("*.state.pt"))


def test_a_global_batch_that_does_not_divide_among_the_processes_is_one_clear_error():
    from stence_bench.errors import StenceBenchError
    from stence_bench.protocol.pretrain import _global_batch
    from stence_bench.cells import Cell

    cell = Cell(stage="pretrain", encoder="ecg_transformer", preset="tiny", objective="clip", seed=0)
    assert _global_batch(cell, 16, 1000, 2) == 16
    assert _global_batch(cell, 16, 11, 2) == 10  # fewer records than a batch: all of them, in equal slices
    with pytest.raises(StenceBenchError, match="batch_size = 16 does not divide among 3 processes; make it a "
                                               "multiple of 3"):
        _global_batch(cell, 16, 1000, 3)
    with pytest.raises(StenceBenchError, match="1 training record"):
        _global_batch(cell, 16, 1, 1)
