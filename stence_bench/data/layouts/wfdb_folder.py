"""``wfdb``: any folder of WFDB records (``.hea`` with ``.dat`` or ``.mat``), at any sampling rate and lead count."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from ..records import BadRecord, Record
from ..wfdb_io import read_header, read_wfdb
from .base import Layout, RecordRef, Scan, find_headers


def wfdb_scan(source: Path) -> Scan:
    """A reference per header below ``source`` (the record id: its path relative to ``source``, sans ``.hea``), and
    a problem per signal file that no header names (a ``.mat`` whose ``.hea`` is missing): never silently skipped."""
    signal_files: list[str] = []
    headers = find_headers(source, signal_files)
    refs = [RecordRef(record_id=Path(os.path.relpath(hea, source)).with_suffix("").as_posix(), path=hea)
            for hea in headers]
    return Scan(refs=refs, problems=headerless(source, headers, signal_files))


def headerless(source: Path, headers: list[str], signal_files: list[str]) -> list[tuple[RecordRef, BadRecord]]:
    """The signal files no header names. Most records name their file after themselves (``x.hea``, ``x.dat``);
    only the folders with another file read their headers, to find the files they name."""
    stems = {os.path.splitext(h)[0] for h in headers}
    candidates = [f for f in signal_files if os.path.splitext(f)[0] not in stems]
    named: set[str] = set()
    for folder in {os.path.dirname(f) for f in candidates}:
        for hea in (h for h in headers if os.path.dirname(h) == folder):
            try:
                named.update(os.path.join(folder, name) for name in read_header(hea).file_names)
            except BadRecord:
                continue  # the record itself is quarantined with that reason
    problems = []
    for path in candidates:
        if path in named:
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        ref = RecordRef(record_id=Path(os.path.relpath(path, source)).with_suffix("").as_posix(), path=path,
                        files=(path,))
        problems.append((ref, BadRecord(path, "no header", f"no {stem}.hea beside it, and no header names it: a "
                                        "WFDB record is read from its header")))
    return problems


class WfdbLayout(Layout):
    """Every WFDB record below the source folder. Header comments are kept in the record's meta; a signal file
    without a header is quarantined."""

    name: ClassVar[str] = "wfdb"
    label_source: ClassVar[str] = ""  # no labels: header comments are free text of any kind

    def scan(self, source: Path) -> Scan:
        return wfdb_scan(source)

    def read(self, ref: RecordRef) -> Record:
        record, _ = read_wfdb(ref.path, record_id=ref.record_id)
        return record
