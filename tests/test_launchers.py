"""Launchers: the same suite run sequentially, by the local launcher's parallel processes and as jobs through
submitit's local executor gives the same result files; the SLURM job plan (pretraining first, evaluation jobs
depending on it, sizes from the suite or the command line)."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench.cli import cli
from stence_bench.errors import StenceBenchError
from stence_bench.results import paired_differences, read_results
from stence_bench.protocol.runner import run_suite
from stence_bench.protocol.slurm import launch
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan

SUITE = """
name = "launch"
tasks = ["stenosis.70"]
objectives = ["patient_contrastive"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = true

[protocol]
stages = ["linear_probe", "finetune"]
fractions = [0.5, 1.0]
draws = 1
bootstrap = 30
pretrain = {epochs = 2, batch_size = 16}
finetune = {max_epochs = 2, patience = 1, batch_size = 32}

[data]
synthetic = {patients = 40, seed = 5, angiograms = false}
"""


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def comparable(root: Path) -> dict[str, dict]:
    """What each result says, without when, where and how long."""
    results = read_results([root])
    paired = paired_differences(results)
    return {r.key: {"status": r.status, "value": r.value, "scores": r.scores, "ci": r.ci,
                    "vs_control": paired[r.key].model_dump() if r.key in paired else None}
            for r in results}


def assert_same(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["status"] == b[key]["status"] == "done", key
        assert _close(a[key], b[key]), (key, a[key], b[key])


def _close(x, y) -> bool:
    """Equal, floats to 1e-4 (a forked worker runs one thread, the parent several: sums may round apart)."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_close(a, b) for a, b in zip(x, y))
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= 1e-4 or (math.isnan(x) and math.isnan(y))
    return x == y


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, registry) -> Path:
    root = tmp_path_factory.mktemp("sequential")
    outcomes = run_suite(parse_suite(SUITE), registry, root, echo=lambda line: None, workers=1)
    assert {o.status for o in outcomes} == {"done"}
    return root


def test_the_local_launcher_runs_cells_in_parallel_processes_with_the_same_results(sequential, registry, tmp_path):
    lines: list[str] = []
    outcomes = run_suite(parse_suite(SUITE), registry, tmp_path, echo=lines.append, workers=2)
    assert {o.status for o in outcomes} == {"done"}
    assert any("pretraining cells in 2 worker processes" in line for line in lines)
    assert any("evaluation cells in 2 worker processes" in line for line in lines)
    assert_same(comparable(sequential), comparable(tmp_path))


def test_submitit_local_jobs_give_the_same_results_and_a_rerun_submits_nothing(sequential, registry, tmp_path):
    suite = parse_suite(SUITE)
    cells = plan(suite, registry)
    lines: list[str] = []
    outcomes = launch(suite, registry, tmp_path, cells=cells, echo=lines.append, cluster="local")
    assert [o.status for o in outcomes] == ["done"] * len(cells), [o.error for o in outcomes]
    assert_same(comparable(sequential), comparable(tmp_path))
    jobs = json.loads((tmp_path / "slurm" / "jobs.json").read_text())
    assert set(jobs) == {c.key for c in cells}
    assert sum("jobs]" in line for line in lines) == len(set(jobs.values()))
    again = launch(suite, registry, tmp_path, cells=cells, echo=lambda line: None, cluster="local")
    assert {o.status for o in again} == {"cached"}


class FakeJob:
    """A submitit job that ended at once without running (no result file), as a killed job would."""

    num_tasks = 1
    state = "CANCELLED"

    def __init__(self, job_id: str, folder: Path):
        self.job_id = job_id
        self.paths = SimpleNamespace(result_pickle=folder / f"{job_id}_0_result.pkl")

    def task(self, index: int) -> FakeJob:
        return self

    def done(self) -> bool:
        return True


class FakeExecutor:
    """Records what the launcher asks of submitit's SLURM executor."""

    def __init__(self):
        self.params: dict = {}
        self.submitted: list[tuple[dict, list[str]]] = []
        self.ids = itertools.count(100)

    def update_parameters(self, **params):
        self.params = params

    def submit(self, fn, suite, root, cells, device):
        self.submitted.append((dict(self.params), [c.key for c in cells]))
        return FakeJob(str(next(self.ids)), Path(root))


