"""The primary AHA/ACC/HRS statements of the Shandong Provincial Hospital database (Liu et al., Sci Data 2022).

``sph.statements`` (multi-label): one class per primary statement of the database's ``code.csv`` (its ``Code``
column less the modifiers, codes 200-499, as the publisher's analysis code separates them), in the table's order;
the vocabulary is fixed by the statement table, not by which statements a data subset holds (as the PTB-XL tasks'
is). A record's labels are the primary statements of its ``AHA_Code`` (the ``sph`` layout keeps them in the
record's meta, ``primary``); a statement the table does not list counts for no class. Split by patient
(``Patient_ID``): the database publishes no split.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError, label_frame

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "code"
CITATION = ("Liu et al., A large-scale multi-label 12-lead electrocardiogram database with standardized diagnostic "
            "statements, Sci Data 9, 272 (2022)")


def _primary(meta: Any) -> list[str] | None:
    """A record's primary statement codes (meta ``primary``: a list, or the store's JSON text); None without any."""
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    if not isinstance(meta, dict) or meta.get("primary") is None:
        return None
    return [str(code).strip() for code in meta["primary"]]


def primary_statements(source: TaskSource) -> list[str]:
    """The primary statements of the ``code`` table, in its order (modifiers, codes 200-499, left out)."""
    from stence_bench.data.layouts.sph import is_modifier

    codes = source.table(TABLE, ["Code"])["Code"].dropna().astype(str).str.strip()
    return list(dict.fromkeys(code for code in codes if code and not is_modifier(code)))


def statement_labels(source: TaskSource) -> pd.DataFrame:
    """Multi-hot frame of the primary statements of ``code.csv`` per record (records without statements in their
    meta are left out)."""

    frame = source.records
    if "meta" not in frame.columns:
        raise TaskDataError(f"dataset {source.name!r}: its records lack column 'meta'")
    names = primary_statements(source)
    column = {code: i for i, code in enumerate(names)}
    rows: dict[str, list[float]] = {}
    for record_id, meta in zip(frame["record_id"].astype(str), frame["meta"]):
        codes = _primary(meta)
        if codes is None:
            continue
        row = [0.0] * len(names)
        for code in codes:
            if code in column:
                row[column[code]] = 1.0
        rows[record_id] = row
    if len(frame) and not rows:
        raise TaskDataError(f"dataset {source.name!r}: no record has AHA statements ('primary') in its meta; ingest "
                            "with --layout sph")
    return label_frame(rows, names)


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="sph.statements",
        description="SPH's primary AHA/ACC/HRS statements (code.csv less modifiers; multi-label, macro AUROC)",
        dataset="sph", task_kind="multilabel", labels="stence_bench_tasks.sph:statement_labels",
        options={}, metric="auroc", split="patient", source_columns=("meta.primary", f"{TABLE}.Code"),
        card="stence_bench_tasks:sph.md", citation=CITATION, version="1",
    ))
