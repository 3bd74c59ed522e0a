"""What a layout is: :meth:`Layout.scan` lists a source's records cheaply, :meth:`Layout.read` reads one."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ...errors import StenceBenchError
from ..records import BadRecord, Record

if TYPE_CHECKING:
    from ...task_data import TaskSource


@dataclass
class RecordRef:
    """A record found by a scan: enough to read it, and the files whose change means reading it again."""

    record_id: str
    path: str
    #: files the scan already knows the record is read from (readers report the rest)
    files: tuple[str, ...] = ()
    patient_id: str | None = None
    time: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scan:
    """What a scan found: records to read, records already known bad, and the source's label tables."""

    #: the records to read: a list, or an iterator yielding them as they are found (a large source's scan
    #: should: the ingest pulls references a few chunks ahead of the records it reads)
    refs: Iterable[RecordRef]
    problems: list[tuple[RecordRef, BadRecord]] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


class Layout(BaseModel):
    """A source layout. Its fields are its options (``stence-bench data ingest --option key=value``).

    A layout whose records carry annotations (diagnosis codes, statements) says which with :meth:`labels` and
    :attr:`label_source`: what supervised pretraining (and SigLIP's soft targets) learn from on that dataset. The
    default reads report statements from each record's meta, as MIMIC-IV-ECG's machine reports are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str] = ""
    #: What :meth:`labels` gives, in words, recorded with every pretraining that learns from it; ``""`` for a
    #: layout without labels (its DatasetSpec should then not list the ``labels`` modality).
    label_source: ClassVar[str] = "report statements (each record's meta 'statements', else its 'report' in sentences)"
    #: What the samples :meth:`read` returns are: ``mV`` (every layout reading physical recordings), or ``z-score``
    #: for a source whose publisher standardised the signals so that millivolts cannot be recovered (EchoNext).
    #: Ingest records it in the store (``store.json`` ``units``); views refuse what assumes millivolts.
    units: ClassVar[str] = "mV"

    #: How the layout's record meta codes ``sex`` when it is a number (PTB-XL: ``{0: "male", 1: "female"}``);
    #: empty: a number means nothing (text such as ``F``, ``Female``, ``male`` is read as written).
    sex_codes: ClassVar[dict[int, str]] = {}

    def scan(self, source: Path) -> Scan:  # pragma: no cover - every layout overrides it
        raise NotImplementedError

    def read(self, ref: RecordRef) -> Record:  # pragma: no cover
        raise NotImplementedError

    def labels(self, source: TaskSource) -> list[list[str]]:
        """Each record's labels, one list per row of ``source.records`` (in that order; an empty list for a record
        without any), from what the layout kept in the store: record meta and the store's tables
        (``source.table(name)``). The run keeps the most frequent among the pretraining records as its label
        vocabulary. Default: :func:`report_statements` of each record's meta."""
        if not self.label_source:
            return [[] for _ in range(len(source.records))]
        return [report_statements(meta) for meta in source.records["meta"]]

    def demographics(self, source: TaskSource) -> pd.DataFrame:
        """Each record's ``age`` (years, NaN where unknown) and ``sex`` (``female``, ``male`` or None), indexed by
        ``record_id``, from its meta: ``age`` (or ``age_at_ecg``), ``sex`` (text, or a number by
        :attr:`sex_codes`) or ``is_male``. What prespecified subgroups are cut from
        (:mod:`stence_bench.protocol.subgroups`); a layout whose meta says it otherwise overrides this."""
        ages, sexes = [], []
        for meta in source.records["meta"]:
            ages.append(_age(meta.get("age", meta.get("age_at_ecg"))))
            sex = sex_of(meta.get("sex"), self.sex_codes)
            if sex is None and meta.get("is_male") is not None:
                male = str(meta["is_male"]).strip().lower()
                sex = "male" if male in ("1", "1.0", "true") else "female" if male in ("0", "0.0", "false") else None
            sexes.append(sex)
        return pd.DataFrame({"age": np.asarray(ages, dtype=np.float64), "sex": pd.Series(sexes, dtype=object).to_numpy()},
                            index=pd.Index(source.records["record_id"].astype(str).to_numpy(), name="record_id"))


