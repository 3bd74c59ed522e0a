"""``echonext``: the EchoNext layout (PhysioNet, restricted access): ``echonext_metadata_100k.csv`` and one NumPy array
of waveforms per split, ``EchoNext_{train,val,test}_waveforms.npy`` (and ``EchoNext_no_split_waveforms.npy`` where
present), each ``[N, 1, 2500, 12]`` float64: 10 s at 250 Hz, leads I, II, III, aVR, aVL, aVF, V1-V6.

The i-th metadata row of a split (in file order) is the i-th ECG of that split's array. A record's id is its
``ecg_key``, its patient its ``patient_key``, and its meta carries the publisher's ``split`` (``train``, ``val``,
``test`` or ``no_split``), which tasks with ``split = "official"`` use. The metadata table is kept in the store
(table ``echonext_metadata``) for the label functions (``stence_bench_tasks.echonext``).

The publisher removed baseline wander (median filters), clipped each lead and z-scored it with constants of its
training set before publishing: the samples are not millivolts and millivolts cannot be recovered. The layout says
so (``units = "z-score"``), the store records it, and contracts or objectives that assume millivolts are refused
(``stence_bench.data.view_cache.check_units``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ...errors import StenceBenchError
from ...specs import TWELVE_LEADS
from ..records import BadRecord, Record
from .base import Layout, RecordRef, Scan, flag_labels, require_columns

if TYPE_CHECKING:
    from ...task_data import TaskSource

FS = 250.0
N_SAMPLES = 2500
#: the splits of the publication, in the order their files are listed; ``no_split`` ECGs belong to patients of the
#: validation or test set
SPLITS = ("train", "val", "test", "no_split")
METADATA_NAMES = ("echonext_metadata_100k.csv", "EchoNext_metadata_100k.csv")
#: the publisher's echo-derived labels: 11 findings and their composite (structural heart disease)
FLAGS = (
    "lvef_lte_45_flag", "lvwt_gte_13_flag", "aortic_stenosis_moderate_or_greater_flag",
    "aortic_regurgitation_moderate_or_greater_flag", "mitral_regurgitation_moderate_or_greater_flag",
    "tricuspid_regurgitation_moderate_or_greater_flag", "pulmonary_regurgitation_moderate_or_greater_flag",
    "rv_systolic_dysfunction_moderate_or_greater_flag", "pericardial_effusion_moderate_large_flag",
    "pasp_gte_45_flag", "tr_max_gte_32_flag", "shd_moderate_or_greater_flag",
)
#: demographics kept in each record's meta when the metadata has them
META_COLUMNS = ("age_at_ecg", "sex", "acquisition_year")


def waveform_file(split: str) -> str:
    return f"EchoNext_{split}_waveforms.npy"


@functools.lru_cache(maxsize=8)
def _array(path: str, size: int, mtime_ns: int) -> np.ndarray:
    """The split's array, memory-mapped once per process (keyed by size and mtime: a replaced file is opened anew)."""
    return np.load(path, mmap_mode="r")


def open_waveforms(path: str | os.PathLike[str]) -> np.ndarray:
    st = os.stat(path)
    return _array(os.fspath(path), st.st_size, st.st_mtime_ns)


def find_metadata(source: Path, name: str | None) -> Path:
    candidates = [name] if name else list(METADATA_NAMES)
    for candidate in candidates:
        if (source / candidate).is_file():
            return source / candidate
    raise StenceBenchError(f"{source}: no {' or '.join(candidates)}; an EchoNext folder holds the metadata CSV and "
                           f"{', '.join(waveform_file(s) for s in SPLITS[:3])}")


class EchoNextLayout(Layout):
    """EchoNext. Option ``metadata``: the metadata CSV's name (default: ``echonext_metadata_100k.csv`` or
    ``EchoNext_metadata_100k.csv``, whichever is there)."""

    name: ClassVar[str] = "echonext"
    units: ClassVar[str] = "z-score"
    label_source: ClassVar[str] = "the 12 echocardiographic flags of the metadata set to 1"
    metadata: str | None = None

    def scan(self, source: Path) -> Scan:
        meta_path = find_metadata(source, self.metadata)
        table = pd.read_csv(meta_path)
        require_columns(table, ("ecg_key", "patient_key", "split"), meta_path)
        split_text = table["split"].astype("string").str.strip()
        unknown = sorted(set(split_text.dropna()) - set(SPLITS))
        if unknown or split_text.isna().any():
            bad = unknown[0] if unknown else "(empty)"
            raise StenceBenchError(f"{meta_path}: split {bad!r} is not one of {', '.join(SPLITS)}")
        extra = [c for c in (*FLAGS, *META_COLUMNS) if c in table.columns]
        refs: list[RecordRef] = []
        for split in SPLITS:
            rows = table[split_text == split]
            if not len(rows):
                continue
            path = source / waveform_file(split)
            if not path.is_file():
                if split == "no_split":
                    continue  # optional: its ECGs are in no split, their patients are validation or test patients
                raise StenceBenchError(f"{path}: not found; {meta_path.name} lists {len(rows)} {split} ECG(s)")
            self._check_array(path, len(rows))
            values = {c: rows[c].tolist() for c in extra}
            for i, (ecg, patient) in enumerate(zip(rows["ecg_key"].tolist(), rows["patient_key"].tolist())):
                meta: dict[str, Any] = {"split": split, "row": i}
                for column, column_values in values.items():
                    value = column_values[i]
                    if value == value and value is not None:  # not NaN
                        meta[column] = value.item() if hasattr(value, "item") else value
                refs.append(RecordRef(record_id=_key(ecg), path=os.fspath(path), files=(os.fspath(path),),
                                      patient_id=_key(patient) if patient == patient else None, meta=meta))
        if not refs:
            raise StenceBenchError(f"{meta_path}: lists no ECG")
        return Scan(refs=refs, tables={"echonext_metadata": table})

    @staticmethod
    def _check_array(path: Path, rows: int) -> None:
        try:
            array = open_waveforms(path)
        except (OSError, ValueError) as exc:
            raise StenceBenchError(f"{path}: not a readable NumPy array: {exc}") from None
        if array.ndim != 4 or array.shape[1] != 1 or array.shape[3] != len(TWELVE_LEADS):
            raise StenceBenchError(f"{path}: shape {array.shape}, expected [N, 1, samples, 12] as published")
        if array.shape[0] != rows:
            raise StenceBenchError(f"{path}: {array.shape[0]} ECGs, but the metadata lists {rows} for this split: "
                                   "the rows of each split must match its array one to one")

    def read(self, ref: RecordRef) -> Record:
        row = int(ref.meta["row"])
        try:
            x = np.asarray(open_waveforms(ref.path)[row, 0], dtype=np.float32)  # [samples, 12]
        except (OSError, ValueError, IndexError) as exc:
            raise BadRecord(ref.path, "unreadable", f"row {row}: {type(exc).__name__}: {exc}") from None
        signal = np.ascontiguousarray(x.T)
        if not np.isfinite(signal).any():
            raise BadRecord(ref.path, "empty signal", f"row {row} holds no finite sample")
        return Record(record_id=ref.record_id, fs=FS, leads=TWELVE_LEADS, source=ref.path, signal=signal,
                      files=(ref.path,))

    def labels(self, source: TaskSource) -> list[list[str]]:
        return flag_labels(source, FLAGS)


def _key(value: Any) -> str:
    """``ecg_key`` / ``patient_key`` as text: ``123`` whether the CSV gave ``123`` or ``123.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
