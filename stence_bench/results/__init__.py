"""One results model: the schema of a run's result files, reading and writing them, aggregating them into tables,
and exporting them (text, CSV, JSON, Parquet). The command line (``stence-bench results``), the runner and the
leaderboard all go through this package.

- :mod:`.schema`: :class:`CellResult`, what ``results/<key>.json`` holds;
- :mod:`.files`: reading and writing result files, predictions and ``suite.json``;
- :mod:`.paired`: each cell's paired difference to its random-init control (derived, never stored);
- :mod:`.aggregate`: rows of cells (mean, two-level bootstrap interval, Holm-corrected differences, P(best)) and the
  suite's comparisons;
- :mod:`.text`: those as plain-text tables; :mod:`.export`: one row per cell as a DataFrame and as files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .files import (
    finished,
    now,
    predictions_path,
    read_predictions,
    read_result,
    read_results,
    result_path,
    write_predictions,
    write_result,
    write_suite,
)
from .paired import paired_differences
from .schema import RESULT_DIR, SCHEMA_VERSION, SUITE_FILE, CellResult, PairedDifference, SubgroupScore

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RESULT_DIR", "SCHEMA_VERSION", "SUITE_FILE", "CellResult", "PairedDifference", "SubgroupScore", "finished",
    "load_results", "now", "paired_differences", "predictions_path", "read_predictions", "read_result",
    "read_results", "result_path", "write_predictions", "write_result", "write_suite",
]


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """A run folder's results (or its ``results/`` folder's) as a DataFrame: one row per cell, with its config
    (stage, task, encoder, objective, seed, fraction, draw, leads, options and the whole resolved config as JSON),
    its scores (main metric, interval, paired difference to the control, every ``<split>_<metric>``) and its
    provenance. See :func:`stence_bench.results.export.frame` for the columns."""
    from ..errors import StenceBenchError
    from .export import frame

    results = read_results([Path(run_dir)])
    if not results:
        raise StenceBenchError(f"{run_dir}: no result files (expected {RESULT_DIR}/*.json)")
    return frame(results)
