"""``mimic-iv-ecg``: the MIMIC-IV-ECG layout: ``files/pNNNN/pXXXXXXXX/sXXXXXXXX/XXXXXXXX.hea``, ``record_list.csv`` and
``machine_measurements.csv`` (machine reports and intervals), both kept in the store.

A study is one ECG: its record id is the study id, its patient the subject id, its time ``ecg_time``. Without
``record_list.csv`` the folders are walked and the ids read from the path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from ..records import Record
from ..wfdb_io import read_wfdb
from .base import Layout, RecordRef, Scan, find_headers, require_columns

_PATH = re.compile(r"p(\d+)/s(\d+)/[^/]+\.hea$")
MEASUREMENTS = ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis")


def _report(row: pd.Series) -> str:
    parts = [str(row[c]).strip() for c in row.index if c.startswith("report_") and isinstance(row[c], str)]
    return " ".join(p for p in parts if p)


class MimicIvEcgLayout(Layout):
    """MIMIC-IV-ECG. A study's machine report and intervals go into its record's meta."""

    name: ClassVar[str] = "mimic-iv-ecg"

    def scan(self, source: Path) -> Scan:
        tables: dict[str, pd.DataFrame] = {}
        list_path = source / "record_list.csv"
        if list_path.is_file():
            records = pd.read_csv(list_path)
            require_columns(records, ("subject_id", "study_id", "path"), list_path)
            tables["record_list"] = records
            rows = [(str(r.study_id), str(r.subject_id), os.path.join(source, f"{r.path}.hea"),
                     getattr(r, "ecg_time", None)) for r in records.itertuples(index=False)]
        else:
            rows = []
            for hea in find_headers(source / "files" if (source / "files").is_dir() else source):
                m = _PATH.search(Path(hea).as_posix())
                if m:
                    rows.append((m.group(2), m.group(1), hea, None))
        measurements: dict[str, dict[str, Any]] = {}
        mm_path = source / "machine_measurements.csv"
        if mm_path.is_file():
            mm = pd.read_csv(mm_path)
            require_columns(mm, ("subject_id", "study_id"), mm_path)
            tables["machine_measurements"] = mm
            for _, row in mm.iterrows():
                entry: dict[str, Any] = {"report": _report(row)}
                for col in MEASUREMENTS:
                    if col in row and row[col] == row[col]:
                        entry[col] = float(row[col])
                measurements[str(row["study_id"])] = entry
        refs = [
            RecordRef(record_id=study, path=hea, patient_id=subject,
                      time=pd.Timestamp(when).isoformat() if isinstance(when, str) and when else None,
                      meta=measurements.get(study, {}))
            for study, subject, hea, when in rows
        ]
        return Scan(refs=refs, tables=tables)

    def read(self, ref: RecordRef) -> Record:
        record, _ = read_wfdb(ref.path, record_id=ref.record_id)
        return record
