"""The SLURM launcher (``stence-bench run SUITE --launcher slurm``): every cell an idempotent job, via submitit.

- The submitting process materialises the data once (cohort, stores, encoder views), so jobs only read it.
- One job per pretraining cell, with ``cluster.gpus_per_job`` tasks (one DDP process per GPU, the torchrun
  environment exported by submitit); then the evaluation cells, grouped by the checkpoint they read
  (``cluster.cells_per_job`` per job) so a job embeds each dataset once, each job depending on its pretraining
  job (``afterany``: a failed pretraining is recorded by its cells, not left pending forever).
- A job runs :func:`run_job`: the runner over its cells, skipping finished ones; a failing cell is recorded in
  its result file as on one machine. This process waits, printing each job as it ends, then fills in the paired
  differences and returns the outcome of every cell.
- Job ids go to ``<run>/slurm/jobs.json``; run again while some are still queued or running and the launcher
  refuses (it would submit their cells twice). Job logs: ``<run>/slurm/logs/<job id>/``.
- Jobs are followed with ``squeue`` (never ``sacct``: accounting is off on many small clusters). Requests that
  cannot run fail fast, in one line naming the ``[cluster]`` field (or option) behind them: an ``sbatch``
  refusal, and a job pending for a reason that waiting does not clear (its request exceeds what the partition,
  QOS or association allows), which is cancelled with the other jobs of the launch.

With ``cluster="local"`` (tests, a laptop) submitit's local executor runs the jobs as subprocesses; it knows no
dependencies, so an evaluation job is submitted once its pretraining job has ended.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cells import Cell, CellOutcome
from ..errors import StenceBenchError
from ..extras import require
from ..files import write_atomic
from ..registry import Registry
from ..suite import Cluster, Suite, with_weight_hashes
from ..trackers import with_trackers
from .. import results as res
from .data import DataError, Workspace

Echo = Callable[[str], None]
JOB_DIR = "slurm"


@dataclass
class Job:
    """One job to submit: its cells, the pretraining cell it waits for, its tasks and GPUs."""

    name: str
    cells: list[Cell]
    tasks: int = 1
    gpus: int = 0
    after: str | None = None  # key of the pretraining cell whose job must end first
    handle: Any = field(default=None, repr=False)  # the submitit job, once submitted
    ended: bool = False


def job_plan(cells: list[Cell], cluster: Cluster) -> list[Job]:
    """The jobs of ``cells`` (unfinished cells, plan order): each pretraining alone on ``gpus_per_job`` GPUs,
    then evaluation cells grouped by the checkpoint they read, ``cells_per_job`` at most per job."""
    jobs: list[Job] = []
    pretraining = {c.key for c in cells if c.stage == "pretrain"}
    tasks = pretraining_tasks(cluster)
    for cell in cells:
        if cell.stage == "pretrain":
            jobs.append(Job(name=f"pretrain-{cell.key}", cells=[cell], tasks=tasks, gpus=cluster.gpus_per_job))
    groups: dict[str | None, list[Cell]] = {}
    for cell in cells:
        if cell.stage != "pretrain":
            source = cell.pretrain_cell()
            groups.setdefault(source.key if source else None, []).append(cell)
    for source_key, group in groups.items():
        for start in range(0, len(group), cluster.cells_per_job):
            part = group[start : start + cluster.cells_per_job]
            name = f"eval-{source_key or 'init'}-{start // cluster.cells_per_job}"
            jobs.append(Job(name=name, cells=part, gpus=min(cluster.gpus_per_job, 1),
                            after=source_key if source_key in pretraining else None))
    return jobs


def pretraining_tasks(cluster: Cluster) -> int:
    """The processes of a pretraining job: one per GPU, or ``tasks_per_job`` CPU processes without GPUs."""
    if cluster.tasks_per_job is None:
        return max(cluster.gpus_per_job, 1)
    if cluster.gpus_per_job and cluster.tasks_per_job != cluster.gpus_per_job:
        raise StenceBenchError(f"[cluster] tasks_per_job = {cluster.tasks_per_job} with gpus_per_job = "
                               f"{cluster.gpus_per_job}: a job on GPUs runs one process per GPU; leave tasks_per_job "
                               "out (it is for CPU jobs, gpus_per_job = 0)")
    return cluster.tasks_per_job


def job_parameters(cluster: Cluster, job: Job, dependency: str | None = None) -> dict[str, Any]:
    """The submitit ``AutoExecutor`` parameters of ``job`` (``slurm_`` ones are ignored by other clusters)."""
    params: dict[str, Any] = {"name": f"stence-{job.name}", "timeout_min": cluster.time_min,
                              "tasks_per_node": job.tasks, "gpus_per_node": job.gpus, "nodes": 1,
                              "cpus_per_task": cluster.cpus_per_task}
    if cluster.mem_gb is not None:
        params["mem_gb"] = cluster.mem_gb
    for name in ("partition", "account", "qos"):
        if getattr(cluster, name):
            params[f"slurm_{name}"] = getattr(cluster, name)
    if cluster.sbatch:
        params["slurm_additional_parameters"] = dict(cluster.sbatch)
    if dependency:
        params["slurm_dependency"] = dependency
    return params


def run_job(suite: Suite, root: str, cells: list[Cell], device: str | None = None) -> dict[str, str]:
    """What a job runs (in each of its tasks): the runner over ``cells``, on ``device`` (default: auto). With
    several tasks (a pretraining on several GPUs) the tasks join one process group, as under torchrun. Returns
    each cell's status (rank 0)."""
    from . import distributed
    from .runner import run_suite

    try:
        import submitit

        environment = submitit.JobEnvironment()
        if environment.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except RuntimeError:  # not inside a submitit job (run by hand): one process
        pass
    registry = Registry.load()
    environ = dict(os.environ) if device is None else {**os.environ, distributed.ENV_DEVICE: device}
    distributed.setup(environ)
    outcomes = run_suite(suite, registry, Path(root), cells=cells, echo=print,
                         trackers=False)  # the submitting process logs the cells to the trackers
    distributed.teardown()
    return {o.key: o.status for o in outcomes}


