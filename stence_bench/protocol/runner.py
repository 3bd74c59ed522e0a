"""The runner: every cell of a suite, once, in order (pretraining first), resumable and failure-isolated.

- A cell whose result file says ``done`` is never recomputed (its key is the hash of its resolved config).
- A cell that raises is recorded as ``failed`` with its error; the run goes on; cells that need a failed
  pretraining are failed with that reason; the exit status is non-zero at the end, with a summary.
- Progress: one line per cell with its position, wall time and the ETA of the stage.
- ``workers > 1`` (the ``local`` launcher) runs the cells in that many forked processes (one thread each):
  every pretraining first, then the evaluation cells, after the data is ready in the parent; results are the
  same files as a sequential run.
- Under torchrun (:mod:`stence_bench.protocol.distributed`) every rank goes through the same cells: pretraining
  and finetuning on all ranks (DDP), linear probes and zero-shot on rank 0; rank 0 alone prints and writes.
- Observers (``run_started``, ``cell_finished``, ``run_finished``) are called for logger plugins, in the parent
  (rank 0).
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from ..cells import Cell, CellOutcome
from ..errors import StenceBenchError
from ..processes import WorkerPool
from ..registry import Registry
from ..suite import Suite, plan, with_weight_hashes
from ..trackers import with_trackers
from . import distributed
from .. import results as res
from .results import git_commit, versions
from .data import DataError, HeldOutOverlapError, Workspace
from .inputs import Inputs
from .inputs import changes as _changes

Echo = Callable[[str], None]
log = logging.getLogger(__name__)

#: What a forked worker needs, set in the parent just before the pool forks.
_WORKER_STATE: dict[str, Any] = {}
#: Stages that run on every rank under torchrun (DDP); the others run on rank 0.
DISTRIBUTED_STAGES = ("pretrain", "finetune")


def execute(cell: Cell, ws: Workspace, registry: Registry, root: Path, failed_pretrain: dict[str, str],
            echo: Echo | None = None) -> tuple[dict[str, Any], str | None, float, str]:
    """Run one cell: ``(payload for its result, error or None, wall seconds, start time)``. Never raises but
    for KeyboardInterrupt. ``echo`` gets a long pretraining's progress."""
    from .evaluate import finetune, linear_probe, zero_shot
    from .pretrain import pretrain

    started, stamp = time.perf_counter(), res.now()
    payload: dict[str, Any] = {}
    error: str | None = None
    try:
        source = cell.pretrain_cell()
        if source is not None and source.key in failed_pretrain:
            raise StenceBenchError(f"its pretraining cell {source.key} failed: {failed_pretrain[source.key]}")
        if cell.stage == "pretrain":
            payload = {"pretrain": pretrain(cell, ws, registry, root, progress=echo)}
        elif cell.stage == "linear_probe":
            payload = linear_probe(cell, ws, registry, root)
        elif cell.stage == "finetune":
            payload = finetune(cell, ws, registry, root)
        elif cell.stage == "zero_shot":
            payload = zero_shot(cell, ws, registry, root)
        else:
            raise StenceBenchError(f"unknown stage {cell.stage!r}")
    except KeyboardInterrupt:
        raise
    except StenceBenchError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the others; its traceback is kept
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    payload.pop("wall_s", None)
    return payload, error, time.perf_counter() - started, stamp


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _worker_execute(cell: Cell) -> tuple[dict[str, Any], str | None, float, str]:
    state = _WORKER_STATE
    return execute(cell, state["ws"], state["registry"], state["root"], state["failed_pretrain"], _worker_echo)


def _worker_echo(line: str) -> None:
    """A worker's progress lines (a resumed or long pretraining), through the parent's echo, written at once."""
    _WORKER_STATE["echo"](line)
    sys.stdout.flush()
    sys.stderr.flush()


