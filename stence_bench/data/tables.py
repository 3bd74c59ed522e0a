"""CSV label tables joined to a store's records: keyed by record, patient or study, optionally by time.

Clinical labels rarely come per ECG: a potassium lab is drawn hours from the ECG, an echo LVEF days. With
``time_column`` and ``within``, each record takes the label row of its patient nearest in time (or the latest
before, or the first after), and only inside the window; a record without one gets no label, never a far one.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Literal

import pandas as pd

from ..errors import StenceBenchError

Key = Literal["record", "patient", "study"]
_KEY_COLUMN = {"record": "record_id", "patient": "patient_id", "study": "study_id"}


def check_table_name(name: str) -> str:
    """A table's name in a store is a plain file name (``tables/NAME.csv``): never a path, so nothing is written
    outside the store's tables."""
    if not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise StenceBenchError(f"--name {name!r}: a table name is a plain name (letters, digits, '-', '_', '.'), "
                               "not a path")
    return name


def read_label_table(path: str | os.PathLike[str], *, key: Key, key_column: str | None = None,
                     time_column: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a label CSV; a missing column, or a row whose fields do not match the header's, is an error naming
    the file (and the line, or the columns it has)."""
    table = read_csv_table(path, dtype={key_column or _KEY_COLUMN[key]: str})
    needed = [key_column or _KEY_COLUMN[key], *([time_column] if time_column else []), *(columns or [])]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise StenceBenchError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})")
    if time_column:
        times = pd.to_datetime(table[time_column], errors="coerce", utc=True)
        bad = table.index[times.isna() & table[time_column].notna()]
        if len(bad):
            raise StenceBenchError(f"{path}: {time_column} row {int(bad[0]) + 2}: cannot read {table.loc[bad[0], time_column]!r} as a time")
        table[time_column] = times
    return table


def read_csv_table(path: str | os.PathLike[str], **read_csv: object) -> pd.DataFrame:
    """A source's or label table's CSV, read by pandas once every row is checked to have the header's number of
    fields; a file pandas cannot parse is an error naming it, never a traceback."""
    try:
        _check_rows(path)
        return pd.read_csv(path, **read_csv)
    except FileNotFoundError:
        raise StenceBenchError(f"{path}: no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        raise StenceBenchError(f"{path}: not a readable CSV: {str(exc).splitlines()[0]}") from None


def _check_rows(path: str | os.PathLike[str]) -> None:
    """Every row has the header's number of fields: pandas fills a short row with empty values silently."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            if row and len(row) != len(header):
                raise StenceBenchError(f"{path}: line {reader.line_num} has {len(row)} field(s), the header has "
                                       f"{len(header)}; a missing value is an empty field (two commas)")


def join_summary(manifest: pd.DataFrame, table: pd.DataFrame, joined: pd.DataFrame, *, key: Key,
                 key_column: str | None = None, study_column: str = "study_id") -> dict[str, Any]:
    """How a join went: records labelled and not, and the table's rows whose key names no record (or patient, or
    study) of the store, with a few of those keys."""
    key_column = key_column or _KEY_COLUMN[key]
    left_key = {"record": "record_id", "patient": "patient_id", "study": study_column}[key]
    if key == "study" and left_key not in manifest.columns:
        left_key = "record_id"
    known = set(manifest[left_key].astype(str))
    keys = table[key_column].astype("string")
    unknown = keys[~keys.isin(known)].dropna()
    labelled = int(joined["record_id"].nunique())
    return {"records": len(manifest), "labelled": labelled, "unlabelled": len(manifest) - labelled,
            "unknown_rows": len(unknown), "unknown_examples": list(dict.fromkeys(unknown))[:3]}


def join_labels(manifest: pd.DataFrame, table: pd.DataFrame, *, key: Key, key_column: str | None = None,
                columns: list[str] | None = None, time_column: str | None = None, within: str | None = None,
                direction: Literal["nearest", "backward", "forward"] = "nearest",
                study_column: str = "study_id") -> pd.DataFrame:
    """One row per record of ``manifest`` (``record_id``, the label ``columns``, and for timed joins the signed
    gap ``label_time - ecg_time`` as ``gap_hours``); records with no matching label are left out.

    A study-keyed table joins on the manifest's ``study_column`` when it has one, else on the record id (one ECG
    per study, as in MIMIC-IV-ECG).
    """
    key_column = key_column or _KEY_COLUMN[key]
    columns = columns or [c for c in table.columns if c not in (key_column, time_column)]
    left_key = {"record": "record_id", "patient": "patient_id", "study": study_column}[key]
    if key == "study" and left_key not in manifest.columns:
        left_key = "record_id"  # one ECG per study (MIMIC-IV-ECG: the record id is the study id)
    wanted = ["record_id", left_key, *(["time"] if time_column else [])]
    left = manifest[list(dict.fromkeys(wanted))].copy()
    left[left_key] = left[left_key].astype("string")
    right = table[[key_column, *([time_column] if time_column else []), *columns]].copy()
    right[key_column] = right[key_column].astype("string")
    if not time_column:
        if right[key_column].duplicated().any():
            dup = right.loc[right[key_column].duplicated(), key_column].iloc[0]
            raise StenceBenchError(f"{key} {dup!r} has several label rows; give time_column to pick one by time")
        right = right.rename(columns={key_column: "_key"})
        joined = left.merge(right, left_on=left_key, right_on="_key", how="inner")
        return joined[["record_id", *columns]].reset_index(drop=True)
    left["ecg_time"] = pd.to_datetime(left["time"], errors="coerce", utc=True)
    left = left.dropna(subset=["ecg_time"]).sort_values("ecg_time")
    right = right.dropna(subset=[time_column]).sort_values(time_column)
    right["label_time"] = right[time_column]
    joined = pd.merge_asof(
        left, right, left_on="ecg_time", right_on=time_column, left_by=left_key, right_by=key_column,
        direction=direction, tolerance=pd.Timedelta(within) if within else None,
    )
    joined = joined.dropna(subset=["label_time"])
    joined["gap_hours"] = (joined["label_time"] - joined["ecg_time"]).dt.total_seconds() / 3600
    return joined[["record_id", *columns, "gap_hours"]].sort_values("record_id").reset_index(drop=True)
