"""``--launcher slurm`` against a real SLURM (the one-node cluster that ``.ci/slurm`` sets up): a suite runs as
jobs with the results of a run here and a re-run submits nothing; a 2-task job pretrains under DDP (gloo) as
one process does; a cancelled job's cells are failed with its id and log; a request the cluster cannot run
fails fast in one line naming the field behind it. Where ``sbatch`` is absent these tests skip
(``STENCE_BENCH_STRICT=1`` in CI makes that a failure). The last tests check the messages without a cluster."""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, cli_env, make_distribution, need
from test_distributed_runs import SUITE as DDP_SUITE
from test_launchers import SUITE as LAUNCH_SUITE
from test_launchers import FakeExecutor, assert_same, comparable

from stence_bench.cli import cli
from stence_bench.errors import StenceBenchError
from stence_bench.protocol.pretrain import read_log
from stence_bench.protocol.runner import run_suite
from stence_bench.protocol.slurm import (NEVER_CLEARS, Fields, Job, Partition, _check_pending, _crash, _gpus,
                                         _minutes, job_plan, launch, over_limit, partition_of, refusal, stuck)
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan

#: test_launchers' suite, evaluated by linear probes on all labels only (each job takes seconds).
SUITE = LAUNCH_SUITE.replace('stages = ["linear_probe", "finetune"]', 'stages = ["linear_probe"]').replace(
    "fractions = [0.5, 1.0]", "fractions = [1.0]")
assert SUITE.count("linear_probe") == SUITE.count("1.0]") == 1
#: Jobs sized to a small CPU node: one CPU each, so two run side by side on two cores.
CLUSTER = "\n[cluster]\ngpus_per_job = 0\ncpus_per_task = 1\ntime_min = 10\n"

KILLER = """
import os
import subprocess
import time

from stence_bench import hookimpl

@hookimpl
def epoch_finished(cell, epoch, metrics):
    if cell.stage == "pretrain" and epoch == 1 and "SLURM_JOB_ID" in os.environ:
        subprocess.run(["scancel", os.environ["SLURM_JOB_ID"]], check=False)  # as a user would, from outside
        time.sleep(120)  # killed meanwhile
"""


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


@pytest.fixture(scope="module")
def slurm() -> Partition:
    """The cluster's default partition, once its node is up."""
    need(shutil.which("sbatch") is not None,
         "no SLURM here: sbatch is not on PATH (.ci/slurm sets up a one-node cluster, docs/cluster.md)")
    part = partition_of(None)
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False).stdout.split()
    need(part is not None and any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states),
         f"SLURM is installed but no node is up (sinfo: {' '.join(states) or 'no answer'}); run .ci/slurm")
    return part


def stence(*args: str | Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stence_bench", *map(str, args)], capture_output=True, text=True,
                          timeout=900, check=False, env=cli_env(pythonpath, OMP_NUM_THREADS="1"))


def active(ids) -> list[str]:
    """Those of ``ids`` still queued or running."""
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True,
                         check=False)
    return out.stdout.split()


def jobs_of(root: Path) -> dict[str, str]:
    return json.loads((root / "slurm" / "jobs.json").read_text())


def clean(proc: subprocess.CompletedProcess) -> None:
    """No traceback, no submitit warning (it polls with sacct, which fails where accounting is off)."""
    output = proc.stdout + proc.stderr
    for noise in ("Traceback", "Bypassing", "FailedJobError", "sacct"):
        assert noise not in output, output[-3000:]