def make_executor(folder: Path, cluster: str) -> Any:
    submitit = require("submitit", "--launcher slurm")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise StenceBenchError("--launcher slurm: sbatch is not on PATH (run this on a SLURM login node)")
    return submitit.AutoExecutor(folder=str(folder / "logs" / "%j"), cluster=cluster)


@with_trackers(epochs_elsewhere=True)  # the suite's [trackers] observe the jobs' cells from here (the jobs: none)
def launch(suite: Suite, registry: Registry, root: Path, *, cells: list[Cell], echo: Echo = print,
           cluster: str = "slurm", executor: Any = None, poll_s: float | None = None,
           device: str | None = None, overrides: Collection[str] = (),
           patience_s: float = 1800.0, reuse_stale: bool = False) -> list[CellOutcome]:
    """Submit the unfinished cells of ``cells`` as jobs, wait for them, and return every cell's outcome.
    ``device``: the jobs' device (``--device``; default: auto). ``overrides``: the ``[cluster]`` fields the
    command line set (an error names the option rather than the suite field). ``poll_s``: seconds between looks
    at the queue (default on SLURM: 1 s, growing to 10 s). ``patience_s``: how long a job may pend for
    ``ReqNodeNotAvail`` (nodes down, drained or reserved: they may come back) before it is cancelled.
    ``reuse_stale``: as for :func:`run_suite`."""
    from .inputs import Inputs
    from .runner import finished_earlier, prepare, pretraining_refusal

    require("submitit", "--launcher slurm")  # the extra slurm: said before anything is written
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / JOB_DIR
    settings = suite.cluster
    fields = Fields(settings, frozenset(overrides))
    _refuse_if_jobs_pending(folder, cluster)
    executor = make_executor(folder, cluster) if executor is None else executor
    # a real SLURM executor is followed with squeue; submitit's own polling (sacct) warns at every look where
    # accounting is off and never sees a job end that wrote no result
    queue = SlurmQueue() if getattr(executor, "cluster", None) == "slurm" else None
    from submitit.core.utils import FailedJobError
    res.write_suite(root, with_weight_hashes(suite, registry))
    hook = registry.plugins.manager.hook
    hook.run_started(suite=suite, cells=cells)
    ws = Workspace(suite, registry, root, echo=echo)
    outcomes = finished_earlier(cells, root, hook, Inputs.of_workspace(ws, registry), reuse_stale, echo)
    todo = [cell for cell in cells if cell.key not in outcomes]
    overlap = pretraining_refusal(todo, ws)
    if overlap:
        raise DataError(overlap)
    echo(f"{len(cells)} cells: {len(cells) - len(todo)} finished earlier, {len(todo)} to run as SLURM jobs")
    jobs = job_plan(todo, settings)
    if todo:
        prepare(todo, ws, registry)  # the jobs only read the data
    by_pretrain = {job.cells[0].key: job for job in jobs if job.cells[0].stage == "pretrain"}
    ids: dict[str, str] = {}

    def submit(job: Job) -> None:
        dependency = None
        if job.after is not None and cluster == "slurm":
            dependency = f"afterany:{by_pretrain[job.after].handle.job_id}"
        executor.update_parameters(**job_parameters(settings, job, dependency))
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal, then raises it
                job.handle = executor.submit(run_job, suite, str(root), job.cells, device)
        except FailedJobError as exc:  # sbatch refused the job
            cancelled = _cancel(jobs)
            raise StenceBenchError(refusal(job, fields, str(exc), cancelled)) from None
        ids.update({cell.key: str(job.handle.job_id) for cell in job.cells})
        _write_ids(folder, ids)

    waiting = [job for job in jobs if job.after is not None and cluster != "slurm"]
    for job in jobs:
        if job not in waiting:
            submit(job)
    if jobs:
        later = f", {len(waiting)} more as their pretraining ends" if waiting else ""
        echo(f"submitted {len(jobs) - len(waiting)} jobs ({cluster}){later}; logs in {folder / 'logs'}")

    finished_jobs = 0
    started = time.monotonic()
    pending: dict[str, tuple[str, float]] = {}  # job id -> (reason it pends for, since when)
    quiet = False  # said that squeue does not answer
    looks = 0
    try:
        while finished_jobs < len(jobs):
            if looks:
                default = min(10.0, 1.0 + (time.monotonic() - started) / 6) if queue is not None else 0.5
                time.sleep(poll_s if poll_s is not None else default)
            looks += 1
            states = {} if queue is None else queue.states(
                [j.handle.job_id for j in jobs if j.handle is not None and not j.ended])
            if states is None:  # squeue did not answer (a busy or restarting controller): look again later
                if not quiet:
                    echo(f"squeue did not answer ({queue.error if queue else ''}); looking again")
                quiet = True
                continue
            quiet = False
            for job in jobs:
                if job.handle is None or job.ended:
                    continue
                state = _ended(job, queue, states)
                if state is None:
                    if queue is not None:
                        _check_pending(job, states, pending, jobs, fields, patience_s)
                    continue
                job.ended = True
                finished_jobs += 1
                crash = _crash(job.handle, state)
                if crash is not None:
                    crash = (f"job {job.handle.job_id} ended without finishing: {crash} "
                             f"(log: {folder / 'logs' / str(job.handle.job_id)})")
                echo(f"[{finished_jobs}/{len(jobs)} jobs] {job.name} (job {job.handle.job_id}): "
                     f"{_job_summary(job, root, outcomes, hook, crash)}")
                if job.cells[0].stage == "pretrain":
                    for other in [w for w in waiting if w.after == job.cells[0].key]:
                        submit(other)
                        waiting.remove(other)
    except KeyboardInterrupt:
        echo(f"interrupted: the jobs go on (squeue -u $USER); run the same command once they end to collect "
             f"their results ({folder / 'jobs.json'})")
        raise

    ordered = [outcomes[c.key] for c in cells]
    hook.run_finished(suite=suite, outcomes=ordered)
    return ordered


