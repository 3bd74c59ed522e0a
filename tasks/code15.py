"""The six ECG abnormalities of CODE-15% (Ribeiro et al., Nat Commun 2020; Zenodo 4916206).

``code15.abnormalities``: 1st degree AV block (``1dAVb``), right and left bundle branch block (``RBBB``,
``LBBB``), sinus bradycardia (``SB``), sinus tachycardia (``ST``) and atrial fibrillation (``AF``), as one
multi-label task; the labels are the columns of ``exams.csv`` (kept in the store as table ``exams``), joined on
``exam_id``. Split by patient (CODE-15% publishes no split; its test set, CODE-test, is a separate dataset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "exams"
CLASSES = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")
CITATION = ("Ribeiro et al., Automatic diagnosis of the 12-lead ECG using a deep neural network, Nat Commun 11, 1760 "
            "(2020); Ribeiro et al., CODE-15%: a large scale annotated dataset of 12-lead ECGs, Zenodo (2021)")
_TRUE = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}


def abnormality_labels(source: TaskSource, *, classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """0/1 per class (``True``/``False`` in ``exams.csv``) per record (= ``exam_id``); a value that is neither is
    a :class:`TaskDataError` naming the column."""
    import pandas as pd

    table = source.table(TABLE, ["exam_id", *classes])
    frame = pd.DataFrame(index=pd.Index(table["exam_id"].astype("int64").astype(str).to_numpy(), name="record_id"))
    for column in classes:
        text = table[column].astype("string").str.strip().str.lower()
        values = text.map(_TRUE)
        bad = values.isna() & text.notna()
        if bad.any():
            raise TaskDataError(f"dataset {source.name!r}: table {TABLE!r} column {column!r}: "
                                f"{str(table[column][bad].iloc[0])!r} is not True/False")
        frame[column] = values.to_numpy(dtype=float)
    known = set(source.records["record_id"].astype(str))
    return frame[frame.index.isin(known)].sort_index()


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="code15.abnormalities",
        description="CODE-15%'s six abnormalities: 1dAVb, RBBB, LBBB, SB, ST, AF (multi-label, macro AUROC)",
        dataset="code15", task_kind="multilabel", labels="stence_bench_tasks.code15:abnormality_labels",
        options={}, metric="auroc", split="patient",
        source_columns=(f"{TABLE}.exam_id", *(f"{TABLE}.{c}" for c in CLASSES)),
        card="stence_bench_tasks:code15.md", citation=CITATION, version="1",
    ))
