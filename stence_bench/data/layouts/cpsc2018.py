"""``cpsc2018``: the China Physiological Signal Challenge 2018 training set in its own release (Liu et al., J Med
Imaging Health Inform 8, 1368 (2018); http://2018.icbeb.org/Challenge.html): ``REFERENCE.csv`` and one MATLAB file
per recording, ``A0001.mat`` ... ``A6877.mat`` (in ``TrainingSet1`` to ``TrainingSet3`` or one folder).

Each ``.mat`` holds one struct ``ECG`` with fields ``sex`` (``Male`` / ``Female``), ``age`` (years; NaN for a few)
and ``data``, a ``[12, N]`` double array in millivolts (leads I, II, III, aVR, aVL, aVF, V1-V6; 500 Hz; 6 to 60 s).
``REFERENCE.csv`` has the columns ``Recording``, ``First_label``, ``Second_label`` and ``Third_label``: up to three
of the nine classes, numbered 1 Normal, 2 AF, 3 I-AVB, 4 LBBB, 5 RBBB, 6 PAC, 7 PVC, 8 STD, 9 STE. A record's id is
its recording name; the release has no patient ids (each record is its own patient) and no published split of its
training set (its test set was kept hidden).

The PhysioNet/CinC Challenges 2020 and 2021 republish these recordings under the same names (their CPSC part), in
WFDB at 1000 units per mV: ``cinc2021`` declares that it contains ``cpsc2018``. Where a recording's values are
whole microvolts (as that conversion implies) the layout stores them the same way, int16 at 1000 per mV, so that
the two copies of a recording have one signal checksum and the cross-dataset overlap guard finds them; other values
are stored as float32 millivolts. A ``.mat`` that ``REFERENCE.csv`` does not list is quarantined; a listed
recording without its file is not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ...errors import StenceBenchError
from ...specs import TWELVE_LEADS
from ..records import BadRecord, Record
from .base import Layout, RecordRef, Scan, files_below, require_columns

if TYPE_CHECKING:
    from ...task_data import TaskSource

FS = 500.0
REFERENCE = "REFERENCE.csv"
REFERENCE_COLUMNS = ("Recording", "First_label", "Second_label", "Third_label")
#: REFERENCE.csv's class numbers -> the challenge's abbreviations
CLASSES: dict[int, str] = {1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD",
                           9: "STE"}
#: digital units per mV where a recording's values are whole microvolts (the Challenges' WFDB copies' gain)
GAIN = 1000.0



def reference_path(source: Path) -> Path:
    """``REFERENCE.csv`` of the source: in the folder, else the one file of that name below it."""
    direct = source / REFERENCE
    if direct.is_file():
        return direct
    found = sorted(source.rglob(REFERENCE))
    if len(found) != 1:
        where = "none" if not found else ", ".join(str(p) for p in found)
        raise StenceBenchError(f"{source}: a CPSC 2018 folder holds one {REFERENCE} (Recording, First_label, "
                               f"Second_label, Third_label) and A0001.mat ...; found {where}")
    return found[0]


def reference_labels(table: pd.DataFrame, path: Path | str) -> dict[str, list[str]]:
    """Recording -> its classes in the order listed (``["AF", "PVC"]``); a number that is no class is an error
    naming the file, the recording and the column."""
    out: dict[str, list[str]] = {}
    for row in table.itertuples(index=False):
        name = str(row.Recording).strip()
        labels: list[str] = []
        for column in REFERENCE_COLUMNS[1:]:
            value = getattr(row, column)
            if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
                continue
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if number not in CLASSES:
                raise StenceBenchError(f"{path}: recording {name}: {column} {value!r} is not a class number 1-9")
            label = CLASSES[int(number)]
            if label not in labels:
                labels.append(label)
        if name in out:
            raise StenceBenchError(f"{path}: recording {name} appears twice")
        out[name] = labels
    return out


def _text(value: Any) -> str | None:
    """A MATLAB char field as text (``array(['Male'])`` -> ``Male``)."""
    array = np.asarray(value)
    if array.dtype.kind in "US":
        text = "".join(str(v) for v in array.ravel()).strip()
        return text or None
    return None


def _number(value: Any) -> float | None:
    array = np.asarray(value, dtype=object).ravel()
    if array.size != 1:
        return None
    try:
        number = float(array[0])
    except (TypeError, ValueError):
        return None
    return number if number == number else None


def read_cpsc_mat(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``(data [12, N] float64 mV, {"age", "sex"})`` of one CPSC 2018 ``.mat``; a file without the ``ECG``
    struct or its ``data`` is a :class:`BadRecord`."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
    except (MatReadError, ValueError, OSError, NotImplementedError) as exc:
        raise BadRecord(path, "unreadable", f"not a MATLAB v4/v5 file: {exc}") from None
    ecg = mat.get("ECG")
    if ecg is None or getattr(ecg, "dtype", None) is None or ecg.dtype.names is None or "data" not in ecg.dtype.names:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise BadRecord(path, "no ECG struct", f"expected a struct 'ECG' with field 'data', found {keys}")
    entry = ecg.ravel()[0]
    data = np.asarray(entry["data"], dtype=np.float64)
    info: dict[str, Any] = {}
    if "age" in ecg.dtype.names:
        info["age"] = _number(entry["age"])
    if "sex" in ecg.dtype.names:
        info["sex"] = _text(entry["sex"])
    return data, info


class Cpsc2018Layout(Layout):
    """CPSC 2018's training set as released (``REFERENCE.csv`` and ``A*.mat``)."""

    name: ClassVar[str] = "cpsc2018"
    label_source: ClassVar[str] = "the classes of REFERENCE.csv (Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE)"

    def scan(self, source: Path) -> Scan:
        path = reference_path(source)
        table = pd.read_csv(path, dtype={"Recording": str})
        require_columns(table, REFERENCE_COLUMNS[:2], path)
        for column in REFERENCE_COLUMNS[2:]:
            if column not in table.columns:
                table[column] = np.nan
        labels = reference_labels(table, path)
        files = files_below(source, ".mat")
        if not files:
            raise StenceBenchError(f"{source}: no .mat recording beside {REFERENCE} (A0001.mat ...)")
        refs: list[RecordRef] = []
        problems: list[tuple[RecordRef, BadRecord]] = []
        for name, file in files.items():
            ref = RecordRef(record_id=name, path=file, files=(file,))
            if name not in labels:
                problems.append((ref, BadRecord(file, "unknown recording", f"{name} is not in {REFERENCE}")))
                continue
            ref.meta = {"labels": labels[name]}
            refs.append(ref)
        return Scan(refs=refs, problems=problems, tables={"reference": table})

    def read(self, ref: RecordRef) -> Record:
        data, info = read_cpsc_mat(ref.path)
        if data.ndim != 2 or data.shape[0] != len(TWELVE_LEADS):
            raise BadRecord(ref.path, "wrong shape", f"ECG.data has shape {data.shape}, expected [12, samples]")
        meta = {key: value for key, value in info.items() if value is not None}
        micro = data * GAIN
        whole = np.round(micro)
        if (np.isfinite(data).all() and np.abs(whole).max(initial=0) <= 32767
                and np.allclose(micro, whole, rtol=0, atol=1e-6)):
            return Record(record_id=ref.record_id, fs=FS, leads=TWELVE_LEADS, source=ref.path,
                          digital=whole.astype(np.int16), baseline=np.zeros(len(TWELVE_LEADS), np.float32),
                          gain=np.full(len(TWELVE_LEADS), GAIN, np.float32), files=(ref.path,), meta=meta)
        return Record(record_id=ref.record_id, fs=FS, leads=TWELVE_LEADS, source=ref.path,
                      signal=data.astype(np.float32), files=(ref.path,), meta=meta)

    def labels(self, source: TaskSource) -> list[list[str]]:
        return [[str(label) for label in (meta.get("labels") or [])] for meta in source.records["meta"]]
