"""The public Python API (``stence_bench.run``, ``stence_bench.load_results``, ``stence_bench.build_leaderboard``):
what the command line does, for notebooks and scripts, so that nobody imports from ``stence_bench.protocol``.

``stence-bench run`` is :func:`run_validated` with the command line's options; :func:`run` takes a suite (a path, a
shipped suite's name, or a :class:`~stence_bench.suite.Suite`) and returns a :class:`RunReport` instead of an exit
status. See docs/api.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StenceBenchError
from .processes import FolderLock, stop_on_signals

if TYPE_CHECKING:
    import pandas as pd

    from .cells import Cell, CellOutcome
    from .registry import Registry
    from .suite_schema import Suite

#: The lock file of a run folder: the pid and host of the `stence-bench run` writing it.
RUN_LOCK = "run.lock"

Say = Callable[..., None]


@dataclass
class RunReport:
    """What a run did: its folder, one outcome per cell (``done``, ``cached``: finished earlier, ``failed``), and
    the leaderboard it built (``None`` when no result was written, or on a rank other than 0 under torchrun)."""

    root: Path
    outcomes: list[CellOutcome] = field(default_factory=list)
    site: Path | None = None
    #: False on the ranks other than 0 of a torchrun job (they print and write nothing)
    main: bool = True

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def results(self) -> Path:
        return self.root / "results"


def _quiet(*args: Any, **kwargs: Any) -> None:
    """Says nothing (ranks other than 0; ``run(..., quiet=True)``)."""


def _print(line: str = "", err: bool = False) -> None:
    import sys

    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def run(suite: str | os.PathLike[str] | Suite, out: str | os.PathLike[str] | None = None, *,
        registry: Registry | None = None, launcher: str = "local", workers: int | None = None,
        device: str | None = None, loader_workers: int | None = None, reuse_stale: bool = False,
        partition: str | None = None, time_min: int | None = None, gpus_per_job: int | None = None,
        cells_per_job: int | None = None, trackers: Sequence[str] = (), quiet: bool = False) -> RunReport:
    """Run a suite as ``stence-bench run SUITE --out OUT`` does: validate it against the installed plugins, run
    every cell once (finished cells are kept; a failed cell is recorded and the others go on), then build the
    leaderboard in ``OUT/site``. The keywords are the command's options (``workers``, ``device``,
    ``loader_workers``, ``reuse_stale``, ``launcher="slurm"`` with ``partition``, ``time_min``, ``gpus_per_job``,
    ``cells_per_job``; ``trackers``: experiment trackers to turn on, as ``--tracker``). ``suite``: a suite file, the name of a shipped suite, or a :class:`Suite` (validated here as a
    file is). ``out``: default ``runs/<suite name>``. ``registry``: default, the installed plugins. Progress goes to
    stdout and stderr as on the command line (``quiet=True``: nothing). A bad suite or option raises a
    :class:`~stence_bench.errors.StenceBenchError`; failed cells do not raise: see :attr:`RunReport.failed`."""
    from .registry import Registry
    from .suite import check_code, check_names, check_sources, validate_suite
    from .suite_schema import Suite as SuiteModel

    registry = registry if registry is not None else Registry.load()
    registry.check()
    if isinstance(suite, SuiteModel):
        path = Path(f"<suite {suite.name}>")
        problems = check_names(suite, registry, str(path))
        problems = problems or check_sources(suite, registry, str(path)) + check_code(suite, registry, str(path))
        if problems:
            from .errors import SuiteError

            raise SuiteError(problems)
        parsed = suite
    else:
        parsed, path = validate_suite(str(suite), registry)
    say: Say = _quiet if quiet else _print
    return run_validated(parsed, path, registry, out=None if out is None else Path(out), launcher=launcher,
                         workers=workers, device=device, loader_workers=loader_workers, reuse_stale=reuse_stale,
                         cluster={"partition": partition, "time_min": time_min, "gpus_per_job": gpus_per_job,
                                  "cells_per_job": cells_per_job}, trackers=trackers, say=say)


def with_cluster(suite: Suite, launcher: str, cluster: dict[str, Any]) -> tuple[Suite, dict[str, Any]]:
    """The suite with the command line's SLURM overrides (those given), and the overrides; one given without
    ``launcher="slurm"`` is an error."""
    given = {k: v for k, v in cluster.items() if v is not None}
    if given:
        if launcher != "slurm":
            raise StenceBenchError(f"--{next(iter(given)).replace('_', '-')} is an option of --launcher slurm")
        suite = suite.model_copy(update={"cluster": suite.cluster.model_copy(update=given)})
    return suite, given


def run_validated(parsed: Suite, path: Path, registry: Registry, *, out: Path | None, launcher: str = "local",
                  workers: int | None = None, device: str | None = None, loader_workers: int | None = None,
                  reuse_stale: bool = False, cluster: dict[str, Any] | None = None, cells: list[Cell] | None = None,
                  trackers: Sequence[str] = (), say: Say = _print,
                  echo: Callable[[str], None] | None = None) -> RunReport:
    """Run a validated suite (what ``stence-bench run`` and :func:`run` share): ``say(line, err=False)`` prints;
    ``echo(line)`` takes the progress lines (default: ``say`` on stderr). ``trackers``: experiment trackers turned
    on besides the suite's ``[trackers]`` (``run --tracker``). Every line of the run, debug included, also goes to
    ``<run>/logs/run.log`` (rank 0 writes it).

    A ``KeyboardInterrupt`` (Ctrl-C, SIGTERM) stops the run, keeping finished cells and each pretraining's last
    epoch; the command that resumes is said, and the interrupt raised again."""
    with ExitStack() as stack:
        return _run_validated(parsed, path, registry, stack, out=out, launcher=launcher, workers=workers,
                              device=device, loader_workers=loader_workers, reuse_stale=reuse_stale,
                              cluster=cluster, cells=cells, trackers=trackers, say=say, echo=echo)


def _run_validated(parsed: Suite, path: Path, registry: Registry, stack: ExitStack, *, out: Path | None,
                   launcher: str, workers: int | None, device: str | None, loader_workers: int | None,
                   reuse_stale: bool, cluster: dict[str, Any] | None, cells: list[Cell] | None,
                   trackers: Sequence[str], say: Say, echo: Callable[[str], None] | None) -> RunReport:
    from .log import run_log
    from .protocol import distributed
    from .protocol.runner import run_suite, summary_lines
    from .suite import left_out_notices, plan, suite_summary

    if loader_workers is not None:  # read by every stage, and inherited by the processes that run cells
        from .data.windows import ENV_LOADER_WORKERS

        os.environ[ENV_LOADER_WORKERS] = str(loader_workers)
    parsed, overrides = with_cluster(parsed, launcher, cluster or {})
    if trackers:
        parsed = parsed.model_copy(update={"trackers": parsed.trackers.turn_on(trackers)})
    cells = plan(parsed, registry) if cells is None else cells
    dist = distributed.setup(dict(os.environ), device=device)
    root = out if out is not None else Path("runs") / parsed.name
    if dist.main:  # every line of the run, debug included, also goes to <run>/logs/run.log
        stack.enter_context(run_log(root))
    else:
        say = _quiet
    say(f"suite {parsed.name!r} ({path}): {suite_summary(parsed, registry)}")
    for line in left_out_notices(parsed, registry):
        say(f"note: {line}")
    started = time.perf_counter()

    if echo is None:
        def echo(line: str) -> None:
            say(line, err=True)

    if launcher == "slurm" and dist.distributed:
        raise StenceBenchError("--launcher slurm submits jobs; run it once, not under torchrun")
    if launcher == "local":
        if workers is None:
            workers = 1 if dist.distributed or dist.device.type == "cuda" else max(1, min(4, os.cpu_count() or 1))
        elif workers > 1 and dist.device.type == "cuda":
            raise StenceBenchError("--workers runs cells in forked CPU processes; on GPUs use one process per GPU "
                                   "with torchrun (docs/cluster.md)")
    again = resume_command(path, root, launcher=launcher, workers=workers, device=device, extra=overrides)
    if reuse_stale:
        again += " --reuse-stale"
    again += "".join(f" --tracker {name}" for name in trackers)
    lock = FolderLock(root / RUN_LOCK, what="this run folder", command=again, echo=echo)
    with stop_on_signals(on_second=lock.release):
        try:
            if dist.main:  # one writer per run folder (under torchrun: rank 0 speaks for all)
                lock.acquire()
            if launcher == "slurm":
                from .protocol.slurm import launch

                outcomes = launch(parsed, registry, root, cells=cells, echo=echo, device=device,
                                  overrides=set(overrides), reuse_stale=reuse_stale)
            else:
                outcomes = run_suite(parsed, registry, root, echo=echo, cells=cells, workers=workers or 1,
                                     reuse_stale=reuse_stale)
                distributed.teardown()  # (not after an error: another rank may never reach the barrier it holds)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM (a SLURM job's end): workers stopped, work kept
            lock.release()
            say(f"to resume: {again}", err=True)
            raise
        finally:
            lock.release()
    report = RunReport(root=root, outcomes=list(outcomes), main=dist.main)
    if not dist.main:
        return report
    for line in summary_lines(outcomes, time.perf_counter() - started):
        say(line)
    if not any((root / "results").glob("*.json")):
        say("no result was written: no leaderboard")
        return report
    say(f"results: {root / 'results'}  (stence-bench results show {root})")
    from .leaderboard import build_site

    report.site = build_site([root], root / "site", registry=registry)
    say(f"leaderboard: {report.site}")
    return report


def resume_command(suite: Path, root: Path, *, launcher: str, workers: int | None, device: str | None,
                   extra: dict[str, Any]) -> str:
    """The command that goes on with a run: the same suite, folder and options."""
    import shlex

    words = ["stence-bench", "run", str(suite), "--out", str(root)]
    if launcher != "local":
        words += ["--launcher", launcher]
    if workers is not None:
        words += ["--workers", str(workers)]
    if device is not None:
        words += ["--device", device]
    for name, value in extra.items():
        words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


def load_results(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """A run folder's results as a DataFrame, one row per cell with its config and scores
    (:func:`stence_bench.results.load_results`; the rows ``stence-bench results export`` writes)."""
    from .results import load_results as load

    return load(Path(run_dir))


def build_leaderboard(run_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                      out: str | os.PathLike[str], *, registry: Registry | None = None,
                      templates: str | os.PathLike[str] | None = None) -> Path:
    """Build the static HTML leaderboard of run folders into ``out``, as ``stence-bench leaderboard RUN_DIR... -o
    OUT`` does; returns the index page's path. ``registry``: default, the installed plugins (task datasets,
    encoders' pretraining data for the contamination flags)."""
    from .leaderboard import build_site
    from .registry import Registry

    folders = [Path(run_dirs)] if isinstance(run_dirs, str | os.PathLike) else [Path(d) for d in run_dirs]
    registry = registry if registry is not None else Registry.load()
    return build_site(folders, Path(out), registry=registry, templates=None if templates is None else Path(templates))
