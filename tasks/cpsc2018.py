"""The nine classes of the China Physiological Signal Challenge 2018 (Liu et al., J Med Imaging Health Inform 2018).

``cpsc2018.classes`` (multi-label): Normal, AF (atrial fibrillation), I-AVB (first-degree atrioventricular block),
LBBB and RBBB (left and right bundle branch block), PAC and PVC (premature atrial and ventricular contraction), STD
and STE (ST-segment depression and elevation): the up to three labels ``REFERENCE.csv`` gives each recording (the
``cpsc2018`` layout keeps them in the record's meta, ``labels``). Split by patient, which here is by record: the
release has no patient ids and publishes no split of its training set.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError, label_frame

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

CLASSES = ("Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE")
CITATION = ("Liu et al., An open access database for evaluating the algorithms of electrocardiogram rhythm and "
            "morphology abnormality detection, J Med Imaging Health Inform 8, 1368-1373 (2018)")


def _labels(meta: Any) -> list[str] | None:
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    if not isinstance(meta, dict) or not meta.get("labels"):
        return None
    return [str(label) for label in meta["labels"]]


def class_labels(source: TaskSource) -> pd.DataFrame:
    """Multi-hot frame of the nine classes per record with at least one label."""

    frame = source.records
    if "meta" not in frame.columns:
        raise TaskDataError(f"dataset {source.name!r}: its records lack column 'meta'")
    rows: dict[str, list[float]] = {}
    for record_id, meta in zip(frame["record_id"].astype(str), frame["meta"]):
        labels = _labels(meta)
        if labels is None:
            continue
        unknown = sorted(set(labels) - set(CLASSES))
        if unknown:
            raise TaskDataError(f"dataset {source.name!r}: record {record_id}: label(s) {', '.join(unknown)} are "
                                f"not CPSC 2018 classes ({', '.join(CLASSES)})")
        rows[record_id] = [1.0 if name in labels else 0.0 for name in CLASSES]
    if len(frame) and not rows:
        raise TaskDataError(f"dataset {source.name!r}: no record has CPSC 2018 labels ('labels') in its meta; "
                            "ingest with --layout cpsc2018")
    return label_frame(rows, CLASSES)


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="cpsc2018.classes",
        description="CPSC 2018's nine classes: Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE (multi-label, "
                    "macro AUROC)",
        dataset="cpsc2018", task_kind="multilabel", labels="stence_bench_tasks.cpsc2018:class_labels",
        options={}, metric="auroc", split="patient", source_columns=("meta.labels",),
        card="stence_bench_tasks:cpsc2018.md", citation=CITATION, version="1",
    ))