@with_trackers  # the suite's [trackers] observe the run (rank 0); trackers=False leaves them off
def run_suite(suite: Suite, registry: Registry, root: Path, *, echo: Echo = print,
              cells: list[Cell] | None = None, workers: int = 1,
              reuse_stale: bool = False) -> list[CellOutcome]:
    """Run ``suite`` into the run folder ``root``; returns one outcome per cell, in plan order. A result file is
    written once, when its cell ends (what is derived from several, such as the paired difference to the control,
    is derived where it is shown). ``reuse_stale``: keep finished cells whose inputs changed (marked stale) instead
    of running them again."""
    root = Path(root)
    ctx = distributed.current()
    if ctx.distributed and workers > 1:
        raise StenceBenchError("--workers runs cells in parallel processes; under torchrun the processes share "
                               "each cell instead: use one or the other")
    if not ctx.main:
        echo = _quiet
    cells = plan(suite, registry) if cells is None else cells
    hook = registry.plugins.manager.hook
    if ctx.main:
        root.mkdir(parents=True, exist_ok=True)
        res.write_suite(root, with_weight_hashes(suite, registry))  # rows are named by the weights' hashes
        hook.run_started(suite=suite, cells=cells)
    ws = Workspace(suite, registry, root, echo=echo)
    common = {"versions": versions(registry), "git_commit": git_commit(), "device": ctx.describe()}
    outcomes: dict[str, CellOutcome] = {}
    failed_pretrain: dict[str, str] = {}
    position = {cell.key: i for i, cell in enumerate(cells, start=1)}

    todo_keys: set[str] | None = None
    refusal: str | None = None
    inputs = Inputs.of_workspace(ws, registry)
    if ctx.main:
        outcomes.update(finished_earlier(cells, root, hook, inputs, reuse_stale, echo))
        todo_keys = {cell.key for cell in cells if cell.key not in outcomes}
        refusal = pretraining_refusal([c for c in cells if c.key in todo_keys], ws)
    refusal = ctx.broadcast(refusal)
    if refusal:
        raise DataError(refusal)
    todo_keys = ctx.broadcast(todo_keys)  # every rank runs exactly the cells rank 0 found unfinished
    todo = [cell for cell in cells if cell.key in todo_keys]
    for cell in todo:  # a pretraining outside these cells (a SLURM job runs a part) that failed or never ran
        source = cell.pretrain_cell()
        if source is not None and source.key not in todo_keys and source.key not in failed_pretrain:
            reason = _pretraining_problem(root, source.key)
            if reason:
                failed_pretrain[source.key] = reason
    echo(f"{len(cells)} cells: {len(cells) - len(todo)} finished earlier, {len(todo)} to run; results in "
         f"{root / res.RESULT_DIR}")
    if ctx.main:
        for line in resume_lines(cells, todo, root, suite.protocol.pretrain.epochs):
            echo(line)
    if ctx.distributed:  # rank 0 writes the data (cohort, stores, views) once; the others then read it
        if ctx.main:
            prepare(todo, ws, registry)
        ctx.barrier()
        if not ctx.main:
            prepare(todo, ws, registry)

    def record(cell: Cell, payload: dict[str, Any], error: str | None, wall: float, stamp: str, eta: str) -> None:
        task_dataset = registry.tasks.get(cell.task).dataset if cell.task else suite.data.pretrain
        dataset = ws.loaded(task_dataset)
        try:
            cell_inputs = inputs.of(cell) if not error else {}
        except Exception:  # noqa: BLE001 - a result without inputs is stale on the next run: it runs again
            cell_inputs = {}
        predictions = payload.pop("predictions", None)
        if predictions is not None and not error:
            payload["predictions"] = res.write_predictions(root, cell.key, predictions).name
        result = res.CellResult(key=cell.key, cell=cell, status="failed" if error else "done", started=stamp,
                                finished=res.now(), wall_s=round(wall, 3), error=error, inputs=cell_inputs,
                                dataset_fingerprint=dataset.fingerprint if dataset else None, **common, **payload)
        path = res.write_result(root, result)
        if error and cell.stage == "pretrain":
            failed_pretrain[cell.key] = error.splitlines()[0]
        summary = (f"{result.metric} {result.value:.3f}" if result.value is not None
                   else ("pretrained" if not error else "FAILED: " + error.splitlines()[0]))
        echo(f"[{position[cell.key]}/{len(cells)}] {cell.label}: {summary} ({wall:.1f}s, ETA {eta})")
        outcome = CellOutcome(key=cell.key, status="failed" if error else "done", wall_s=wall,
                              result_path=str(path), error=error.splitlines()[0] if error else None)
        outcomes[cell.key] = outcome
        hook.cell_finished(cell=cell, outcome=outcome, result=result)

    stages = [[c for c in todo if c.stage == "pretrain"], [c for c in todo if c.stage != "pretrain"]]
    try:
        for group in stages:
            if not group:
                continue
            started = time.perf_counter()
            if workers > 1 and len(group) > 1:
                _run_parallel(group, ws, registry, root, failed_pretrain, workers, record, started, echo)
                continue
            for i, cell in enumerate(group, start=1):
                log.debug(f"[{position[cell.key]}/{len(cells)}] {cell.label}: starting (key {cell.key})")
                if ctx.main or cell.stage in DISTRIBUTED_STAGES:
                    payload, error, wall, stamp = execute(cell, ws, registry, root, failed_pretrain, echo)
                else:
                    payload, error, wall, stamp = {}, None, 0.0, ""
                if ctx.main:
                    record(cell, payload, error, wall, stamp, _eta(started, i, len(group)))
                error = ctx.broadcast(error)  # every rank skips the cells of a failed pretraining alike
                if error and cell.stage == "pretrain" and not ctx.main:  # (record() notes it on rank 0)
                    failed_pretrain[cell.key] = error.splitlines()[0]
    except KeyboardInterrupt:
        if ctx.main:
            for line in interrupted_lines(cells, outcomes, root, suite.protocol.pretrain.epochs):
                echo(line)
        raise

    ordered = [outcomes[c.key] for c in cells if c.key in outcomes]
    if ctx.main:
        hook.run_finished(suite=suite, outcomes=ordered)
    ctx.barrier()
    return ordered


