"""``dicom``: a folder of DICOM files: 12-lead ECG waveforms become records; X-ray angiograms are listed.

ECGs (any waveform SOP class with a multiplex group) are read in physical units with their lead names; the
multiplex group is chosen by ``--option group=rhythm|median``. Angiograms (Modality XA) are paired data, not
ECGs: each is listed in the store's ``angiography`` table (patient, study, frames, frame time, angles, path),
and its frames are read on demand by :func:`stence_bench.data.dicom.read_angiography`
(``read_angiography(store.path(row.path))``: the path is relative to the source folder). Any other file is
quarantined with the reason.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError

from ..dicom import ECG_SOP_PREFIX, XA_SOP_CLASSES, as_float, file_problem, not_an_ecg, read_dicom_ecg
from ..records import BadRecord, Record
from .base import Layout, RecordRef, Scan

_HEADER_TAGS = ["Modality", "SOPClassUID", "SOPInstanceUID", "PatientID", "StudyInstanceUID", "NumberOfFrames",
                "Rows", "Columns", "FrameTime", "PositionerPrimaryAngle", "PositionerSecondaryAngle",
                "AcquisitionDateTime", "StudyDate", "StudyTime"]


def _dicom_files(source: Path) -> list[str]:
    found = []
    for folder, _, names in os.walk(source):
        found += [os.path.join(folder, n) for n in names if n.lower().endswith((".dcm", ".dicom"))]
    return sorted(found)


class DicomLayout(Layout):
    """DICOM ECG waveforms (records) and XA angiograms (the ``angiography`` table) below the source folder."""

    name: ClassVar[str] = "dicom"
    label_source: ClassVar[str] = ""  # no labels
    group: str = "rhythm"

    def scan(self, source: Path) -> Scan:
        with warnings.catch_warnings():  # pydicom warns of odd values as it reads them: the reasons say what is wrong
            warnings.simplefilter("ignore")
            return self._scan(source)

    def _scan(self, source: Path) -> Scan:
        files = [str(source)] if source.is_file() else _dicom_files(source)
        base = source.parent if source.is_file() else source
        refs: list[RecordRef] = []
        problems: list[tuple[RecordRef, BadRecord]] = []
        angiograms: list[dict[str, Any]] = []
        for path in files:
            record_id = Path(os.path.relpath(path, base)).with_suffix("").as_posix()
            ref = RecordRef(record_id=record_id, path=path, files=(path,))
            try:
                ds = pydicom.dcmread(path, specific_tags=_HEADER_TAGS, force=False)
            except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
                problems.append((ref, file_problem(path) or BadRecord(path, "not DICOM", f"{type(exc).__name__}: {exc}")))
                continue
            sop = str(ds.get("SOPClassUID", ""))
            modality = str(ds.get("Modality", ""))
            patient = str(ds.get("PatientID", "") or "") or None
            if sop.startswith(ECG_SOP_PREFIX) or modality == "ECG":
                ref.patient_id = patient
                refs.append(ref)
            elif modality == "XA" or sop in XA_SOP_CLASSES:
                angiograms.append({  # the path relative to the source: ECGStore.path() opens it from anywhere
                    "path": Path(os.path.relpath(path, base)).as_posix(), "record_id": record_id, "patient_id": patient,
                    "study_uid": str(ds.get("StudyInstanceUID", "")), "sop_uid": str(ds.get("SOPInstanceUID", "")),
                    "n_frames": int(as_float(ds.get("NumberOfFrames")) or 1), "rows": ds.get("Rows"),
                    "columns": ds.get("Columns"), "frame_time_ms": as_float(ds.get("FrameTime")),
                    "primary_angle": as_float(ds.get("PositionerPrimaryAngle")),
                    "secondary_angle": as_float(ds.get("PositionerSecondaryAngle")),
                })
            else:  # a file cut short often reads as one without Modality or SOP class: the full read says which
                problems.append((ref, file_problem(path) or not_an_ecg(path, modality, sop)))
        tables = {"angiography": pd.DataFrame(angiograms)} if angiograms else {}
        return Scan(refs=refs, problems=problems, tables=tables)

    def read(self, ref: RecordRef) -> Record:
        return read_dicom_ecg(ref.path, group=self.group, record_id=ref.record_id)
