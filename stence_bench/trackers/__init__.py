"""Experiment trackers: observer plugins that log a run to MLflow or TensorBoard.

A suite turns one on with a ``[trackers.<name>]`` table (``stence-bench run --tracker NAME`` does too, with the
defaults); they need the ``trackers`` extra (``pip install 'stence-bench[trackers]'``). While a run goes, each is
registered on the plugin manager like any observer plugin, and logs:

- per pretraining step, its loss (``epoch_finished``'s ``steps``), and per epoch the epoch's metrics;
- per cell, its config (flattened into parameters, and whole as ``cell.json``), status and scores
  (``cell_finished``'s ``result``: no file is read);
- at the end, the results table of the run (``leaderboard.txt``, as ``stence-bench results show`` prints it).

The runner calls observers in the process that owns the run (rank 0 under torchrun); ``epoch_finished`` is called
where a cell trains (a forked ``--workers`` process), so each tracker opens its writer once per process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import StenceBenchError
from ..hookspecs import hookimpl

log = logging.getLogger(__name__)

#: name -> ("module:class" of its tracker, the module it needs, the package that gives it).
TRACKERS: dict[str, tuple[str, str, str]] = {
    "mlflow": ("stence_bench.trackers.mlflow_tracker:MlflowTracker", "mlflow", "mlflow-skinny"),
    "tensorboard": ("stence_bench.trackers.tensorboard_tracker:TensorboardTracker", "torch.utils.tensorboard",
                    "tensorboard"),
}


class TrackerError(StenceBenchError):
    """A tracker cannot run: its library is missing, or its settings are wrong."""


def require(name: str) -> Any:
    """Import the library the tracker ``name`` needs; a one-line error naming the extra (``trackers``) when it is
    missing (:func:`stence_bench.extras.require`)."""
    from ..extras import require as require_extra

    _, module, package = TRACKERS[name]
    require_extra(package.replace("-skinny", ""), f"tracker {name!r}")  # the distribution's top-level module
    return importlib.import_module(module)


class Tracker:
    """Base of the built-in trackers: the observer hooks, and what they share. A subclass implements
    :meth:`start`, :meth:`log_epoch`, :meth:`log_cell`, :meth:`finish` and :meth:`close`."""

    name: ClassVar[str] = ""

    def __init__(self, settings: Any, root: Path):
        self.settings, self.root = settings, Path(root)
        self.results: list[Any] = []
        self.finished = False
        #: The cells train elsewhere, unobserved (SLURM jobs): a pretraining's epoch losses come from its result.
        self.epochs_elsewhere = False
        self.__name__ = f"tracker-{self.name}"

    # --- the observer hooks ---

    @hookimpl
    def run_started(self, suite: Any, cells: Sequence[Any]) -> None:
        self.start(suite, cells)

    @hookimpl
    def epoch_finished(self, cell: Any, epoch: int, metrics: Mapping[str, float],
                       steps: Sequence[Mapping[str, float]]) -> None:
        self.log_epoch(cell, epoch, {k: float(v) for k, v in metrics.items() if _finite(v)},
                       [(int(s["step"]), float(s["loss"])) for s in steps if _finite(s["loss"])])

    @hookimpl
    def cell_finished(self, cell: Any, outcome: Any, result: Any) -> None:
        if result is not None:
            self.results.append(result)
        self.log_cell(cell, outcome, result)

    @hookimpl
    def run_finished(self, suite: Any, outcomes: Sequence[Any]) -> None:
        self.finish(suite, outcomes, leaderboard_text(self.results))
        self.finished = True

    # --- what a tracker implements ---

    def start(self, suite: Any, cells: Sequence[Any]) -> None:
        raise NotImplementedError

    def log_epoch(self, cell: Any, epoch: int, metrics: dict[str, float], steps: list[tuple[int, float]]) -> None:
        raise NotImplementedError

    def log_cell(self, cell: Any, outcome: Any, result: Any) -> None:
        raise NotImplementedError

    def finish(self, suite: Any, outcomes: Sequence[Any], leaderboard: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """The run ended (or stopped: :attr:`finished` says which): release what is open."""

    def replayed_losses(self, outcome: Any, result: Any) -> list[float]:
        """The epoch losses of a pretraining whose epochs this tracker did not see (a cell finished in an earlier
        run, or in a SLURM job), from its result; ``[]`` otherwise."""
        if result is None or not (outcome.status == "cached" or self.epochs_elsewhere):
            return []
        return [float(v) for v in (result.pretrain or {}).get("losses") or []]

    def path(self, given: str | None, default: str) -> Path:
        """A folder setting: ``default`` in the run folder when not given; a relative one lies in the run folder."""
        path = Path(given).expanduser() if given else Path(default)
        return (path if path.is_absolute() else self.root / path).resolve()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def scores(result: Any) -> dict[str, float]:
    """A result's numbers as flat metric names: every metric per split (``test/auroc``, ``val/auprc``), the
    test interval of each (``test/auroc_ci_low``, ``test/auroc_ci_high``) and ``wall_s``; non-finite values (a
    metric undefined on one class) left out. The task's main metric is ``result.metric``."""
    out: dict[str, float] = {}
    for split, values in result.scores.items():
        for metric, value in values.items():
            out[f"{split}/{metric}"] = value
    for metric, interval in result.ci.items():
        if len(interval) == 2:
            out[f"test/{metric}_ci_low"], out[f"test/{metric}_ci_high"] = interval
    out["wall_s"] = result.wall_s
    return {k: float(v) for k, v in out.items() if _finite(v)}


