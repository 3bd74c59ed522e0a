"""``wfdb``: any folder of WFDB records (``.hea`` with ``.dat`` or ``.mat``), at any sampling rate and lead count."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from ..records import Record
from ..wfdb_io import read_wfdb
from .base import Layout, RecordRef, Scan, find_headers


def wfdb_refs(source: Path) -> list[RecordRef]:
    """A reference per header below ``source``; the record id is its path relative to ``source``, sans ``.hea``."""
    refs = []
    for hea in find_headers(source):
        record_id = Path(os.path.relpath(hea, source)).with_suffix("").as_posix()
        refs.append(RecordRef(record_id=record_id, path=hea))
    return refs


class WfdbLayout(Layout):
    """Every WFDB record below the source folder. Header comments are kept in the record's meta."""

    name: ClassVar[str] = "wfdb"

    def scan(self, source: Path) -> Scan:
        return Scan(refs=wfdb_refs(source))

    def read(self, ref: RecordRef) -> Record:
        record, _ = read_wfdb(ref.path, record_id=ref.record_id)
        return record