def finished_earlier(cells: list[Cell], root: Path, hook: Any, inputs: Inputs | None = None,
                     reuse_stale: bool = False, echo: Echo = print) -> dict[str, CellOutcome]:
    """The ``cached`` outcome of each cell whose result says ``done`` (observers told), by key. With ``inputs``,
    a finished cell whose recorded inputs (records, labels, pretraining, code) differ from today's is stale:
    left out, to be run again, or with ``reuse_stale`` kept and marked stale in its result file. ``echo`` gets
    what was found."""
    outcomes = {}
    stale: dict[str, int] = {}  # what changed -> cells
    n_stale = 0
    unchecked: list[str] = []
    for cell in cells:
        earlier = res.finished(root, cell.key)
        if earlier is None:
            continue
        if inputs is not None:
            try:
                now = inputs.of(cell)
            except Exception as exc:  # noqa: BLE001 - its data cannot be read now: keep it, and say so
                now = None
                unchecked.append(f"{cell.label}: {str(exc).splitlines()[0]}")
            changed = [] if now is None else _changes(earlier.inputs, now)
            if changed:
                n_stale += 1
                for what in changed:
                    stale[what] = stale.get(what, 0) + 1
                if not reuse_stale:
                    continue
                earlier.stale = "; ".join(changed)
                res.write_result(root, earlier)
            elif earlier.stale is not None:  # stale no more (the inputs came back)
                earlier.stale = None
                res.write_result(root, earlier)
        outcomes[cell.key] = CellOutcome(key=cell.key, status="cached", wall_s=earlier.wall_s,
                                         result_path=str(res.result_path(root, cell.key)))
        log.debug(f"{cell.label}: finished earlier (key {cell.key})")
        hook.cell_finished(cell=cell, outcome=outcomes[cell.key], result=earlier)
    if n_stale:
        what = "; ".join(f"{k} in {v}" for k, v in sorted(stale.items()))
        echo(f"{n_stale} finished cell(s) are stale, their inputs changed since they ran ({what}): "
             + ("kept as they are, marked stale (--reuse-stale)" if reuse_stale
                else "running them again (--reuse-stale keeps them)"))
    for line in unchecked[:3]:
        echo(f"kept a finished cell whose data cannot be read now: {line}")
    return outcomes


def pretraining_refusal(todo: list[Cell], ws: Workspace) -> str | None:
    """Why the suite's pretraining data may not be used (a validation or test record of a task is a pretraining
    record, and the suite refuses that), checked before any cell runs; ``None`` when it may, or when no
    pretraining is to run. A dataset that cannot be read is left for the cells to meet and record."""
    if not any(cell.stage == "pretrain" for cell in todo):
        return None
    try:
        ws.pretraining_records()
    except HeldOutOverlapError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - the cells fail with this error when they run
        pass
    return None


def resume_lines(cells: list[Cell], todo: list[Cell], root: Path, epochs: int) -> list[str]:
    """What a re-run takes from the runs before it: the finished cells it reuses (by stage; each named when there
    are few) and the pretraining cells that go on from a saved epoch."""
    from .pretrain import saved_epoch

    waiting = {cell.key for cell in todo}
    reused = [cell for cell in cells if cell.key not in waiting]
    lines = []
    if reused:
        stages: dict[str, int] = {}
        for cell in reused:
            stages[cell.stage] = stages.get(cell.stage, 0) + 1
        lines.append(f"reusing {len(reused)} finished cell(s): " + ", ".join(f"{n} {s}" for s, n in stages.items()))
        if len(reused) <= 8:
            lines += [f"  {cell.label}" for cell in reused]
    resumed = [(cell, saved_epoch(root, cell)) for cell in todo if cell.stage == "pretrain"]
    resumed = [(cell, epoch) for cell, epoch in resumed if epoch is not None]
    if resumed:
        lines.append(f"resuming {len(resumed)} pretraining cell(s) from the last epoch an interrupted run finished:")
        lines += [f"  {cell.label}: from epoch {epoch}/{epochs}" for cell, epoch in resumed]
    return lines