def config(cell: Any) -> dict[str, Any]:
    """A cell's resolved config as JSON values (what its key is the hash of), with its key."""
    return {"key": cell.key, **cell.model_dump(mode="json")}


def flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as ``a.b.c`` -> text (lists as JSON), for trackers whose parameters are flat strings."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def slug(text: str) -> str:
    """A name safe in a path or a metric name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def leaderboard_text(results: list[Any]) -> str:
    """The run's results table, as ``stence-bench results show`` prints it ("" without results)."""
    if not results:
        return ""
    from ..results.text import results_table

    return results_table(results) + "\n"


def build(name: str, settings: Any, root: Path) -> Tracker:
    """The tracker ``name`` (its library imported: a missing one is a :class:`TrackerError`)."""
    require(name)
    module, _, attr = TRACKERS[name][0].partition(":")
    cls: type[Tracker] = getattr(importlib.import_module(module), attr)
    return cls(settings, root)


@contextlib.contextmanager
def attached(suite: Any, registry: Any, root: Path, *, enabled: bool = True,
             epochs_elsewhere: bool = False) -> Iterator[list[Tracker]]:
    """The suite's trackers (``suite.trackers``) registered as observer plugins while inside; each is closed and
    unregistered on the way out, also when the run stops with an error or an interruption. Nothing when not
    ``enabled`` (ranks other than 0, SLURM jobs: the process that submitted them logs). ``epochs_elsewhere``: the
    cells train where no tracker sees their epochs (SLURM jobs)."""
    trackers = [build(name, getattr(suite.trackers, name), Path(root)) for name in suite.trackers.names()] \
        if enabled else []
    for tracker in trackers:
        tracker.epochs_elsewhere = epochs_elsewhere
    manager = registry.plugins.manager
    for tracker in trackers:
        if manager.get_plugin(tracker.__name__) is not None:  # left by a run that could not unregister it
            manager.unregister(name=tracker.__name__)
        manager.register(tracker, name=tracker.__name__)
        log.debug(f"tracker {tracker.name}: on")
    try:
        yield trackers
    finally:
        for tracker in trackers:
            manager.unregister(tracker)
            try:
                tracker.close()
            except Exception as exc:  # noqa: BLE001 - a tracker failing to close must not hide the run's outcome
                log.warning(f"tracker {tracker.name}: could not close: {exc}")


F = TypeVar("F", bound=Callable[..., Any])


def with_trackers(run: F | None = None, *, epochs_elsewhere: bool = False) -> Any:
    """Decorate a function ``run(suite, registry, root, ...)`` that runs a suite: the suite's trackers observe it
    (in the main process only, see :func:`attached`); ``trackers=False`` leaves them off. ``@with_trackers(
    epochs_elsewhere=True)``: the cells train in other processes (SLURM jobs) that call no tracker."""

    def decorate(run: F) -> F:
        @functools.wraps(run)
        def wrapper(suite: Any, registry: Any, root: Any, *args: Any, trackers: bool = True, **kwargs: Any) -> Any:
            from ..protocol import distributed

            with attached(suite, registry, Path(root), enabled=trackers and distributed.current().main,
                          epochs_elsewhere=epochs_elsewhere):
                return run(suite, registry, root, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(run) if run is not None else decorate