def test_a_suite_runs_as_slurm_jobs_with_the_results_of_a_run_here_and_a_rerun_submits_nothing(
        slurm, registry, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE + CLUSTER)
    proc = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "slurm")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    clean(proc)
    cells = plan(parse_suite(SUITE), registry)
    jobs = jobs_of(tmp_path / "slurm")
    assert set(jobs) == {c.key for c in cells}
    assert sum(" jobs] " in line for line in proc.stderr.splitlines()) == len(set(jobs.values())) > 1
    for job_id in set(jobs.values()):  # every job ran under SLURM: its log folder is named by its sbatch id
        assert (tmp_path / "slurm" / "slurm" / "logs" / job_id / f"{job_id}_0_log.out").is_file()
    run_suite(parse_suite(SUITE), registry, tmp_path / "here", echo=lambda line: None, workers=1)
    assert_same(comparable(tmp_path / "here"), comparable(tmp_path / "slurm"))

    again = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "slurm")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(cells)} cells: {len(cells)} finished earlier, 0 to run as SLURM jobs" in again.stderr
    assert "submitted" not in again.stderr and jobs_of(tmp_path / "slurm") == jobs


def test_a_two_task_job_pretrains_under_ddp_as_one_process_does(slurm, registry, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(DDP_SUITE + "\n[cluster]\ngpus_per_job = 0\ntasks_per_job = 2\ncpus_per_task = 1\n")
    proc = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "slurm")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    clean(proc)
    parsed = parse_suite(DDP_SUITE)
    (pretrain,) = [c for c in plan(parsed, registry) if c.stage == "pretrain"]
    job_id = jobs_of(tmp_path / "slurm")[pretrain.key]
    logs = tmp_path / "slurm" / "slurm" / "logs" / job_id
    assert (logs / f"{job_id}_0_log.out").is_file() and (logs / f"{job_id}_1_log.out").is_file()  # two tasks
    result = json.loads((tmp_path / "slurm" / "results" / f"{pretrain.key}.json").read_text())
    assert result["pretrain"]["processes"] == 2 and "2 processes (gloo)" in result["device"]
    # the same losses as one process on the same global batches (a gathered loss, no augmentation)
    run_suite(parsed, registry, tmp_path / "one", cells=[pretrain], echo=lambda line: None, workers=1)
    one = read_log(tmp_path / "one" / "logs" / f"{pretrain.key}.jsonl")
    two = read_log(tmp_path / "slurm" / "logs" / f"{pretrain.key}.jsonl")
    assert len(one) == len(two) > 6
    for a, b in zip(one, two):
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4), (a, b)


def test_a_cancelled_jobs_cells_are_failed_with_its_id_and_log(slurm, registry, tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "slurm-killer", "slurm_killer", KILLER)
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("controls = true", "controls = false") + CLUSTER)
    proc = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "r", pythonpath=site)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-4000:]  # failed cells: exit status 1
    clean(proc)
    cells = plan(parse_suite(SUITE.replace("controls = true", "controls = false")), registry)
    (pretrain,) = [c for c in cells if c.stage == "pretrain"]
    job_id = jobs_of(tmp_path / "r")[pretrain.key]
    log = tmp_path / "r" / "slurm" / "logs" / job_id
    assert log.is_dir() and not active([job_id])
    assert (f"failed {pretrain.key}: job {job_id} ended without finishing: CANCELLED (log: {log})"
            in proc.stdout), proc.stdout
    for cell in cells:  # its evaluation cells ran (afterany) and say why they could not
        if cell.stage != "pretrain":
            assert f"failed {cell.key}: its pretraining cell {pretrain.key} failed" in proc.stdout


def test_a_gpu_request_on_a_cluster_without_gpus_is_one_line_naming_the_field(slurm, tmp_path):
    suite = tmp_path / "suite.toml"
    asked = slurm.cluster_gpus + 1
    if slurm.cluster_gpus:  # a cluster with GPUs: ask one more than any node has
        suite.write_text(SUITE + f"\n[cluster]\ncpus_per_task = 1\ngpus_per_job = {asked}\n")
        expected = (f"Error: [cluster] gpus_per_job = {asked}: a pretraining job asks {asked} GPUs and the nodes "
                    f"of partition {slurm.name} have {slurm.gpus}; set gpus_per_job = {slurm.gpus}")
    else:  # the default: one GPU
        suite.write_text(SUITE + "\n[cluster]\ncpus_per_task = 1\n")
        expected = ("Error: [cluster] gpus_per_job = 1 (the default): this cluster has no GPU gres; set "
                    "gpus_per_job = 0 (or --gpus-per-job 0) (sbatch: Invalid generic resource (gres) specification)")
    proc = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "r")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    clean(proc)
    assert proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr
    assert not (tmp_path / "r" / "slurm" / "jobs.json").exists()  # the first job was refused: none submitted