#: The states of a job that has ended (``squeue -t all`` shows them until the controller forgets the job).
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "TIMEOUT"})
#: Reasons a job pends for that waiting does not clear: its own request exceeds what its partition, QOS or
#: association allows, or names what does not exist.
NEVER_CLEARS = re.compile(r"PartitionConfig|PartitionNodeLimit|PartitionTimeLimit|BadConstraints|InvalidAccount"
                          r"|InvalidQOS|DependencyNeverSatisfied|(QOS|Assoc)Max\w*PerJob\w*|QOSMin\w+")
#: Reasons that usually do not clear either, but may (nodes back from a drain or a maintenance reservation):
#: a job pending for one of them is cancelled after ``patience_s``.
MAY_NEVER_CLEAR = ("ReqNodeNotAvail",)


class SlurmQueue:
    """The state of submitted jobs, from ``squeue`` (``sacct`` needs accounting, which small clusters leave off)."""

    error = ""  # why squeue did not answer, last time it did not

    def states(self, ids: list[str]) -> dict[str, tuple[str, str]] | None:
        """Job id -> (state, reason) for the jobs the controller still knows (a job it forgot has ended long
        ago); None when squeue failed (a busy or restarting controller)."""
        if not ids:
            return {}
        try:
            out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"],
                                 capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = str(exc)
            return None
        if out.returncode != 0:
            if "Invalid job id" in out.stderr:  # it forgot them all
                return {}
            self.error = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
            return None
        states = {}
        for line in out.stdout.splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) == 3:
                states[parts[0]] = (parts[1], parts[2])
        return states


