"""``code15``: the CODE-15% layout (Ribeiro et al., Zenodo 4916206): ``exams.csv`` and HDF5 shards
``exams_part{0..17}.hdf5``, each holding ``exam_id`` (``[N]``) and ``tracings`` (``[N, 4096, 12]`` float32, 400 Hz,
leads DI, DII, DIII, AVR, AVL, AVF, V1-V6).

A record is an exam: its id the ``exam_id``, its patient the ``patient_id`` of ``exams.csv``; its meta carries
age, sex and the six abnormalities (``1dAVb``, ``RBBB``, ``LBBB``, ``SB``, ``ST``, ``AF``), which the ``code15.*``
tasks read from the store's ``exams`` table. Exams of 7 s were zero-padded (centred) to 4096 samples by the
publisher: the padding (leading and trailing samples that are zero on every lead) is cut off, so a record holds
what was recorded; an exam that is zero throughout is quarantined. The values are taken as millivolts, as the
PhysioNet/CinC Challenge 2025 (whose organisers include CODE-15%'s authors) converts them (gain 1000 per mV); the
dataset's README speaks of a "1e-4 V" scale: option ``mv_per_unit`` rescales if a user's copy differs.
An ``exam_id`` of a shard that ``exams.csv`` does not list is quarantined (except ``0``, which is no exam: filler
rows are skipped); a listed exam in no shard is not read.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from ...errors import StenceBenchError
from ...specs import TWELVE_LEADS
from ..records import BadRecord, Record
from .base import Layout, RecordRef, Scan, flag_labels, require_columns

if TYPE_CHECKING:
    from ...task_data import TaskSource

FS = 400.0
#: exams.csv's label columns: the six abnormalities of Ribeiro et al. (Nat Commun 2020)
ABNORMALITIES = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")
EXAM_COLUMNS = ("exam_id", "patient_id")
META_COLUMNS = ("age", "is_male", *ABNORMALITIES, "normal_ecg")
_SHARD = re.compile(r"^exams_part(\d+)\.hdf5$")


def _h5py() -> Any:
    import h5py  # only when a CODE-15% source is read

    return h5py


@functools.lru_cache(maxsize=4)
def _shard(path: str, size: int, mtime_ns: int) -> Any:
    """An open shard, once per process (keyed by size and mtime: a replaced file is opened anew)."""
    return _h5py().File(path, "r")


def open_shard(path: str | os.PathLike[str]) -> Any:
    st = os.stat(path)
    return _shard(os.fspath(path), st.st_size, st.st_mtime_ns)


def trim_padding(x: np.ndarray) -> np.ndarray:
    """``[n_leads, n]`` without the leading and trailing samples that are zero on every lead."""
    active = np.flatnonzero(np.any(x != 0, axis=0))
    if not len(active):
        return x[:, :0]
    return x[:, active[0] : active[-1] + 1]


class Code15Layout(Layout):
    """CODE-15%. Option ``mv_per_unit``: millivolts per stored unit (default 1: the values are millivolts)."""

    name: ClassVar[str] = "code15"
    label_source: ClassVar[str] = "the six abnormalities of exams.csv set to true (1dAVb, RBBB, LBBB, SB, ST, AF)"
    mv_per_unit: float = Field(default=1.0, gt=0)

    def scan(self, source: Path) -> Scan:
        exams_path = source / "exams.csv"
        if not exams_path.is_file():
            raise StenceBenchError(f"{exams_path}: not found; a CODE-15% folder holds exams.csv and "
                                   "exams_part{0..17}.hdf5")
        exams = pd.read_csv(exams_path)
        require_columns(exams, EXAM_COLUMNS, exams_path)
        shards = sorted((p for p in source.iterdir() if _SHARD.match(p.name)), key=lambda p: int(_SHARD.match(p.name)[1]))  # type: ignore[index]
        if not shards:
            raise StenceBenchError(f"{source}: no exams_part*.hdf5 shard beside exams.csv")
        info = exams.set_index(exams["exam_id"].astype("int64"), drop=False)
        if info.index.duplicated().any():
            raise StenceBenchError(f"{exams_path}: exam_id {int(info.index[info.index.duplicated()][0])} appears twice")
        extra = [c for c in META_COLUMNS if c in exams.columns]
        refs: list[RecordRef] = []
        problems: list[tuple[RecordRef, BadRecord]] = []
        for path in shards:
            try:
                ids = np.asarray(open_shard(path)["exam_id"][:], dtype=np.int64)
                tracings = open_shard(path)["tracings"]
            except (OSError, KeyError) as exc:
                raise StenceBenchError(f"{path}: not a CODE-15% shard (datasets exam_id and tracings): {exc}") from None
            if tracings.ndim != 3 or tracings.shape[0] != len(ids) or tracings.shape[2] != len(TWELVE_LEADS):
                raise StenceBenchError(f"{path}: tracings has shape {tracings.shape}, expected "
                                       f"[{len(ids)}, samples, 12] as published")
            for row, exam in enumerate(ids.tolist()):
                ref = RecordRef(record_id=str(exam), path=os.fspath(path), files=(os.fspath(path),),
                                meta={"row": row})
                if exam not in info.index:
                    if exam == 0:  # not an exam id: a filler row
                        continue
                    problems.append((ref, BadRecord(os.fspath(path), "unknown exam",
                                                    f"exam_id {exam} (row {row}) is not in exams.csv")))
                    continue
                entry = info.loc[exam]
                patient = entry["patient_id"]
                ref.patient_id = str(int(patient)) if patient == patient else None
                for column in extra:
                    value = entry[column]
                    if value == value:
                        ref.meta[column] = value.item() if hasattr(value, "item") else value
                refs.append(ref)
        return Scan(refs=refs, problems=problems, tables={"exams": exams})

    def read(self, ref: RecordRef) -> Record:
        row = int(ref.meta["row"])
        try:
            x = np.asarray(open_shard(ref.path)["tracings"][row], dtype=np.float32)  # [samples, 12]
        except (OSError, KeyError, ValueError) as exc:
            raise BadRecord(ref.path, "unreadable", f"row {row}: {type(exc).__name__}: {exc}") from None
        signal = trim_padding(np.ascontiguousarray(x.T))
        if signal.shape[1] == 0:
            raise BadRecord(ref.path, "empty signal", f"exam {ref.record_id} (row {row}) is zero on every lead")
        if self.mv_per_unit != 1.0:
            signal = signal * np.float32(self.mv_per_unit)
        return Record(record_id=ref.record_id, fs=FS, leads=TWELVE_LEADS, source=ref.path, signal=signal,
                      files=(ref.path,))

    def labels(self, source: TaskSource) -> list[list[str]]:
        return flag_labels(source, ABNORMALITIES)