def interrupted_lines(cells: list[Cell], outcomes: dict[str, CellOutcome], root: Path, epochs: int) -> list[str]:
    """What an interrupted run leaves: the finished cells (kept) and the training state of each pretraining that
    was under way (it resumes from there)."""
    from .pretrain import saved_epoch

    earlier = sum(o.status == "cached" for o in outcomes.values())
    now = sum(o.status == "done" for o in outcomes.values())
    failed = sum(o.status == "failed" for o in outcomes.values())
    left = len(cells) - earlier - now
    lines = [f"interrupted: {earlier + now} of {len(cells)} cells finished ({now} in this run, {earlier} earlier"
             + (f", {failed} failed" if failed else "") + f"), {left} left; results kept in {root / res.RESULT_DIR}"]
    for cell in cells:
        if cell.stage == "pretrain" and cell.key not in outcomes:
            epoch = saved_epoch(root, cell)
            if epoch is not None:
                lines.append(f"  {cell.label}: training state kept at epoch {epoch}/{epochs}")
    return lines


def _pretraining_problem(root: Path, key: str) -> str | None:
    path = res.result_path(root, key)
    if not path.is_file():
        return "it has no result (it never ran, or its job ended before finishing)"
    result = res.read_result(path)
    if result.status == "failed":
        return (result.error or "failed").splitlines()[0]
    return None


def _quiet(line: str) -> None:
    """The echo of ranks other than 0."""


def prepare(cells: list[Cell], ws: Workspace, registry: Registry) -> None:
    """Materialise what ``cells`` read (datasets, encoder views, labels) before they run, so that processes
    running cells side by side only read. An error here is left for the cell to meet and record."""
    for cell in cells:
        try:
            spec = registry.encoders.get(cell.encoder)
            if cell.stage == "pretrain":
                ws.windows(ws.suite.data.pretrain, spec)
                continue
            task = registry.tasks.get(cell.task)
            ws.windows(task.dataset, spec)
            ws.labels(task)
        except Exception:  # noqa: BLE001 - the cell fails with this error when it runs
            pass


def _run_parallel(group: list[Cell], ws: Workspace, registry: Registry, root: Path, failed_pretrain: dict[str, str],
                  workers: int, record: Callable[..., None], started: float, echo: Echo) -> None:
    """Cells in forked workers. The parent prepares every dataset, view, label set and probe embedding first, so
    the workers share them (copy-on-write) and never write the same cache."""
    from .evaluate import cached_embeddings

    prepare(group, ws, registry)
    for cell in group:
        source = cell.pretrain_cell()
        if cell.stage == "linear_probe" and (source is None or source.key not in failed_pretrain):
            try:
                cached_embeddings(cell, ws, registry, root, registry.tasks.get(cell.task))
            except Exception:  # noqa: BLE001 - the cell fails with this error when it runs
                pass
    _WORKER_STATE.update(ws=ws, registry=registry, root=root, failed_pretrain=dict(failed_pretrain), echo=echo)
    kind = "pretraining" if group[0].stage == "pretrain" else "evaluation"
    echo(f"running {len(group)} {kind} cells in {workers} worker processes")
    done = 0
    with WorkerPool(workers, initializer=_worker_init) as pool:  # workers die with this process
        pending: dict[Future, Cell] = {}
        queue = list(group)
        try:
            while queue or pending:
                while queue and len(pending) < workers * 2:
                    cell = queue.pop(0)
                    pending[pool.submit(_worker_execute, cell)] = cell
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell = pending.pop(future)
                    try:
                        payload, error, wall, stamp = future.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died: that cell failed
                        payload, error, wall, stamp = {}, f"worker process failed: {type(exc).__name__}: {exc}", 0.0, res.now()
                    done += 1
                    record(cell, payload, error, wall, stamp, _eta(started, done, len(group)))
        except KeyboardInterrupt:
            pool.kill()  # at once: a pretraining in flight keeps the state of its last finished epoch
            _WORKER_STATE.clear()
            raise
    _WORKER_STATE.clear()


def _eta(started: float, done: int, total: int) -> str:
    elapsed = time.perf_counter() - started
    return _duration(elapsed / max(done, 1) * (total - done))


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def summary_lines(outcomes: list[CellOutcome], wall_s: float) -> list[str]:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "cached", "failed")}
    lines = [(f"{len(outcomes)} cells: {counts['done']} run, {counts['cached']} finished earlier, "
              f"{counts['failed']} failed ({_duration(wall_s)})")]
    for o in outcomes:
        if o.status == "failed":
            lines.append(f"  failed {o.key}: {o.error}")
    return lines
