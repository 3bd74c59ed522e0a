"""Small generated sources in real file layouts, for tests and benchmarks.

No physiology here (that is the synthetic cohort's job): band-limited noise written as valid WFDB records, so
readers, ingest and stores can be exercised at any scale without downloading anything. ``wfdb.rdrecord`` reads
every file written here (tests check it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .wfdb_io import write_wfdb


def noise_ecg(rng: np.random.Generator, n_leads: int, n_samples: int, fs: float) -> np.ndarray:
    """Smooth noise of ECG-like amplitude (about 0.3 mV), float32 ``[n_leads, n_samples]``."""
    white = rng.standard_normal((n_leads, n_samples + 8)).astype(np.float32)
    csum = np.cumsum(white, axis=1, dtype=np.float64)
    smooth = (csum[:, 8:] - csum[:, :-8])[:, :n_samples] / 8  # a moving average of 8 samples
    return (smooth * 0.8).astype(np.float32)


def write_ptbxl_layout(root: str | os.PathLike[str], n_records: int, *, seed: int = 0, rates: Sequence[int] = (500,),
                       records_per_patient: int = 2, seconds: float = 10.0) -> pd.DataFrame:
    """A PTB-XL-layout folder of ``n_records`` generated records: ``ptbxl_database.csv`` (with ``strat_fold`` by
    patient), ``scp_statements.csv`` (a few real statements) and ``records500/`` and/or ``records100/``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    statements = pd.DataFrame(
        {"description": ["normal ECG", "sinus rhythm", "anterior myocardial infarction", "left ventricular hypertrophy"],
         "diagnostic": [1.0, None, 1.0, 1.0], "form": [None, None, None, None], "rhythm": [None, 1.0, None, None],
         "diagnostic_class": ["NORM", None, "MI", "HYP"], "diagnostic_subclass": ["NORM", None, "AMI", "LVH"]},
        index=pd.Index(["NORM", "SR", "AMI", "LVH"]),
    )
    root.mkdir(parents=True, exist_ok=True)
    statements.to_csv(root / "scp_statements.csv")
    rows = []
    for i in range(n_records):
        ecg_id = i + 1
        patient = i // records_per_patient + 1
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        names = {}
        for rate in (100, 500):
            suffix = "lr" if rate == 100 else "hr"
            names[rate] = f"records{rate}/{folder}/{ecg_id:05d}_{suffix}"
        for rate in rates:
            n = int(round(rate * seconds))
            write_wfdb(root / names[rate], noise_ecg(rng, 12, n, rate), rate, base_date="01/02/2000")
        codes = {"NORM": 100.0, "SR": 0.0} if rng.random() < 0.6 else {"AMI": 80.0, "LVH": 50.0, "SR": 0.0}
        rows.append({"ecg_id": ecg_id, "patient_id": float(patient), "age": float(rng.integers(20, 90)),
                     "sex": int(rng.integers(0, 2)), "recording_date": "2000-02-01 00:00:00",
                     "scp_codes": repr(codes), "strat_fold": int(patient % 10 + 1),
                     "filename_lr": names[100], "filename_hr": names[500]})
    database = pd.DataFrame(rows)
    database.to_csv(root / "ptbxl_database.csv", index=False)
    return database
