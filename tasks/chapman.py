"""Rhythm of the Chapman-Shaoxing and Ningbo ECGs in the four groups of Zheng et al. (Sci Data 2020).

``chapman.rhythm`` (multi-class): ``SB`` (sinus bradycardia), ``AFIB`` (atrial fibrillation or flutter), ``GSVT``
(supraventricular tachycardia, atrial tachycardia, sinus tachycardia, AV node re-entrant and AV re-entrant
tachycardia, sinus-atrium-to-atrial wandering rhythm) and ``SR`` (sinus rhythm or sinus arrhythmia), from each
record's SNOMED-CT ``dx`` codes (the ``chapman-ningbo`` and ``cinc2021`` layouts keep them in the record's meta). A
record whose codes fall in no group, or in more than one, has no label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError, label_frame

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

#: group -> SNOMED-CT codes (as in the Challenge 2021's dx_mapping tables, shipped in stence_bench/data/snomed)
GROUPS: dict[str, tuple[str, ...]] = {
    "SB": ("426177001",),                                      # sinus bradycardia
    "AFIB": ("164889003", "164890007"),                        # atrial fibrillation, atrial flutter
    "GSVT": ("426761007", "713422000", "427084000", "251166008", "233897008", "17366009"),
    # supraventricular, atrial, sinus tachycardia; AVNRT; AVRT; sinus atrium to atrial wandering rhythm
    "SR": ("426783006", "427393009"),                          # sinus rhythm, sinus arrhythmia
}
CITATION = ("Zheng et al., A 12-lead electrocardiogram database for arrhythmia research covering more than 10,000 "
            "patients, Sci Data 7, 48 (2020); Zheng et al., A large scale 12-lead electrocardiogram database for "
            "arrhythmia study, PhysioNet (2022)")


def rhythm_labels(source: TaskSource) -> pd.DataFrame:
    """One-hot frame of the four groups (SB, AFIB, GSVT, SR) per record with exactly one group."""

    from stence_bench_tasks.cinc2021 import _codes

    frame = source.records
    if "meta" not in frame.columns:
        raise TaskDataError(f"dataset {source.name!r}: its records lack column 'meta'")
    group_of = {code: group for group, codes in GROUPS.items() for code in codes}
    names = list(GROUPS)
    rows: dict[str, list[float]] = {}
    seen_codes = False
    for record_id, meta in zip(frame["record_id"].astype(str), frame["meta"]):
        codes = _codes(meta)
        if codes is None:
            continue
        seen_codes = True
        groups = {group_of[c] for c in codes if c in group_of}
        if len(groups) == 1:
            (group,) = groups
            rows[record_id] = [1.0 if name == group else 0.0 for name in names]
    if len(frame) and not seen_codes:
        raise TaskDataError(f"dataset {source.name!r}: no record has SNOMED-CT codes ('dx') in its meta; ingest "
                            "with --layout chapman-ningbo or cinc2021")
    return label_frame(rows, names)


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="chapman.rhythm",
        description="rhythm in Zheng et al.'s four groups: SB, AFIB, GSVT, SR (multi-class, macro AUROC)",
        dataset="chapman-ningbo", task_kind="multiclass", labels="stence_bench_tasks.chapman:rhythm_labels",
        options={}, metric="auroc", split="patient", source_columns=("meta.dx",),
        card="stence_bench_tasks:chapman.md", citation=CITATION, version="1",
    ))
