"""What a layout is: :meth:`Layout.scan` lists a source's records cheaply, :meth:`Layout.read` reads one."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ...errors import StenceBenchError
from ..records import BadRecord, Record


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

    refs: list[RecordRef]
    problems: list[tuple[RecordRef, BadRecord]] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


class Layout(BaseModel):
    """A source layout. Its fields are its options (``stence-bench data ingest --option key=value``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str] = ""
    #: What the samples :meth:`read` returns are: ``mV`` (every layout reading physical recordings), or ``z-score``
    #: for a source whose publisher standardised the signals so that millivolts cannot be recovered (EchoNext).
    #: Ingest records it in the store (``store.json`` ``units``); views refuse what assumes millivolts.
    units: ClassVar[str] = "mV"

    def scan(self, source: Path) -> Scan:  # pragma: no cover - every layout overrides it
        raise NotImplementedError

    def read(self, ref: RecordRef) -> Record:  # pragma: no cover
        raise NotImplementedError


def require_columns(table: pd.DataFrame, columns: list[str] | tuple[str, ...], source: str | Path) -> None:
    """A table that lacks columns the layout needs is a user error naming the file and the columns."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise StenceBenchError(f"{source}: missing column(s) {', '.join(missing)}")


#: the files WFDB signals are stored in
SIGNAL_SUFFIXES = (".dat", ".mat")


def find_headers(source: Path, signal_files: list[str] | None = None) -> list[str]:
    """Every ``.hea`` below ``source``, sorted (os.scandir: fast on folders of many thousand files). Given a
    list, ``signal_files`` also gets every ``.dat`` and ``.mat`` found on the way."""
    found: list[str] = []
    stack = [os.fspath(source)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.name.endswith(".hea"):
                    found.append(entry.path)
                elif signal_files is not None and entry.name.endswith(SIGNAL_SUFFIXES):
                    signal_files.append(entry.path)
    if signal_files is not None:
        signal_files.sort()
    return sorted(found)


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
