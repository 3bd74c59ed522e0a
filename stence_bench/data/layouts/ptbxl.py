"""``ptbxl``: the PTB-XL layout: ``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/`` and ``records500/``.

Records are read at 500 Hz (``records500``, the original rate) or 100 Hz (``--option rate=100``). The database
and statement tables are kept in the store (``tables/``), with ``strat_fold``, so tasks build the PTB-XL label sets
(``stence_bench_tasks.ptbxl``) and the benchmark's folds from them.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pandas as pd

from ...errors import StenceBenchError
from ..records import Record
from ..tables import read_csv_table
from ..wfdb_io import read_wfdb
from .base import Layout, RecordRef, Scan, require_columns

if TYPE_CHECKING:
    from ...task_data import TaskSource

DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")


def parse_scp_codes(value: object) -> dict[str, float]:
    """``scp_codes`` as ``ptbxl_database.csv`` stores it (a Python dict literal, statement -> likelihood) -> dict."""
    if isinstance(value, dict):
        return value
    parsed = ast.literal_eval(str(value))
    if not isinstance(parsed, dict):
        raise ValueError(f"scp_codes is not a dict: {value!r}")
    return parsed


def whole_numbers(table: pd.DataFrame, column: str, path: Path, *, missing_ok: bool) -> None:
    """Every value of ``column`` is a whole number (``5``, ``5.0``), or missing where ``missing_ok``; the first
    that is not is an error naming the file, its line and the value."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & (table[column].notna() | (not missing_ok))
    bad |= values.notna() & (values != values.round())
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise StenceBenchError(f"{path}: line {row + 2}: {column} {table[column].iloc[row]!r} is not a whole number")


class PtbxlLayout(Layout):
    """PTB-XL. Options: ``rate`` (100 or 500 Hz), ``database`` (the record table's file name). Its labels are each
    record's SCP statements (the keys of ``scp_codes``, any likelihood, as the PTB-XL benchmark reads them)."""

    name: ClassVar[str] = "ptbxl"
    label_source: ClassVar[str] = "SCP statements of each record's scp_codes in ptbxl_database.csv (any likelihood)"
    rate: Literal[100, 500] = 500
    database: str = "ptbxl_database.csv"
    statements: str = "scp_statements.csv"

    def scan(self, source: Path) -> Scan:
        db_path, st_path = source / self.database, source / self.statements
        for path in (db_path, st_path):
            if not path.is_file():
                raise StenceBenchError(f"{path}: not found; a PTB-XL folder holds {self.database} and {self.statements}")
        database = read_csv_table(db_path)
        require_columns(database, DATABASE_COLUMNS, db_path)
        for column in ("ecg_id", "strat_fold"):
            whole_numbers(database, column, db_path, missing_ok=False)
        whole_numbers(database, "patient_id", db_path, missing_ok=True)
        statements = read_csv_table(st_path, index_col=0)
        require_columns(statements, ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"), st_path)
        column = "filename_hr" if self.rate == 500 else "filename_lr"
        times = pd.to_datetime(database["recording_date"], errors="coerce") if "recording_date" in database else None
        iso = [t.isoformat() if t == t else None for t in times] if times is not None else [None] * len(database)
        extra = {key: database[key].tolist() for key in ("age", "sex") if key in database.columns}
        refs = []
        rows = zip(database["ecg_id"].tolist(), database[column].tolist(), database["strat_fold"].tolist(),
                   database["patient_id"].tolist(), iso)
        for i, (ecg_id, filename, fold, patient, when) in enumerate(rows):
            meta: dict[str, Any] = {"strat_fold": int(fold)}
            for key, values in extra.items():
                if values[i] == values[i]:  # not NaN
                    meta[key] = values[i]
            refs.append(RecordRef(
                record_id=str(int(ecg_id)), path=os.path.join(source, f"{filename}.hea"),
                patient_id=str(int(patient)) if patient == patient else None, time=when, meta=meta,
            ))
        statements_table = statements.reset_index().rename(columns={"index": "scp_code"})
        return Scan(refs=refs, tables={"ptbxl_database": database, "scp_statements": statements_table})

    def read(self, ref: RecordRef) -> Record:
        record, _ = read_wfdb(ref.path, record_id=ref.record_id)
        return record

    def labels(self, source: TaskSource) -> list[list[str]]:
        database = source.table("ptbxl_database", ("ecg_id", "scp_codes"))
        codes: dict[str, list[str]] = {}
        for ecg_id, value in zip(database["ecg_id"].tolist(), database["scp_codes"].tolist()):
            if ecg_id != ecg_id:  # NaN: a row without an id is no record
                continue
            try:
                codes[str(int(ecg_id))] = sorted(parse_scp_codes(value))
            except (ValueError, SyntaxError) as exc:
                raise StenceBenchError(f"{self.database}: ecg_id {int(ecg_id)}: cannot read scp_codes {str(value)!r} "
                                       f"as a dict of statements ({type(exc).__name__})") from None
        return [codes.get(str(rid), []) for rid in source.records["record_id"]]
