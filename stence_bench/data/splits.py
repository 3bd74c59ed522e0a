"""Patient-level splits. A patient in two splits is an error, never a warning.

PTB-XL's ``strat_fold`` gives the benchmark's split (folds 1-8 train, 9 validation, 10 test); elsewhere patients
are assigned by a seeded hash of their id, so a patient's split never depends on which other records exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import xxhash

from ..errors import StenceBenchError

SPLITS = ("train", "val", "test")


class LeakageError(StenceBenchError):
    """The same patient in two splits."""


def patients_or_records(patients: pd.Series) -> pd.Series:
    """Patient id per record; a record with no known patient stands for its own patient."""
    known = patients.astype("string").fillna("")
    own = pd.Series([f"record:{rid}" for rid in patients.index], index=patients.index, dtype="string")
    return known.where(known != "", own)


def strat_fold_split(folds: pd.Series, *, train: Sequence[int] = tuple(range(1, 9)), val: Sequence[int] = (9,),
                     test: Sequence[int] = (10,)) -> pd.Series:
    """Split records by their ``strat_fold`` (PTB-XL: 1-8 train, 9 val, 10 test). Unknown folds are an error."""
    mapping = {**{f: "train" for f in train}, **{f: "val" for f in val}, **{f: "test" for f in test}}
    split = folds.map(mapping)
    if split.isna().any():
        bad = folds[split.isna()]
        raise StenceBenchError(f"strat_fold {bad.iloc[0]} of record {bad.index[0]!r} is not one of {sorted(mapping)}")
    return split.astype("string")


def patient_split(patients: pd.Series, *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> pd.Series:
    """Assign each patient (and so all their records) to train / val / test by a seeded hash of the patient id."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    edges = (fractions[0], fractions[0] + fractions[1])
    ids = patients_or_records(patients)

    def assign(patient: str) -> str:
        u = xxhash.xxh3_64_intdigest(f"{seed}:{patient}".encode()) / 2**64
        return "train" if u < edges[0] else ("val" if u < edges[1] else "test")

    return ids.map(assign).astype("string")


def check_patient_disjoint(split: pd.Series, patients: pd.Series) -> None:
    """Raise :class:`LeakageError` naming a patient whose records fall in two splits."""
    frame = pd.DataFrame({"split": split, "patient": patients_or_records(patients.reindex(split.index))})
    per_patient = frame.groupby("patient")["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if len(leaking):
        patient = leaking.index[0]
        rows = frame[frame["patient"] == patient]
        where = ", ".join(f"{s} (record {rid})" for rid, s in rows.drop_duplicates("split")["split"].items())
        raise LeakageError(f"patient {patient!r} is in more than one split: {where}; "
                           f"{len(leaking)} patient(s) leak in all")
