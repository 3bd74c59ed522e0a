"""``mimic-iv-ecg``: the MIMIC-IV-ECG layout: ``files/pNNNN/pXXXXXXXX/sXXXXXXXX/XXXXXXXX.hea``, ``record_list.csv`` and
``machine_measurements.csv`` (machine reports and intervals), both kept in the store.

A study is one ECG: its record id is the study id, its patient the subject id, its time ``ecg_time``. Without
``record_list.csv`` the folders are walked and the ids read from the path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from ..records import Record
from ..tables import read_csv_table
from ..wfdb_io import read_wfdb
from .base import Layout, RecordRef, Scan, find_headers, require_columns

_PATH = re.compile(r"p(\d+)/s(\d+)/[^/]+\.hea$")
MEASUREMENTS = ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis")


_REPORT_COLUMN = re.compile(r"^report_(\d+)$")


def statements(row: pd.Series) -> list[str]:
    """A study's machine statements, one per ``report_N`` column in column-number order, empty ones left out:
    each is one statement ("Sinus rhythm", "Normal ECG"), kept apart (never joined and split again)."""
    numbered = sorted((int(m.group(1)), c) for c in row.index if (m := _REPORT_COLUMN.match(str(c))))
    parts = [str(row[c]).strip() for _, c in numbered if isinstance(row[c], str)]
    return [p for p in parts if p]


class MimicIvEcgLayout(Layout):
    """MIMIC-IV-ECG. A study's machine report (``report``: its statements joined by spaces, for text encoders;
    ``statements``: the list, for labels) and intervals go into its record's meta."""

    name: ClassVar[str] = "mimic-iv-ecg"
    label_source: ClassVar[str] = "machine statements (the report_N columns of machine_measurements.csv)"

    def scan(self, source: Path) -> Scan:
        tables: dict[str, pd.DataFrame] = {}
        list_path = source / "record_list.csv"
        if list_path.is_file():
            records = read_csv_table(list_path)
            require_columns(records, ("subject_id", "study_id", "path"), list_path)
            tables["record_list"] = records

        def rows() -> Iterator[tuple[str, str, str, Any]]:
            if list_path.is_file():
                for r in records.itertuples(index=False):
                    hea = os.path.join(source, f"{r.path}.hea")
                    yield str(r.study_id), str(r.subject_id), hea, getattr(r, "ecg_time", None)
                return
            for hea in find_headers(source / "files" if (source / "files").is_dir() else source):
                m = _PATH.search(Path(hea).as_posix())
                if m:
                    yield m.group(2), m.group(1), hea, None

        mm_path = source / "machine_measurements.csv"
        mm: pd.DataFrame | None = None
        rows_of: dict[str, int] = {}  # study -> its row of machine_measurements.csv (the last, as before)
        if mm_path.is_file():
            mm = read_csv_table(mm_path)
            require_columns(mm, ("subject_id", "study_id"), mm_path)
            tables["machine_measurements"] = mm
            rows_of = dict(zip(mm["study_id"].astype(str), range(len(mm))))

        def study_meta(study: str) -> dict[str, Any]:
            """A study's report and intervals, made when its reference is pulled (never 800k dicts at once)."""
            if mm is None or study not in rows_of:
                return {}
            row = mm.iloc[rows_of[study]]
            said = statements(row)
            entry: dict[str, Any] = {"report": " ".join(said), "statements": said}
            for col in MEASUREMENTS:
                if col in row and row[col] == row[col]:
                    entry[col] = float(row[col])
            return entry

        def refs() -> Iterator[RecordRef]:
            for study, subject, hea, when in rows():
                yield RecordRef(record_id=study, path=hea, patient_id=subject,
                                time=pd.Timestamp(when).isoformat() if isinstance(when, str) and when else None,
                                meta=study_meta(study))

        return Scan(refs=refs(), tables=tables)

    def read(self, ref: RecordRef) -> Record:
        record, _ = read_wfdb(ref.path, record_id=ref.record_id)
        return record