def test_a_job_that_would_pend_forever_is_cancelled_in_one_line_naming_the_request_and_the_limit(slurm, tmp_path):
    suite = tmp_path / "suite.toml"
    cpus = slurm.cpus + 1
    suite.write_text(SUITE + f"\n[cluster]\ngpus_per_job = 0\ncpus_per_task = {cpus}\n")
    proc = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "r")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    clean(proc)
    ids = sorted(set(jobs_of(tmp_path / "r").values()))
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"Error: \[cluster\] cpus_per_task = {cpus}: a job asks {cpus} CPUs and the nodes of partition "
        rf"{slurm.name} have {slurm.cpus}; set cpus_per_task = {slurm.cpus}\. So job \d+ \(pretrain-\w+\) would "
        rf"pend forever \(PartitionConfig\): cancelled it and the {len(ids) - 1} other jobs of this run", last), last
    assert not active(ids)  # nothing left in the queue
    again = stence("run", suite, "--launcher", "slurm", "--out", tmp_path / "r")
    assert "still queued or running" not in again.stderr  # the cancelled jobs do not block a corrected run


# --- the messages, without a cluster ------------------------------------------------------------------------


def fields(extra: str = "", overrides: dict | None = None) -> Fields:
    cluster = parse_suite(SUITE + "\n[cluster]\n" + extra).cluster
    if overrides:
        cluster = cluster.model_copy(update=overrides)
    return Fields(cluster, frozenset(overrides or ()))


@functools.cache
def cells() -> tuple:
    return tuple(plan(parse_suite(SUITE), Registry.load(environ=BUILTINS_ONLY)))


def job(cluster_fields: Fields, stage: str = "pretrain") -> Job:
    (first,) = [j for j in job_plan(list(cells()), cluster_fields.cluster) if j.name.startswith(stage)][:1]
    first.handle = SimpleNamespace(job_id="77", cancelled=False)
    first.handle.cancel = lambda check=True: setattr(first.handle, "cancelled", True)
    return first


NODE = Partition(name="cpu", cpus=16, mem_mb=64000, gpus=0, max_time_min=480, cluster_gpus=4)


def test_each_request_over_the_partitions_nodes_is_named_by_the_field_or_option_that_set_it():
    plain = fields("gpus_per_job = 2\n")
    assert over_limit(job(plain), plain, NODE) == ("[cluster] gpus_per_job = 2: the nodes of partition cpu have "
                                                   "no GPU gres; set gpus_per_job = 0 (or --gpus-per-job 0)")
    option = fields(overrides={"gpus_per_job": 8})
    gpu_node = Partition(name="gpu", cpus=64, mem_mb=512000, gpus=4, max_time_min=None, cluster_gpus=4)
    assert over_limit(job(option), option, gpu_node) == ("--gpus-per-job 8: a pretraining job asks 8 GPUs and the "
                                                         "nodes of partition gpu have 4; use --gpus-per-job 4")
    cpus = fields("gpus_per_job = 0\ncpus_per_task = 32\n")
    assert over_limit(job(cpus), cpus, NODE) == ("[cluster] cpus_per_task = 32: a job asks 32 CPUs and the nodes of "
                                                 "partition cpu have 16; set cpus_per_task = 16")
    tasks = fields("gpus_per_job = 0\ntasks_per_job = 4\ncpus_per_task = 8\n")
    assert over_limit(job(tasks), tasks, NODE) == (
        "[cluster] cpus_per_task = 8: a pretraining job asks 32 CPUs (4 tasks x 8) and the nodes of partition cpu "
        "have 16; set cpus_per_task = 4")
    assert over_limit(job(tasks, "eval"), tasks, NODE) is None  # an evaluation job: one task of 8 CPUs fits
    memory = fields("gpus_per_job = 0\ncpus_per_task = 1\nmem_gb = 100\n")
    assert over_limit(job(memory), memory, NODE) == ("[cluster] mem_gb = 100: a job asks 100 GB of memory and the "
                                                     "nodes of partition cpu have 64000 MB; set mem_gb = 62")
    time_ = fields("gpus_per_job = 0\ncpus_per_task = 1\n", overrides={"time_min": 600})
    assert over_limit(job(time_), time_, NODE) == ("--time-min 600: partition cpu allows 480 min per job; use "
                                                   "--time-min 480")
    fits = fields("gpus_per_job = 0\ncpus_per_task = 16\n")
    assert over_limit(job(fits), fits, NODE) is None and over_limit(job(fits), fits, None) is None