def _ended(job: Job, queue: SlurmQueue | None, states: dict[str, tuple[str, str]]) -> str | None:
    """The final state of ``job`` once it has ended ("" when unknown), None while it is queued or running."""
    if queue is None:
        return str(job.handle.state or "") if job.handle.done() else None
    state = states.get(str(job.handle.job_id), ("", ""))[0]
    if not state or state in ENDED:
        return state
    return None


def _check_pending(job: Job, states: dict[str, tuple[str, str]], pending: dict[str, tuple[str, float]],
                   jobs: list[Job], fields: Fields, patience_s: float) -> None:
    """Cancel the launch's jobs, in one line, when ``job`` pends for a reason that waiting does not clear."""
    job_id = str(job.handle.job_id)
    state, reason = states.get(job_id, ("", ""))
    head = reason.split(",")[0]
    if state != "PENDING" or not head:
        pending.pop(job_id, None)
        return
    if pending.get(job_id, ("", 0.0))[0] != head:
        pending[job_id] = (head, time.monotonic())
    if NEVER_CLEARS.fullmatch(head) or (head in MAY_NEVER_CLEAR
                                        and time.monotonic() - pending[job_id][1] >= patience_s):
        cancelled = _cancel(jobs)
        raise StenceBenchError(stuck(job, reason, fields, cancelled))


def _cancel(jobs: list[Job]) -> int:
    """Cancel the submitted jobs that have not ended; how many."""
    active = [job for job in jobs if job.handle is not None and not job.ended]
    for job in active:
        job.handle.cancel(check=False)
    return len(active)


def _crash(handle: Any, state: str) -> str | None:
    """Why a job ended without its result: the exception its function raised, or its final state; None when
    every task returned."""
    from submitit.core.utils import pickle_load

    for task in range(handle.num_tasks):
        path = handle.task(task).paths.result_pickle
        if not path.is_file():
            return f"{state or 'ended'}, no result from task {task}" if handle.num_tasks > 1 else (state or "ended")
        outcome, value = pickle_load(path)
        if outcome == "error":
            lines = [line for line in str(value).splitlines() if line.strip()]
            return lines[-1].strip() if lines else "an error"
    return None


def _job_summary(job: Job, root: Path, outcomes: dict[str, CellOutcome], hook: Any, crash: str | None) -> str:
    """Each cell of an ended job from its result file (a cell without one failed with the job: ``crash``)."""
    counts = {"done": 0, "failed": 0}
    for cell in job.cells:
        path = res.result_path(root, cell.key)
        result = None
        if path.is_file():
            result = res.read_result(path)
            outcome = CellOutcome(key=cell.key, status=result.status, wall_s=result.wall_s, result_path=str(path),
                                  error=result.error.splitlines()[0] if result.error else None)
        else:
            outcome = CellOutcome(key=cell.key, status="failed", error=crash or "no result written")
        outcomes[cell.key] = outcome
        counts["done" if outcome.status == "done" else "failed"] += 1
        hook.cell_finished(cell=cell, outcome=outcome, result=result)
    text = f"{counts['done']} done, {counts['failed']} failed"
    return f"{text}; {crash}" if crash else text


def _write_ids(folder: Path, ids: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "jobs.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    known.update(ids)
    write_atomic(path, json.dumps(known, indent=1, sort_keys=True))


def _refuse_if_jobs_pending(folder: Path, cluster: str) -> None:
    """A second launch while this run folder's jobs are still queued or running would submit their cells twice."""
    path = folder / "jobs.json"
    if cluster != "slurm" or not path.is_file() or shutil.which("squeue") is None:
        return
    ids = sorted(set(json.loads(path.read_text()).values()))
    if not ids:
        return
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True,
                         timeout=60, check=False)
    active = sorted({line.strip().split("_")[0] for line in out.stdout.splitlines() if line.strip()})
    if active:
        raise StenceBenchError(f"{path}: jobs {', '.join(active[:5])}{' ...' if len(active) > 5 else ''} of this run "
                               "are still queued or running; wait for them (squeue) or cancel them (scancel), then "
                               "run again")


#: The [cluster] fields that the command line overrides, and their options.
CLI_OPTIONS = {"partition": "--partition", "time_min": "--time-min", "gpus_per_job": "--gpus-per-job",
               "cells_per_job": "--cells-per-job"}


