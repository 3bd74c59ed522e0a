"""The scored classes of the PhysioNet/CinC Challenge 2021 (Reyna et al., CinC 2021), from each record's ``# Dx``.

The Challenge scored 30 SNOMED-CT codes as 26 classes: it scored four pairs as one diagnosis each (complete and
plain LBBB, complete and plain RBBB, PAC and SVPB, PVC and VPB). Classes are named and ordered as in the
Challenge's ``weights.csv``: the code, or both codes joined by ``|`` for a merged pair (the codes are those of
``dx_mapping_scored.csv``, shipped in ``stence_bench/data/snomed``). A record's labels are the classes of its
``dx`` codes (the ``cinc2021`` layout keeps them in the record's meta); a record whose codes are all unscored is
an all-negative row, as the Challenge scored it.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError, label_frame

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

#: The pairs the Challenge 2021 scored as the same diagnosis (its evaluation code's ``equivalent_classes``).
EQUIVALENT: tuple[tuple[str, str], ...] = (
    ("733534002", "164909002"),  # complete left bundle branch block / left bundle branch block
    ("713427006", "59118001"),  # complete right bundle branch block / right bundle branch block
    ("284470004", "63593006"),  # premature atrial contraction / supraventricular premature beats
    ("427172004", "17338001"),  # premature ventricular contractions / ventricular premature beats
)
CITATION = ("Reyna et al., Will two do? Varying dimensions in electrocardiography: the PhysioNet/Computing in "
            "Cardiology Challenge 2021, Computing in Cardiology 48 (2021)")


#: The 26 scored classes in the order of the Challenge's ``weights.csv`` (physionetchallenges/evaluation-2021).
CLASSES: tuple[str, ...] = (
    "164889003", "164890007", "6374002", "426627000", "733534002|164909002", "713427006|59118001", "270492004",
    "713426002", "39732003", "445118002", "164947007", "251146004", "111975006", "698252002", "426783006",
    "284470004|63593006", "10370003", "365413008", "427172004|17338001", "164917005", "47665007", "427393009",
    "426177001", "427084000", "164934002", "59931005",
)


@functools.lru_cache(maxsize=1)
def scored_classes() -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """``(class name, its SNOMED-CT codes, abbreviation)`` for the 26 scored classes, in the Challenge's order;
    checked against the shipped ``dx_mapping_scored.csv`` (every scored code in exactly one class)."""
    import csv
    from importlib.resources import files

    with (files("stence_bench.data") / "snomed" / "dx_mapping_scored.csv").open() as fh:
        abbreviation = {row["SNOMEDCTCode"].strip(): row["Abbreviation"].strip() for row in csv.DictReader(fh)}
    classes = [(name, tuple(name.split("|"))) for name in CLASSES]
    covered = sorted(code for _, codes in classes for code in codes)
    if covered != sorted(abbreviation):  # pragma: no cover - the shipped table and this list are the Challenge's
        raise RuntimeError("cinc2021: the scored classes do not cover dx_mapping_scored.csv's codes exactly")
    return tuple((name, codes, "|".join(abbreviation[c] for c in codes)) for name, codes in classes)


def _codes(meta: Any) -> list[str] | None:
    """The ``dx`` codes of a record's meta (a dict, or its JSON text as a store keeps it); None without any."""
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    if not isinstance(meta, dict) or meta.get("dx") is None:
        return None
    dx = meta["dx"]
    if isinstance(dx, str):
        dx = dx.split(",")
    return [str(code).strip() for code in dx if str(code).strip()]


def scored_labels(source: TaskSource, *, drop_unscored: bool = False) -> pd.DataFrame:
    """Multi-hot frame of the 26 scored classes, indexed by record_id; records without ``dx`` are left out
    (and, with ``drop_unscored``, records none of whose codes is scored)."""

    frame = source.records
    if "meta" not in frame.columns or "record_id" not in frame.columns:
        raise TaskDataError(f"dataset {source.name!r}: its records lack column(s) "
                            f"{', '.join(c for c in ('record_id', 'meta') if c not in frame.columns)}")
    classes = scored_classes()
    column_of = {code: name for name, codes, _ in classes for code in codes}
    names = [name for name, _, _ in classes]
    rows: dict[str, list[float]] = {}
    for record_id, meta in zip(frame["record_id"].astype(str), frame["meta"]):
        codes = _codes(meta)
        if codes is None:
            continue
        hits = {column_of[c] for c in codes if c in column_of}
        if drop_unscored and not hits:
            continue
        rows[record_id] = [1.0 if name in hits else 0.0 for name in names]
    if len(frame) and not rows and not drop_unscored:
        raise TaskDataError(f"dataset {source.name!r}: no record has SNOMED-CT codes ('dx') in its meta; "
                            f"ingest the records with --layout cinc2021")
    return label_frame(rows, names)


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="cinc2021.scored",
        description="the 26 scored classes of the PhysioNet/CinC Challenge 2021 (SNOMED-CT, merged pairs; multi-label)",
        dataset="cinc2021", task_kind="multilabel", labels="stence_bench_tasks.cinc2021:scored_labels",
        options={}, metric="auroc", split="patient", source_columns=("meta.dx",),
        card="stence_bench_tasks:cinc2021.md", citation=CITATION, version="1",
    ))