@pytest.fixture
def no_sinfo(monkeypatch):
    """The messages without what sinfo would add (the partition's sizes)."""
    monkeypatch.setattr("stence_bench.protocol.slurm.partition_of", lambda name: None)


def test_an_sbatch_refusal_names_the_option_of_the_suites_sbatch_table(no_sinfo):
    settings = fields('gpus_per_job = 0\ncpus_per_task = 1\nsbatch = {no_such = 1}\n')
    error = "sbatch: unrecognized option '--no-such=1'\nTry \"sbatch --help\" for more information"
    assert refusal(job(settings), settings, error) == (
        "[cluster] sbatch.no_such = 1: sbatch has no option --no-such; remove it from [cluster] sbatch (sbatch: "
        "unrecognized option '--no-such=1')")
    account = fields('gpus_per_job = 0\ncpus_per_task = 1\naccount = "nolab"\n')
    error = ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination "
             "specified")
    assert refusal(job(account), account, error, cancelled=2) == (
        "[cluster] account = \"nolab\": sbatch refused job " + job(account).name + " (sbatch: Invalid account or "
        "account/partition combination specified); cancelled the 2 jobs submitted before it")


def test_reasons_that_waiting_does_not_clear_cancel_the_launch_and_others_wait(no_sinfo):
    for reason in ("PartitionConfig", "PartitionTimeLimit", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob",
                   "AssocMaxWallDurationPerJobLimit", "QOSMinCpuNotSatisfied", "BadConstraints", "InvalidQOS"):
        assert NEVER_CLEARS.fullmatch(reason), reason
    for reason in ("Resources", "Priority", "Dependency", "QOSMaxCpuPerUserLimit", "QOSMaxJobsPerUserLimit",
                   "AssocGrpCpuLimit", "ReqNodeNotAvail", "BeginTime", "JobHeldUser"):
        assert not NEVER_CLEARS.fullmatch(reason), reason
    settings = fields("gpus_per_job = 0\ncpus_per_task = 1\n")
    first, other = job(settings), job(settings, "eval")
    pending: dict = {}
    _check_pending(first, {"77": ("PENDING", "Resources")}, pending, [first, other], settings, patience_s=0)
    unavailable = {"77": ("PENDING", "ReqNodeNotAvail,_UnavailableNodes:n1")}  # nodes may come back: patience
    _check_pending(first, unavailable, pending, [first, other], settings, patience_s=3600)
    assert not first.handle.cancelled
    with pytest.raises(StenceBenchError, match=r"would pend forever \(ReqNodeNotAvail,_UnavailableNodes:n1\)"):
        _check_pending(first, unavailable, pending, [first, other], settings, patience_s=0)
    assert first.handle.cancelled and other.handle.cancelled
    qos = fields("gpus_per_job = 0\ncpus_per_task = 4\n")
    line = stuck(job(qos), "QOSMaxCpuPerJobLimit", qos, cancelled=3)
    assert line.startswith("[cluster] cpus_per_task = 4: job 77 (pretrain-")
    assert line.endswith("would pend forever (QOSMaxCpuPerJobLimit): it asks 1 task(s) x 4 CPUs, 0 GPU(s), "
                         "default memory, 240 min, more than its QOS allows; cancelled it and the 2 other jobs of "
                         "this run")