@dataclass(frozen=True)
class Fields:
    """Where each job setting came from, for errors: the suite's ``[cluster]``, its default, or an option."""

    cluster: Cluster
    overrides: frozenset[str] = frozenset()

    def name(self, field: str, key: str | None = None) -> str:
        """``[cluster] gpus_per_job = 1``, ``... (the default)``, ``--gpus-per-job 1`` or ``[cluster] sbatch.X = Y``."""
        if key is not None:
            return f"[cluster] sbatch.{key} = {json.dumps(self.cluster.sbatch.get(key))}"
        value = getattr(self.cluster, field)
        if field in self.overrides:
            return f"{CLI_OPTIONS[field]} {value}"
        if value is None:
            return f"[cluster] {field} (not set)"
        default = "" if field in self.cluster.model_fields_set else " (the default)"
        return f"[cluster] {field} = {json.dumps(value)}{default}"

    def fix(self, field: str, value: Any) -> str:
        """How to set ``field`` to ``value``: in the suite, or with the option that set it."""
        option = CLI_OPTIONS.get(field)
        if field in self.overrides:
            return f"use {option} {value}"
        return f"set {field} = {json.dumps(value)}" + (f" (or {option} {value})" if option else "")


@dataclass(frozen=True)
class Partition:
    """What the nodes of a partition offer (the most of any node), from ``sinfo``."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    max_time_min: int | None  # None: no limit
    cluster_gpus: int  # the most GPUs of any node of the cluster


def partition_of(name: str | None) -> Partition | None:
    """The partition ``name`` (None: the default one) as ``sinfo`` sees it; None when sinfo cannot tell."""
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%l"], capture_output=True, text=True,
                             timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.strip().split("|") for line in out.stdout.splitlines() if line.count("|") == 4]
    if out.returncode != 0 or not rows:
        return None
    mine = [r for r in rows if (r[0].rstrip("*") == name if name else r[0].endswith("*"))]
    if not mine:
        return None
    return Partition(name=mine[0][0].rstrip("*"), cpus=max(_int(r[1]) for r in mine),
                     mem_mb=max(_int(r[2]) for r in mine), gpus=max(_gpus(r[3]) for r in mine),
                     max_time_min=_minutes(mine[0][4]), cluster_gpus=max(_gpus(r[3]) for r in rows))


def _int(text: str) -> int:
    digits = re.match(r"\d+", text.strip())
    return int(digits.group()) if digits else 0


def _gpus(gres: str) -> int:
    """GPUs of a node from its gres (``gpu:4``, ``gpu:a100:4(S:0-1),shard:8``, ``(null)``)."""
    count = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2:
            count += _int(parts[-1]) if parts[-1].strip().isdigit() else 1
    return count


def _minutes(limit: str) -> int | None:
    """A SLURM time limit (``infinite``, ``30:00``, ``4:00:00``, ``2-00:00:00``) in minutes."""
    if not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", limit.strip()):
        return None
    days, _, clock = limit.strip().rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days or len(parts) == 3:  # [D-]HH[:MM[:SS]]
        hours, minutes = parts[0], parts[1] if len(parts) > 1 else 0
    else:  # MM[:SS]
        hours, minutes = 0, parts[0]
    return int(days or 0) * 1440 + hours * 60 + minutes


def over_limit(job: Job, fields: Fields, part: Partition | None) -> str | None:
    """What of ``job``'s request no node of its partition can give, naming the field and the fix; None when
    every request fits (or sinfo cannot tell)."""
    if part is None:
        return None
    cluster = fields.cluster
    nodes = f"the nodes of partition {part.name}"
    if job.gpus > part.gpus:
        where = ("this cluster has no GPU gres" if part.cluster_gpus == 0 else f"{nodes} have no GPU gres"
                 if part.gpus == 0 else f"a pretraining job asks {job.gpus} GPUs and {nodes} have {part.gpus}")
        return f"{fields.name('gpus_per_job')}: {where}; {fields.fix('gpus_per_job', part.gpus)}"
    cpus = job.tasks * cluster.cpus_per_task
    if cpus > part.cpus:
        asked = f"a job asks {cpus} CPUs" if job.tasks == 1 else \
            f"a pretraining job asks {cpus} CPUs ({job.tasks} tasks x {cluster.cpus_per_task})"
        if cluster.cpus_per_task > part.cpus // job.tasks and part.cpus // job.tasks >= 1:
            return (f"{fields.name('cpus_per_task')}: {asked} and {nodes} have {part.cpus}; "
                    f"{fields.fix('cpus_per_task', part.cpus // job.tasks)}")
        field = "tasks_per_job" if cluster.tasks_per_job is not None else "gpus_per_job"
        return (f"{fields.name(field)}: {asked} and {nodes} have {part.cpus}; "
                f"{fields.fix(field, max(1, part.cpus // cluster.cpus_per_task))}")
    if cluster.mem_gb is not None and cluster.mem_gb * 1024 > part.mem_mb:
        return (f"{fields.name('mem_gb')}: a job asks {cluster.mem_gb} GB of memory and {nodes} have "
                f"{part.mem_mb} MB; " + (fields.fix("mem_gb", part.mem_mb // 1024) if part.mem_mb >= 1024
                                         else "leave mem_gb out"))
    if part.max_time_min is not None and cluster.time_min > part.max_time_min:
        return (f"{fields.name('time_min')}: partition {part.name} allows {part.max_time_min} min per job; "
                f"{fields.fix('time_min', part.max_time_min)}")
    return None


#: Which field an sbatch refusal or a pending reason is about, by the words in it (first match wins).
_ABOUT = (("gres", "gpus_per_job"), ("gpu", "gpus_per_job"), ("memory", "mem_gb"), ("mem", "mem_gb"),
          ("partition", "partition"), ("account", "account"), ("assoc", "account"), ("qos", "qos"),
          ("time", "time_min"), ("wall", "time_min"), ("cpu", "cpus_per_task"))


def refusal(job: Job, fields: Fields, error: str, cancelled: int = 0) -> str:
    """One line for an sbatch refusal of ``job``: the field (or option) behind it, what is wrong, the fix."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if "error:" in line or "unrecognized" in line),
                lines[-1] if lines else "no reason given")
    said = re.sub(r"^(sbatch: )?(error: )?(Batch job submission failed: )?", "", said)
    also = f"; cancelled the {cancelled} jobs submitted before it" if cancelled else ""
    option = re.search(r"(?:unrecognized|invalid) option '?--([\w-]+)", said)
    key = next((k for k in fields.cluster.sbatch if option and k.replace("_", "-") == option.group(1)), None)
    if key is not None and option is not None:
        return (f"{fields.name('', key)}: sbatch has no option --{option.group(1)}; remove it from "
                f"[cluster] sbatch (sbatch: {said}){also}")
    low = said.lower()
    if "feature" in low or "constraint" in low:
        key = next((k for k in ("constraint", "C") if k in fields.cluster.sbatch), None)
        if key is not None:
            return f"{fields.name('', key)}: no node has this feature (sbatch: {said}){also}"
    problem = over_limit(job, fields, partition_of(fields.cluster.partition))
    if problem:
        return f"{problem} (sbatch: {said}){also}"
    field = next((f for word, f in _ABOUT
                  if word in low and (f in fields.overrides or getattr(fields.cluster, f) is not None)), None)
    if field is not None:
        return f"{fields.name(field)}: sbatch refused job {job.name} (sbatch: {said}){also}"
    return f"sbatch refused job {job.name}: {said}{also}"


