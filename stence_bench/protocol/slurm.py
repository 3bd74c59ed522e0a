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

With ``cluster="local"`` (tests, a laptop) submitit's local executor runs the jobs as subprocesses; it knows no
dependencies, so an evaluation job is submitted once its pretraining job has ended.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.store import write_atomic
from ..errors import StenceBenchError
from ..registry import Registry
from ..suite import Cell, CellOutcome, Cluster, Suite
from . import results as res
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
    for cell in cells:
        if cell.stage == "pretrain":
            jobs.append(Job(name=f"pretrain-{cell.key}", cells=[cell], tasks=max(cluster.gpus_per_job, 1),
                            gpus=cluster.gpus_per_job))
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
    outcomes = run_suite(suite, registry, Path(root), cells=cells, finalise=False, echo=print)
    distributed.teardown()
    return {o.key: o.status for o in outcomes}


def make_executor(folder: Path, cluster: str) -> Any:
    try:
        import submitit
    except ImportError as exc:  # declared as a dependency; a broken environment
        raise StenceBenchError("--launcher slurm needs submitit: pip install submitit") from exc
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise StenceBenchError("--launcher slurm: sbatch is not on PATH (run this on a SLURM login node)")
    return submitit.AutoExecutor(folder=str(folder / "logs" / "%j"), cluster=cluster)


def launch(suite: Suite, registry: Registry, root: Path, *, cells: list[Cell], echo: Echo = print,
           cluster: str = "slurm", executor: Any = None, poll_s: float | None = None,
           device: str | None = None, reuse_stale: bool = False) -> list[CellOutcome]:
    """Submit the unfinished cells of ``cells`` as jobs, wait for them, and return every cell's outcome.
    ``device``: the jobs' device (``--device``; default: auto). ``reuse_stale``: as for :func:`run_suite`."""
    from .inputs import Inputs
    from .runner import finished_earlier, prepare, pretraining_refusal

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / JOB_DIR
    settings = suite.cluster
    _refuse_if_jobs_pending(folder, cluster)
    executor = make_executor(folder, cluster) if executor is None else executor
    res.write_suite(root, suite)
    hook = registry.plugins.manager.hook
    hook.run_started(suite=suite, cells=cells)
    ws = Workspace(suite, registry, root, echo=echo)
    outcomes = finished_earlier(cells, root, hook, Inputs.of_workspace(ws, registry), reuse_stale, echo)
    todo = [cell for cell in cells if cell.key not in outcomes]
    refusal = pretraining_refusal(todo, ws)
    if refusal:
        raise DataError(refusal)
    echo(f"{len(cells)} cells: {len(cells) - len(todo)} finished earlier, {len(todo)} to run as SLURM jobs")
    if todo:
        prepare(todo, ws, registry)  # the jobs only read the data
    jobs = job_plan(todo, settings)
    poll = poll_s if poll_s is not None else (10.0 if cluster == "slurm" else 0.5)
    by_pretrain = {job.cells[0].key: job for job in jobs if job.cells[0].stage == "pretrain"}
    ids: dict[str, str] = {}

    def submit(job: Job) -> None:
        dependency = None
        if job.after is not None and cluster == "slurm":
            dependency = f"afterany:{by_pretrain[job.after].handle.job_id}"
        executor.update_parameters(**job_parameters(settings, job, dependency))
        job.handle = executor.submit(run_job, suite, str(root), job.cells, device)
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
    try:
        while finished_jobs < len(jobs):
            for job in jobs:
                if job.handle is None or job.ended or not job.handle.done():
                    continue
                job.ended = True
                finished_jobs += 1
                echo(f"[{finished_jobs}/{len(jobs)} jobs] {job.name} (job {job.handle.job_id}): "
                     f"{_job_summary(job, root, outcomes, hook)}")
                if job.cells[0].stage == "pretrain":
                    for other in [w for w in waiting if w.after == job.cells[0].key]:
                        submit(other)
                        waiting.remove(other)
            if finished_jobs < len(jobs):
                time.sleep(poll)
    except KeyboardInterrupt:
        echo(f"interrupted: the jobs go on (squeue -u $USER); run the same command once they end to collect "
             f"their results ({folder / 'jobs.json'})")
        raise

    for result in res.paired_differences(res.load_results([root])):
        res.write_result(root, result)
    ordered = [outcomes[c.key] for c in cells]
    hook.run_finished(suite=suite, outcomes=ordered)
    return ordered


def _job_summary(job: Job, root: Path, outcomes: dict[str, CellOutcome], hook: Any) -> str:
    """Each cell of an ended job from its result file (a cell without one failed with the job)."""
    crash = None
    try:
        job.handle.result()
    except Exception as exc:  # noqa: BLE001 - the job itself died (time limit, memory, node): its cells failed
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        crash = f"job {job.handle.job_id} ended without finishing: {reason} (logs: {root / JOB_DIR / 'logs'})"
    counts = {"done": 0, "failed": 0}
    for cell in job.cells:
        path = res.result_path(root, cell.key)
        if path.is_file():
            result = res.read_result(path)
            outcome = CellOutcome(key=cell.key, status=result.status, wall_s=result.wall_s, result_path=str(path),
                                  error=result.error.splitlines()[0] if result.error else None)
        else:
            outcome = CellOutcome(key=cell.key, status="failed", error=crash or "no result written")
        outcomes[cell.key] = outcome
        counts["done" if outcome.status == "done" else "failed"] += 1
        hook.cell_finished(cell=cell, outcome=outcome)
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