#: Text a source writes for each sex (lower case).
SEX_WORDS = {"f": "female", "female": "female", "w": "female", "woman": "female",
             "m": "male", "male": "male", "man": "male"}


def sex_of(value: Any, codes: dict[int, str] | None = None) -> str | None:
    """``female``, ``male`` or None from a source's value: text (``F``, ``Female``, ``m``, ...) or, with ``codes``, a
    number (PTB-XL's 0 / 1)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return (codes or {}).get(int(value)) if float(value) == int(value) else None
    text = str(value).strip().lower()
    if codes and text.lstrip("-").replace(".", "", 1).isdigit():
        return sex_of(float(text), codes)
    return SEX_WORDS.get(text)


def _age(value: Any) -> float:
    try:
        age = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return age if 0 <= age < 150 else float("nan")


def flag_labels(source: TaskSource, columns: tuple[str, ...]) -> list[list[str]]:
    """Each record's labels where a layout keeps 0/1 flags in its meta (``{"RBBB": 1, "AF": 0}``): the names of the
    ``columns`` set to a true value (1, ``True``, ``"true"``), in the order of ``columns``."""
    def true(value: Any) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "1.0", "true", "yes")
        return bool(value) and value == value  # NaN is no flag

    return [[c for c in columns if true(meta.get(c, 0))] for meta in source.records["meta"]]


def report_statements(meta: dict[str, Any]) -> list[str]:
    """The statements of a record's report: the layout's own list where it keeps one (meta ``statements``:
    MIMIC-IV-ECG, one per ``report_N`` column), else the sentences of a free-text ``report`` (split at ``.`` and
    ``;``); normalised (lower case, spaces collapsed, no trailing punctuation)."""
    listed = meta.get("statements")
    if isinstance(listed, list):
        parts = [str(p) for p in listed]
    else:
        parts = str(meta.get("report") or "").replace(";", ".").split(".")
    return [norm for p in parts if (norm := " ".join(p.lower().split()).strip(" .;,:"))]


def require_columns(table: pd.DataFrame, columns: list[str] | tuple[str, ...], source: str | Path) -> None:
    """A table that lacks columns the layout needs is a user error naming the file and the columns."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise StenceBenchError(f"{source}: missing column(s) {', '.join(missing)}")


#: the files WFDB signals are stored in
SIGNAL_SUFFIXES = (".dat", ".mat")


def _walk(source: Path) -> Iterator[os.DirEntry[str]]:
    """Every file below ``source`` (os.scandir: fast on folders of many thousand files), in no set order."""
    stack = [os.fspath(source)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    yield entry


def find_headers(source: Path, signal_files: list[str] | None = None) -> list[str]:
    """Every ``.hea`` below ``source``, sorted. Given a list, ``signal_files`` also gets every ``.dat`` and
    ``.mat`` found on the way."""
    found: list[str] = []
    for entry in _walk(source):
        if entry.name.endswith(".hea"):
            found.append(entry.path)
        elif signal_files is not None and entry.name.endswith(SIGNAL_SUFFIXES):
            signal_files.append(entry.path)
    if signal_files is not None:
        signal_files.sort()
    return sorted(found)


def files_below(source: Path, suffix: str) -> dict[str, str]:
    """Every file named ``*{suffix}`` below ``source``: its name without the suffix -> its path, sorted by name (the
    first found wins where two folders hold one name). For sources of one file per record (SPH's ``.h5``, CPSC
    2018's ``.mat``)."""
    found: dict[str, str] = {}
    for entry in _walk(source):
        if entry.name.endswith(suffix):
            found.setdefault(entry.name[: -len(suffix)], entry.path)
    return dict(sorted(found.items()))


def build_layout(registry: Any, name: str, options: dict[str, Any], *, option_prefix: str = "",
                 name_prefix: str = "") -> Layout:
    """The registered layout ``name`` built with ``options``; an unknown name or a bad option is one-line error."""
    from pydantic import ValidationError

    from ...errors import UnknownNameError
    from ...specs import import_object

    try:
        spec = registry.datasets.get(name)
    except UnknownNameError as exc:
        raise StenceBenchError(f"{name_prefix}{exc}") from None
    layout_cls = import_object(spec.reader, what=f"dataset {name!r}")
    try:
        return layout_cls(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{option_prefix}{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StenceBenchError(f"layout {name!r}: {problems}") from None