def stuck(job: Job, reason: str, fields: Fields, cancelled: int) -> str:
    """One line for a job that would pend forever for ``reason``: the request, the limit, the fix."""
    head = reason.split(",")[0]
    which = f"job {job.handle.job_id} ({job.name}) would pend forever ({reason})"
    also = f"cancelled it{f' and the {cancelled - 1} other jobs of this run' if cancelled > 1 else ''}"
    problem = over_limit(job, fields, partition_of(fields.cluster.partition))
    if problem:
        return f"{problem}. So {which}: {also}"
    limit = ("its QOS" if head.startswith("QOS") else "its association (account)" if head.startswith("Assoc")
             else "its partition" if head.startswith("Partition") else "the cluster")
    field = next((f for word, f in _ABOUT if word in re.sub(r"^(QOS|Assoc|Partition)", "", head).lower()), None)
    asked = (f"{job.tasks} task(s) x {fields.cluster.cpus_per_task} CPUs, {job.gpus} GPU(s), "
             f"{f'{fields.cluster.mem_gb} GB' if fields.cluster.mem_gb else 'default memory'}, "
             f"{fields.cluster.time_min} min")
    named = f"{fields.name(field)}: " if field else ""
    return f"{named}{which}: it asks {asked}, more than {limit} allows; {also}"
