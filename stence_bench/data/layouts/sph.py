"""``sph``: the Shandong Provincial Hospital 12-lead ECG database (Liu et al., Sci Data 9, 272 (2022); figshare
collection 10.6084/m9.figshare.c.5779802): ``metadata.csv``, ``code.csv`` and ``records/A00001.h5`` ...

Each record is one HDF5 file named by its ``ECG_ID`` holding one dataset ``ecg`` of shape ``[12, N]`` (leads I,
II, III, aVR, aVL, aVF, V1-V6; 500 Hz; 10 to 60 s). ``metadata.csv`` has one row per record with the columns
``ECG_ID``, ``AHA_Code``, ``Patient_ID``, ``Age``, ``Sex``, ``N`` (samples) and ``Date``; ``code.csv`` (``Code``,
``Description``) names the AHA/ACC/HRS statements. A record's id is its ``ECG_ID``, its patient the ``Patient_ID``
(24,666 patients for 25,770 records), its time the ``Date``.

``AHA_Code`` lists a record's statements separated by ``;``; a statement's modifiers follow it joined by ``+``
(``50+346``). As in the publisher's own analysis code, codes 200-499 are modifiers and every other code is a
primary statement: a record's meta keeps the statements as published (``aha``) and its primary statements
(``primary``), which the layout's labels and the ``sph.statements`` task read.

The values are read as millivolts, as the public readers of the database do (torch_ecg's SPH reader returns them as
mV and multiplies by 1000 for microvolts); option ``mv_per_unit`` rescales a copy that differs. An ``.h5`` file that
``metadata.csv`` does not list is quarantined; a listed record without its file is not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from ...errors import StenceBenchError
from ...specs import TWELVE_LEADS
from ..records import BadRecord, Record
from .base import Layout, RecordRef, Scan, files_below, require_columns

if TYPE_CHECKING:
    from ...task_data import TaskSource

FS = 500.0
#: the HDF5 dataset of each record file
DATASET = "ecg"
METADATA_COLUMNS = ("ECG_ID", "AHA_Code", "Patient_ID")
#: demographics and the publisher's sample count, kept in each record's meta when present
META_COLUMNS = {"Age": "age", "Sex": "sex", "N": "n_samples", "Date": "date"}
#: modifier codes of the AHA/ACC/HRS statements (the publisher's rule: 200 <= code < 500); others are primary
MODIFIERS = range(200, 500)


def _h5py() -> Any:
    import h5py  # only when an SPH source is read

    return h5py


def is_modifier(code: str) -> bool:
    """Whether an AHA statement code is a modifier (200-499, the publisher's rule); a code that is not a whole
    number is not."""
    try:
        return int(code) in MODIFIERS
    except ValueError:
        return False


def parse_aha(text: Any) -> tuple[list[str], list[str]]:
    """``AHA_Code`` -> (the statements as published, the primary statement codes in order of first mention).

    ``"22;50+346"`` gives ``(["22", "50+346"], ["22", "50"])``: entries are split at ``;``, an entry's codes at
    ``+``, and codes 200-499 (modifiers) are no primary statement. A code that is not a whole number is kept as
    published and counted as a primary statement."""
    if text is None or (isinstance(text, float) and text != text):
        return [], []
    entries = [e.strip() for e in str(text).split(";") if e.strip()]
    primary: list[str] = []
    for entry in entries:
        for code in (c.strip() for c in entry.split("+")):
            if code and not is_modifier(code) and code not in primary:
                primary.append(code)
    return entries, primary


def _date(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return pd.Timestamp(value.strip()).isoformat()
    except ValueError:
        return None


class SphLayout(Layout):
    """SPH. Option ``mv_per_unit``: millivolts per stored unit (default 1: the values are millivolts)."""

    name: ClassVar[str] = "sph"
    label_source: ClassVar[str] = "primary AHA/ACC/HRS statements of metadata.csv's AHA_Code (modifiers left out)"
    mv_per_unit: float = Field(default=1.0, gt=0)

    def scan(self, source: Path) -> Scan:
        metadata_path = source / "metadata.csv"
        if not metadata_path.is_file():
            raise StenceBenchError(f"{metadata_path}: not found; an SPH folder holds metadata.csv, code.csv and "
                                   "records/A00001.h5 ...")
        metadata = pd.read_csv(metadata_path, dtype={"ECG_ID": str, "Patient_ID": str, "AHA_Code": str})
        require_columns(metadata, METADATA_COLUMNS, metadata_path)
        ids = metadata["ECG_ID"].str.strip()
        if ids.duplicated().any():
            raise StenceBenchError(f"{metadata_path}: ECG_ID {ids[ids.duplicated()].iloc[0]!r} appears twice")
        files = files_below(source, ".h5")
        if not files:
            raise StenceBenchError(f"{source}: no .h5 record beside metadata.csv (records/A00001.h5 ...)")
        listed = set(ids)
        refs: list[RecordRef] = []
        problems: list[tuple[RecordRef, BadRecord]] = []
        extra = {column: key for column, key in META_COLUMNS.items() if column in metadata.columns}
        for i, ecg_id in enumerate(ids):
            path = files.get(ecg_id)
            if path is None:
                continue
            row = metadata.iloc[i]
            aha, primary = parse_aha(row["AHA_Code"])
            meta: dict[str, Any] = {"aha": aha, "primary": primary}
            for column, key in extra.items():
                value = row[column]
                if value == value and value is not None:
                    meta[key] = value.item() if hasattr(value, "item") else value
            patient = row["Patient_ID"]
            refs.append(RecordRef(record_id=ecg_id, path=path, files=(path,),
                                  patient_id=patient.strip() if isinstance(patient, str) and patient.strip() else None,
                                  time=_date(row["Date"]) if "Date" in metadata.columns else None, meta=meta))
        for name, path in files.items():
            if name not in listed:
                problems.append((RecordRef(record_id=name, path=path, files=(path,)),
                                 BadRecord(path, "unknown record", f"{name} is not in metadata.csv")))
        tables = {"sph_metadata": metadata}
        codes = source / "code.csv"
        if codes.is_file():
            tables["code"] = pd.read_csv(codes, dtype=str)
        return Scan(refs=refs, problems=problems, tables=tables)

    def read(self, ref: RecordRef) -> Record:
        try:
            with _h5py().File(ref.path, "r") as fh:
                if DATASET not in fh:
                    raise BadRecord(ref.path, "no ecg dataset", f"the file holds {sorted(fh.keys())}, not '{DATASET}'")
                x = np.asarray(fh[DATASET][()], dtype=np.float32)
        except OSError as exc:
            raise BadRecord(ref.path, "unreadable", f"not an HDF5 file: {exc}") from None
        if x.ndim != 2 or x.shape[0] != len(TWELVE_LEADS):
            raise BadRecord(ref.path, "wrong shape", f"'{DATASET}' has shape {x.shape}, expected [12, samples]")
        if self.mv_per_unit != 1.0:
            x = x * np.float32(self.mv_per_unit)
        return Record(record_id=ref.record_id, fs=FS, leads=TWELVE_LEADS, source=ref.path, signal=x,
                      files=(ref.path,))

    def labels(self, source: TaskSource) -> list[list[str]]:
        return [[str(code) for code in (meta.get("primary") or [])] for meta in source.records["meta"]]
