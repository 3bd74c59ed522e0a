"""What a task's label function reads, and what it returns.

A :class:`~stence_bench.specs.TaskSpec`'s ``labels`` names ``fn(source: TaskSource, **options) -> pandas.DataFrame``:

- ``source.records``: one row per ECG of the dataset's store: ``record_id`` (str), ``patient_id`` (str),
  ``time`` (ISO string or empty), ``meta`` (the layout's per-record dict: PTB-XL ``strat_fold``, a MIMIC-IV-ECG
  machine ``report``, ...);
- ``source.table(name, columns)``: a table that came with the data (the layout's own, such as PTB-XL's
  ``scp_statements``, or a CSV of the suite's ``tables`` folder such as ``echo``), checked to have ``columns``.

The returned frame is indexed by ``record_id`` with one float column per class (0/1) for binary and
multi-label tasks (a binary task has exactly one column), or one column of values for regression. A record
without a label is simply absent (or NaN), never guessed. A missing table or column is a
:class:`TaskDataError` naming the task's dataset, the table, what is missing and what there is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import StenceBenchError

if TYPE_CHECKING:
    import pandas as pd


class TaskDataError(StenceBenchError):
    """The data a task reads lacks a table or a column it needs."""


class TaskSource:
    """The records of one dataset and the tables that come with them."""

    def __init__(self, name: str, records: pd.DataFrame, tables: Mapping[str, pd.DataFrame]):
        self.name = name
        self.records = records
        self._tables = dict(tables)

    @property
    def table_names(self) -> list[str]:
        return sorted(self._tables)

    def has_table(self, name: str) -> bool:
        return name in self._tables

    def table(self, name: str, columns: Sequence[str] = ()) -> pd.DataFrame:
        """The table ``name``, checked to have ``columns``."""
        if name not in self._tables:
            have = ", ".join(self.table_names) or "none"
            raise TaskDataError(f"dataset {self.name!r}: needs table {name!r} ({name}.csv in the suite's tables "
                                f"folder or the layout's own); it has: {have}")
        table = self._tables[name]
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise TaskDataError(f"dataset {self.name!r}: table {name!r} lacks column(s) {', '.join(missing)} "
                                f"(has: {', '.join(map(str, table.columns))})")
        return table


def label_frame(rows: Mapping[str, Sequence[float]], columns: Sequence[str]) -> pd.DataFrame:
    """A label function's result from ``rows`` (record id -> one value per column): float columns, indexed by
    ``record_id``, in record-id order."""
    import pandas as pd

    out = pd.DataFrame.from_dict(dict(rows), orient="index", columns=list(columns), dtype="float64")
    out.index.name = "record_id"
    return out.sort_index()