def test_slurm_jobs_pretrain_first_and_evaluation_jobs_depend_on_their_pretraining(registry, tmp_path):
    suite = parse_suite(SUITE + '\n[cluster]\npartition = "gpu"\ngpus_per_job = 4\ncells_per_job = 2\n'
                        'sbatch = {constraint = "a100"}\n')
    cells = plan(suite, registry)
    executor = FakeExecutor()
    outcomes = launch(suite, registry, tmp_path, cells=cells, echo=lambda line: None, cluster="slurm",
                      executor=executor, poll_s=0)
    by_key = {c.key: c for c in cells}
    pretrain = [(p, keys) for p, keys in executor.submitted if by_key[keys[0]].stage == "pretrain"]
    evaluation = [(p, keys) for p, keys in executor.submitted if by_key[keys[0]].stage != "pretrain"]
    assert executor.submitted[: len(pretrain)] == pretrain  # every pretraining job goes first
    pretrain_ids = {keys[0]: str(100 + i) for i, (_, keys) in enumerate(pretrain)}
    for params, _keys in pretrain:
        assert (params["tasks_per_node"], params["gpus_per_node"]) == (4, 4)  # one DDP process per GPU
        assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 240
        assert params["slurm_additional_parameters"] == {"constraint": "a100"} and "slurm_dependency" not in params
    for params, keys in evaluation:
        assert len(keys) <= 2 and (params["tasks_per_node"], params["gpus_per_node"]) == (1, 1)
        source = by_key[keys[0]].pretrain_cell()
        assert all((by_key[k].pretrain_cell() or by_key[k]).key == (source or by_key[k]).key for k in keys)
        if source is None:  # the random-init control reads no checkpoint: no dependency
            assert "slurm_dependency" not in params
        else:
            assert params["slurm_dependency"] == f"afterany:{pretrain_ids[source.key]}"
    assert sorted(k for _, keys in executor.submitted for k in keys) == sorted(by_key)
    # the fake jobs never ran: every cell is reported failed with its job, none silently dropped
    assert len(outcomes) == len(cells) and {o.status for o in outcomes} == {"failed"}
    assert all("ended without finishing: CANCELLED (log: " in o.error for o in outcomes)


def test_the_command_line_overrides_the_suites_cluster_settings(registry, tmp_path, monkeypatch):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE + '\n[cluster]\npartition = "a"\ntime_min = 30\ncells_per_job = 1\n')
    executor = FakeExecutor()
    monkeypatch.setattr("stence_bench.protocol.slurm.make_executor", lambda folder, cluster: executor)
    result = CliRunner().invoke(cli, ["run", str(suite), "--launcher", "slurm", "--out", str(tmp_path / "r"),
                                      "--partition", "b", "--gpus-per-job", "2", "--cells-per-job", "3"],
                                obj=registry)
    assert result.exit_code == 1  # the fake jobs ran nothing: every cell failed, and the run says so
    assert executor.submitted and all(p["slurm_partition"] == "b" and p["timeout_min"] == 30
                                      for p, _ in executor.submitted)
    assert {p["gpus_per_node"] for p, _ in executor.submitted} == {1, 2}
    assert max(len(keys) for _, keys in executor.submitted) == 3


def test_the_plan_says_which_jobs_slurm_would_get(registry, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE + '\n[cluster]\ncells_per_job = 2\n')
    result = CliRunner().invoke(cli, ["run", str(suite), "--plan", "--launcher", "slurm", "--gpus-per-job", "8"],
                                obj=registry)
    cells = plan(parse_suite(SUITE), registry)
    pretrain = sum(c.stage == "pretrain" for c in cells)
    groups: dict = {}
    for c in cells:
        if c.stage != "pretrain":
            groups.setdefault(c.pretrain_cell().key if c.pretrain_cell() else None, []).append(c)
    evaluation = sum(math.ceil(len(g) / 2) for g in groups.values())
    assert result.exit_code == 0, result.output
    assert (f"--launcher slurm: {pretrain + evaluation} jobs if nothing is finished yet: {pretrain} pretraining "
            f"(8 GPU(s) each), {evaluation} evaluation (at most 2 cells each)") in result.output
    assert not (tmp_path / "runs").exists()


def test_slurm_refuses_to_submit_twice_while_jobs_are_queued(registry, tmp_path, monkeypatch):
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "jobs.json").write_text(json.dumps({"abc": "4242"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\necho 4242\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    suite = parse_suite(SUITE)
    with pytest.raises(StenceBenchError, match="jobs 4242 of this run are still queued or running"):
        launch(suite, registry, tmp_path, cells=plan(suite, registry), cluster="slurm", executor=FakeExecutor())


def test_launcher_options_are_checked_in_one_line(tmp_path, registry):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(suite), "--partition", "gpu"], obj=registry)
    assert result.exit_code == 2 and "Error: --partition is an option of --launcher slurm" in result.output
    if not torch.cuda.is_available():
        result = runner.invoke(cli, ["run", str(suite), "--device", "cuda", "--out", str(tmp_path / "g")], obj=registry)
        assert result.exit_code == 2 and "no GPU is visible" in result.output
    if not any((Path(p) / "sbatch").exists() for p in os.environ["PATH"].split(os.pathsep)):
        result = runner.invoke(cli, ["run", str(suite), "--launcher", "slurm", "--out", str(tmp_path / "r")],
                               obj=registry)
        assert result.exit_code == 2 and "sbatch is not on PATH" in result.output
