"""``cinc2021``: the PhysioNet/CinC Challenge 2021 layout: WFDB records whose headers carry ``# Age``, ``# Sex`` and
``# Dx`` (SNOMED-CT codes), mapped to names with the challenge's own tables (shipped in ``stence_bench/data/snomed``).
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from ..records import BadRecord, Record
from ..wfdb_io import read_wfdb
from .base import Layout, RecordRef, Scan
from .wfdb_folder import wfdb_scan

if TYPE_CHECKING:
    from ...task_data import TaskSource


@functools.lru_cache(maxsize=1)
def snomed_table() -> pd.DataFrame:
    """SNOMED-CT code -> name, abbreviation and whether the challenge scored it."""
    frames = []
    for scored in (True, False):
        path = files("stence_bench.data") / "snomed" / f"dx_mapping_{'scored' if scored else 'unscored'}.csv"
        with path.open() as fh:
            table = pd.read_csv(fh, dtype={"SNOMEDCTCode": str})
        frames.append(table[["SNOMEDCTCode", "Dx", "Abbreviation"]].assign(scored=scored))
    return pd.concat(frames).drop_duplicates("SNOMEDCTCode").set_index("SNOMEDCTCode")


def parse_comments(comments: list[str], source: str) -> dict[str, Any]:
    """``Age``, ``Sex``, ``Dx`` (and any other ``Key: value``) from the header comments."""
    fields: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "Dx" not in fields:
        raise BadRecord(source, "missing labels", "no '# Dx:' line in the header")
    codes = [c.strip() for c in fields["Dx"].split(",") if c.strip()]
    if not codes or not all(c.isdigit() for c in codes):
        raise BadRecord(source, "bad labels", f"'# Dx: {fields['Dx']}' is not a list of SNOMED-CT codes")
    table = snomed_table()
    age_text = fields.get("Age", "")
    try:
        age: float | None = float(age_text)
    except ValueError:
        age = None  # "NaN", "Unknown"
    return {
        "age": age if age == age else None,
        "sex": fields.get("Sex") or None,
        "dx": codes,
        "dx_names": [str(table.loc[c, "Dx"]) if c in table.index else f"unknown SNOMED {c}" for c in codes],
        "dx_abbreviations": [str(table.loc[c, "Abbreviation"]) if c in table.index else c for c in codes],
        "header": {k: v for k, v in fields.items() if k not in ("Age", "Sex", "Dx")},
    }


class Cinc2021Layout(Layout):
    """Challenge 2021 records below the source folder; a record without a readable ``# Dx`` is quarantined. Its
    labels are each record's SNOMED-CT codes (``dx``), all of them, scored by the Challenge or not."""

    name: ClassVar[str] = "cinc2021"
    label_source: ClassVar[str] = "SNOMED-CT codes of each header's '# Dx' line (scored or not)"

    def scan(self, source: Path) -> Scan:
        codes = snomed_table().reset_index()
        found = wfdb_scan(source)
        return Scan(refs=found.refs, problems=found.problems, tables={"snomed": codes})

    def read(self, ref: RecordRef) -> Record:
        record, header = read_wfdb(ref.path, record_id=ref.record_id)
        record.meta = parse_comments(header.comments, ref.path)
        return record

    def labels(self, source: TaskSource) -> list[list[str]]:
        return [[str(code) for code in (meta.get("dx") or [])] for meta in source.records["meta"]]


class ChapmanNingboLayout(Cinc2021Layout):
    """Chapman-Shaoxing and Ningbo (PhysioNet ``ecg-arrhythmia``, Zheng et al.): the same WFDB records with
    ``# Age``, ``# Sex`` and ``# Dx`` (SNOMED-CT) as in the Challenge 2021, in ``WFDBRecords/NN/NNN/JSxxxxx``; the
    release's ``ConditionNames_SNOMED-CT.csv`` is kept in the store when present. No patient ids: each record is
    its own patient. A record's id is its name (``JS00001``: unique in the release)."""

    name: ClassVar[str] = "chapman-ningbo"

    def scan(self, source: Path) -> Scan:
        scan = super().scan(source)
        for ref in [*scan.refs, *(ref for ref, _ in scan.problems)]:
            ref.record_id = Path(ref.record_id).name
        names = source / "ConditionNames_SNOMED-CT.csv"
        if names.is_file():
            scan.tables["condition_names"] = pd.read_csv(names, dtype=str)
        return scan
