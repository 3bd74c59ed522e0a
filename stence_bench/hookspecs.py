"""The plugin contract: every hook stence-bench calls, typed and documented.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are hooks below. Registration
hooks receive a host-owned ``register`` callable; a plugin never touches the registry itself::

    from stence_bench import hookimpl, EncoderSpec

    @hookimpl
    def register_encoders(register):
        register(EncoderSpec(name="my_net", factory="my_pkg.model:build",
                             sampling_rate=100, window_s=2.5, embed_dim=256))

Built-ins are listed in ``stence_bench.plugin_loader.DEFAULT_PLUGINS``; third-party packages declare an entry
point in the group ``stence_bench``. A hook implementation may accept any subset of a hook's arguments.
Every hook has a section in ``docs/plugins.md`` and a test (``tests/test_hookspecs.py`` checks both).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

from .specs import DatasetSpec, EncoderSpec, ModalitySpec, ObjectiveSpec, TaskSpec

if TYPE_CHECKING:  # click and the suite model are only needed by the host, not to import the contract
    import click

    from .cells import Cell, CellOutcome
    from .results.schema import CellResult
    from .suite_schema import Suite

PROJECT = "stence_bench"
#: The entry-point group third-party packages declare their plugin module in.
ENTRY_POINT_GROUP = "stence_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration -------------------------------------------------------------------------------------------


@hookspec
def register_encoders(register: Callable[[EncoderSpec], None]) -> None:
    """Register ECG encoders: call ``register(EncoderSpec(...))`` once per encoder.

    The spec carries the encoder's input contract (sampling rate, window, leads, filter, normalisation) and
    names its factory as ``"module:attr"``; the factory is imported only when the encoder is built.
    """


@hookspec
def register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    """Register pretraining objectives: call ``register(ObjectiveSpec(...))`` once per objective.

    The spec declares the modalities the objective needs and whether it gathers negatives across ranks.
    """


@hookspec
def register_tasks(register: Callable[[TaskSpec], None]) -> None:
    """Register downstream tasks: call ``register(TaskSpec(...))`` once per task.

    A task names the dataset layout it reads, its label function, kind, main metric, split policy and version.
    """


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register readers for source layouts: call ``register(DatasetSpec(...))`` once per layout."""


@hookspec
def register_modalities(register: Callable[[ModalitySpec], None]) -> None:
    """Register encoders of paired modalities (angiography, text, metadata): ``register(ModalitySpec(...))``."""


@hookspec
def register_commands(register: Callable[[click.Command], None]) -> None:
    """Add sub-commands to the ``stence-bench`` CLI: call ``register(command)`` with a ``click.Command``.

    A command whose name is already taken is an error naming both plugins.
    """


# --- observers ----------------------------------------------------------------------------------------------
# Called by the runner, in the process that owns the run (rank 0), for loggers such as MLflow or W&B;
# epoch_finished in the process that trains the cell (rank 0 of it: a forked worker, a SLURM job).
# Their return values are ignored; an exception in an observer is a bug in that plugin and stops the run.


@hookspec
def run_started(suite: Suite, cells: Sequence[Cell]) -> None:
    """A run of ``suite`` is starting; ``cells`` are all the cells it will go through, in order."""


@hookspec
def cell_finished(cell: Cell, outcome: CellOutcome, result: CellResult | None) -> None:
    """``cell`` has finished: ``outcome.status`` is ``done``, ``cached`` (finished earlier) or ``failed``.

    ``result`` is the cell's result as written to its file (scores, interval, config, pretraining losses), so an
    observer never reads files; ``None`` only where a failed cell left no result (a SLURM job that died)."""


@hookspec
def epoch_finished(cell: Cell, epoch: int, metrics: Mapping[str, float],
                   steps: Sequence[Mapping[str, float]]) -> None:
    """A training epoch of ``cell`` ended (1-based ``epoch``): ``metrics`` has ``loss`` (pretraining, the mean over
    the epoch's global batches, after its training state was saved) or ``val_loss`` (finetuning). ``steps``:
    the epoch's training steps, each ``{"step": n, "loss": value}`` with ``n`` counting from 1 over the whole
    pretraining (the loss averaged over the processes); empty for finetuning."""


@hookspec
def run_finished(suite: Suite, outcomes: Sequence[CellOutcome]) -> None:
    """The run of ``suite`` has ended; ``outcomes`` has one entry per cell, failures included."""