def test_slurm_sizes_and_gres_are_read_as_sinfo_writes_them():
    assert [_minutes(t) for t in ("infinite", "30", "45:00", "4:00:00", "2-00:00:00", "1-12:30:00", "2-12",
                                  "1-06:30")] == [None, 30, 45, 240, 2880, 2190, 3600, 1830]
    assert [_gpus(g) for g in ("(null)", "gpu:4", "gpu:a100:8(S:0-1)", "gpu:a100:2,gpu:v100:2,shard:8")] == \
        [0, 4, 8, 4]


def test_a_job_on_gpus_runs_one_process_per_gpu_and_cpu_jobs_as_many_as_asked(registry, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE + "\n[cluster]\ngpus_per_job = 0\ntasks_per_job = 2\n")
    result = CliRunner().invoke(cli, ["run", str(suite), "--plan", "--launcher", "slurm"], obj=registry)
    assert result.exit_code == 0 and "2 pretraining (no GPU, 2 process(es) each)" in result.output, result.output
    with pytest.raises(StenceBenchError, match=r"\[cluster\] tasks_per_job = 4 with gpus_per_job = 2: a job on GPUs "
                                               r"runs one process per GPU"):
        job_plan(list(cells()), parse_suite(SUITE + "\n[cluster]\ngpus_per_job = 2\ntasks_per_job = 4\n").cluster)


FAKE_SQUEUE = """#!/usr/bin/env python3
import sys
from pathlib import Path

calls = Path(__file__).with_name("calls")
calls.write_text(calls.read_text() + "x" if calls.exists() else "x")
if len(calls.read_text()) == 1:
    sys.exit("squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
for job_id in sys.argv[sys.argv.index("-j") + 1].split(","):
    print(f"{job_id}|TIMEOUT|None")
"""


def test_jobs_are_followed_with_squeue_which_may_not_answer_for_a_while(registry, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(FAKE_SQUEUE)
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = FakeExecutor()
    executor.cluster = "slurm"  # as submitit's executor for SLURM: followed with squeue, not its handles
    suite = parse_suite(SUITE + CLUSTER)
    lines: list[str] = []
    outcomes = launch(suite, registry, tmp_path / "r", cells=plan(suite, registry), echo=lines.append,
                      executor=executor, poll_s=0)
    assert lines.count("squeue did not answer (squeue: error: slurm_load_jobs error: Unable to contact slurm "
                       "controller (connect failure)); looking again") == 1
    assert {o.status for o in outcomes} == {"failed"} and len((bin_dir / "calls").read_text()) == 2
    assert all(re.search(r"job 1\d\d ended without finishing: TIMEOUT \(log: .*/slurm/logs/1\d\d\)", o.error)
               for o in outcomes)


def test_a_job_that_raised_is_reported_by_its_error(tmp_path):
    def pickle_dump(value, path):
        path.write_bytes(pickle.dumps(value))

    paths = [SimpleNamespace(result_pickle=tmp_path / f"{task}.pkl") for task in range(2)]
    handle = SimpleNamespace(num_tasks=2, task=lambda task: SimpleNamespace(paths=paths[task]))
    assert _crash(handle, "CANCELLED") == "CANCELLED, no result from task 0"
    pickle_dump(("success", {}), paths[0].result_pickle)
    assert _crash(handle, "COMPLETED") == "COMPLETED, no result from task 1"
    pickle_dump(("error", "Traceback (most recent call last):\n  File x\nValueError: no such cohort\n"),
                paths[1].result_pickle)
    assert _crash(handle, "COMPLETED") == "ValueError: no such cohort"
    pickle_dump(("success", {}), paths[1].result_pickle)
    assert _crash(handle, "COMPLETED") is None
