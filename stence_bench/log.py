"""Logging: everything stence-bench says while it works goes through the stdlib logger ``stence_bench``.

The command line sets it up (:func:`configure`): progress lines on the terminal (stderr) at the verbosity of
``-v`` / ``-q``, on rank 0 only under torchrun, and with :func:`run_log` every line of a run, debug lines
included, in ``<run>/logs/run.log``. A program that embeds stence-bench configures ``logging`` as it likes; the
library itself only creates records (``logging.getLogger("stence_bench")`` and its children).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import click

#: The logger every module of stence-bench logs under (``stence_bench.protocol.runner``, ...).
LOGGER = "stence_bench"
#: The run's log file, relative to the run folder.
RUN_LOG = Path("logs") / "run.log"

logger = logging.getLogger(LOGGER)

#: ``-v`` / ``-q`` counts (verbose minus quiet) -> the lowest level shown on the terminal.
_LEVELS = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class ConsoleHandler(logging.Handler):
    """Each record as one line on stderr, through ``click.echo`` (so the stream is looked up at each line: a test's
    ``CliRunner`` sees it). Info lines are printed as they are; debug and warning lines say what they are. A
    record logged with ``extra={"console": False}`` is for the run's log file only (a line the command prints
    itself, on stdout)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "console", True):
            return
        try:
            message = record.getMessage()
            if record.levelno == logging.DEBUG:
                message = f"debug: {message}"
            elif record.levelno >= logging.WARNING:
                message = f"{record.levelname.capitalize()}: {message}"
            click.echo(message, err=True)
        except Exception:  # noqa: BLE001 - logging must never stop a run (logging's own convention)
            self.handleError(record)


def is_main_process(environ: dict[str, str] | None = None) -> bool:
    """Rank 0, or no torchrun at all (``RANK`` unset)."""
    environ = dict(os.environ) if environ is None else environ
    return (environ.get("RANK") or "0") == "0"


def configure(verbosity: int = 0, *, main: bool | None = None) -> None:
    """Set up the ``stence_bench`` logger for the command line: one :class:`ConsoleHandler` whose level follows
    ``verbosity`` (``-v`` count minus ``-q`` count: 1 shows debug lines, -1 only warnings, -2 only errors);
    ranks other than 0 (``main`` false; default from ``RANK``) print nothing. Called again (each command of a
    test session), it replaces its handler."""
    main = is_main_process() if main is None else main
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    console = ConsoleHandler()
    level = _LEVELS[max(-2, min(1, verbosity))]
    console.setLevel(level if main else logging.CRITICAL + 1)
    logger.addHandler(console)
    logger.setLevel(logging.DEBUG)  # the run's log file takes every line; the console handler filters
    logger.propagate = False  # the command line's handlers only: no second copy through the root logger


@contextlib.contextmanager
def run_log(root: Path) -> Iterator[Path]:
    """While inside, every record of the ``stence_bench`` logger (debug included) is appended to
    ``<root>/logs/run.log`` with its time and level; yields the file."""
    path = Path(root) / RUN_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()


def echo(name: str = LOGGER, level: int = logging.INFO) -> Callable[[str], None]:
    """An ``Echo`` (a callable taking one line, as :func:`stence_bench.protocol.runner.run_suite` takes) that logs
    each line to the logger ``name`` at ``level``."""
    target = logging.getLogger(name)
    return lambda line: target.log(level, line)


def printed(line: str, *, err: bool = False) -> None:
    """A line the command prints itself (a result, the summary), also written to the run's log file."""
    click.echo(line, err=err)
    logger.info(line, extra={"console": False})
