"""Ingest: scan a source with its layout, read records in parallel processes, write shards, quarantine bad input.

Resumable: a record already in the store whose files are unchanged (same size and mtime) is skipped; a changed
one is read again and its new row supersedes the old. Quarantined records are tried again on every run (their
files may have been fixed).
Each chunk of records becomes one shard, committed atomically, so a kill loses at most the chunks in flight.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path

import pandas as pd

from ..files import write_atomic
from ..processes import FolderLock, WorkerPool
from .layouts.base import Layout, RecordRef
from .records import BadRecord
from .store import (
    COMPACTED,
    compact,
    QUARANTINE_COLUMNS,
    SHARD_DIR,
    STORE_LOCK,
    TABLE_DIR,
    ECGStore,
    ShardWriter,
    StoreError,
    check_store,
    create_store,
    fingerprint,
    new_store_info,
    read_parts,
)


@dataclass
class IngestReport:
    store: Path
    found: int
    ingested: int
    skipped: int
    quarantined_now: int
    quarantined_total: int
    report: Path
    seconds: float
    #: channels that are not ECG leads (a blood pressure, a pleth), left out of the records ingested now: how many
    #: records had each
    dropped: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"{self.store}: {self.found} records found, {self.ingested} ingested, "
            f"{self.skipped} already in the store, {self.quarantined_now} quarantined "
            f"({self.seconds:.1f} s)",
        ]
        if self.dropped:
            channels = ", ".join(f"{name} ({n})" for name, n in sorted(self.dropped.items()))
            out.append(f"records keep their ECG leads only; channels left out (records): {channels}")
        if self.quarantined_total:
            out.append(f"{self.quarantined_total} record(s) quarantined in all; reasons in {self.report}")
        return out


def _ingest_chunk(layout: Layout, root: str, shard: int, refs: list[RecordRef],
                  problems: list[tuple[RecordRef, BadRecord]], base: str = "") -> tuple[int, int, dict[str, int]]:
    """Read ``refs`` into one shard (runs in a worker process); paths are kept relative to ``base`` (the
    source's folder). Returns (ingested, quarantined, channels left out: records per channel)."""
    writer = ShardWriter(Path(root), shard, base=base)
    n_ok = n_bad = 0
    dropped: dict[str, int] = {}
    try:
        for ref, bad in problems:
            writer.quarantine(ref.record_id, ref.path, bad)
            n_bad += 1
        for ref in refs:
            try:
                record = layout.read(ref)
                record.record_id = ref.record_id
                record.patient_id = record.patient_id or ref.patient_id
                record.time = record.time or ref.time
                record.files = record.files or ref.files
                if ref.meta:
                    record.meta = {**ref.meta, **record.meta}
                writer.add(record.check())
                n_ok += 1
                for channel in record.meta.get("dropped_channels", ()):
                    dropped[channel] = dropped.get(channel, 0) + 1
            except BadRecord as bad:
                writer.quarantine(ref.record_id, ref.path, bad)
                n_bad += 1
            except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                # a file no reader anticipated: keep going, and say exactly what happened
                writer.quarantine(ref.record_id, ref.path, BadRecord(ref.path, "unreadable", f"{type(exc).__name__}: {exc}"))
                n_bad += 1
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return n_ok, n_bad, dropped


#: How long an ingest called from code (a run's data preparation, several processes sharing one store) waits
#: for another ingest of the same store before it gives up.
STORE_WAIT_S = 3600.0


def _clean_temporaries(root: Path) -> None:
    """Remove what a killed ingest left half-written: temporary files, and data files of a shard whose commit
    never finished (no part, and no row of the compacted manifest, names it)."""
    for tmp in (root / SHARD_DIR).glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    rows = read_parts(root)
    committed = {int(v) for v in pd.to_numeric(rows.loc[rows["status"] == "ok", "shard"], errors="coerce").dropna()}
    for data in [*(root / SHARD_DIR).glob("shard-*.f32"), *(root / SHARD_DIR).glob("shard-*.i16")]:
        if int(data.name.split("-")[1].split(".")[0]) not in committed:
            data.unlink()


def _next_shard(root: Path) -> int:
    """A shard number no part, data file or row of the compacted manifest has used."""
    folder = root / SHARD_DIR
    numbers = [int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("shard-*") if not p.name.endswith(".tmp")]
    rows = read_parts(root)
    if len(rows):
        numbers.append(int(pd.to_numeric(rows["shard"], errors="coerce").max(skipna=True) or 0))
    return max(numbers, default=-1) + 1


def ingest(
    source: str | os.PathLike[str],
    layout: Layout,
    store: str | os.PathLike[str],
    *,
    workers: int = 1,
    chunk_size: int = 256,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    wait_s: float = STORE_WAIT_S,
    echo: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest ``source`` read by ``layout`` into the store at ``store`` (created if needed).

    One ingest writes a store at a time: another one under way (its pid in ``STORE/ingest.lock``) is waited for
    up to ``wait_s`` seconds (0: refused at once, as ``stence-bench data ingest`` does), then refused in one line
    naming its pid; a lock left by a killed ingest is taken over. ``echo`` (default: stderr) gets those notes.
    Until a record is committed nothing is left behind: an ingest refused or failing before that removes what it
    wrote."""
    source, root = Path(source), Path(store)
    if not source.exists():
        raise StoreError(f"{source}: no such file or folder")
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: is a file, not a store folder; choose an empty or new folder")
    created = not root.exists()
    say = echo if echo is not None else (lambda line: print(line, file=sys.stderr, flush=True))
    lock = FolderLock(root / STORE_LOCK, what="this store", wait_s=wait_s, echo=say,
                      command=f"ingest of {source} ({layout.name})")
    lock.acquire()
    try:
        return _ingest(source, layout, root, workers=workers, chunk_size=chunk_size, progress=progress,
                       on_start=on_start)
    except BaseException:
        _remove_if_uncommitted(root, created)
        raise
    finally:
        lock.release()
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()


def _remove_if_uncommitted(root: Path, created: bool) -> None:
    """What an ingest that created the store and failed before committing any record wrote (store.json, empty
    folders). A store that existed before, or holds a committed part or a compacted manifest, is never touched."""
    committed = list((root / SHARD_DIR).glob("shard-*.csv")) or (root / SHARD_DIR / COMPACTED).is_file()
    if not created or not root.is_dir() or committed:
        return
    (root / "store.json").unlink(missing_ok=True)
    for folder in (root / SHARD_DIR, root / TABLE_DIR):
        if folder.is_dir():
            shutil.rmtree(folder)
    (root / "quarantine.csv").unlink(missing_ok=True)


def _ingest(source: Path, layout: Layout, root: Path, *, workers: int, chunk_size: int,
            progress: Callable[[int], None] | None, on_start: Callable[[int | None], None] | None) -> IngestReport:
    started = time.perf_counter()
    info = new_store_info(layout.name, source, layout.model_dump(mode="json"), units=layout.units)
    exists = check_store(root, info)  # before anything is written
    try:
        scan = layout.scan(Path(os.path.abspath(source)))  # paths kept relative to the source (store.json: root)
    except NotADirectoryError:
        raise StoreError(f"{source}: not a folder; the {layout.name} layout reads a folder of records") from None
    total = len(scan.refs) + len(scan.problems) if isinstance(scan.refs, Sized) else None
    refs = iter(scan.refs)  # a list, or references yielded as the layout finds them
    first = next(refs, None)
    if first is None and not scan.problems:
        raise StoreError(f"{source}: the {layout.name} layout found no record{_what_is_there(source)}")
    if not exists:
        create_store(root, info)
    _clean_temporaries(root)

    existing = ECGStore(root)
    base = os.path.abspath(existing.info.root) if existing.info.root else ""
    for name, table in scan.tables.items():  # rewritten only when changed: other processes may be reading them
        path, text = root / TABLE_DIR / f"{name}.csv", table.to_csv(index=False)
        if not path.is_file() or path.read_text() != text:
            write_atomic(path, text)

    shard = _next_shard(root)
    plan = _Plan(existing, chain([] if first is None else [first], refs), scan.problems, chunk_size, shard)
    jobs = plan.jobs()
    if on_start:
        on_start(total)  # the bar counts every record found: a record already stored advances it at once
    n_ok = n_bad = 0
    dropped: dict[str, int] = {}
    counted = 0  # records the progress callback has been told of

    def tally(ok: int, bad: int, channels: dict[str, int]) -> None:
        nonlocal n_ok, n_bad, counted
        n_ok, n_bad = n_ok + ok, n_bad + bad
        for channel, n in channels.items():
            dropped[channel] = dropped.get(channel, 0) + n
        if progress:
            now = n_ok + n_bad + plan.skipped
            progress(now - counted)
            counted = now

    started_jobs = list(islice(jobs, 2))  # one job (a small source) is read here, without worker processes
    if workers <= 1 or len(started_jobs) <= 1:
        for shard_no, chunk, probs in chain(started_jobs, jobs):
            tally(*_ingest_chunk(layout, str(root), shard_no, chunk, probs, base))
    else:
        start = "fork" if sys.platform.startswith("linux") else "spawn"
        with WorkerPool(workers, start=start) as pool:  # readers die with this process
            queued = chain(started_jobs, jobs)
            pending: set[Future[tuple[int, int, dict[str, int]]]] = set()

            def submit(n: int) -> None:  # a few chunks in flight per worker: the scan is pulled as they finish
                for shard_no, chunk, probs in islice(queued, n):
                    pending.add(pool.submit(_ingest_chunk, layout, str(root), shard_no, chunk, probs, base))

            try:
                submit(IN_FLIGHT_PER_WORKER * workers)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        tally(*future.result())
                    submit(len(finished))
            except BaseException:
                pool.kill()  # at once: a shard in flight is never committed, and the next ingest reads it again
                raise
    tally(0, 0, {})  # records skipped after the last chunk read
    compact(root, quarantine_before=shard)  # one manifest file; this ingest's quarantine rows replace older ones
    final = ECGStore(root)
    report = root / "quarantine.csv"
    write_atomic(report, final.quarantine[QUARANTINE_COLUMNS].to_csv(index=False))
    return IngestReport(
        store=root, found=plan.found + len(scan.problems), ingested=n_ok, skipped=plan.skipped,
        quarantined_now=n_bad, quarantined_total=len(final.quarantine), report=report,
        seconds=time.perf_counter() - started, dropped=dropped,
    )


#: Chunks queued per worker process: enough to keep every worker busy, few enough that the scan is pulled as
#: records are read (references of a million-record source are never all held at once).
IN_FLIGHT_PER_WORKER = 2
#: One job: its shard number, the records to read into it, and records known bad to quarantine there.
_Job = tuple[int, list[RecordRef], list[tuple[RecordRef, BadRecord]]]


class _Plan:
    """The ingest's jobs, drawn from the scan's references as they come: a record already in the store with
    unchanged files is skipped, a repeated record id is quarantined, every ``chunk_size`` records to read make one
    job (one shard, numbered from ``first_shard``), and the records known bad (the scan's and the repeated ids)
    one last job."""

    def __init__(self, existing: ECGStore, refs: Iterator[RecordRef], problems: list[tuple[RecordRef, BadRecord]],
                 chunk_size: int, first_shard: int):
        self.existing, self.refs, self.chunk_size = existing, refs, chunk_size
        self.problems = list(problems)
        self.next_shard = first_shard
        self.found = self.skipped = 0
        self._files = existing.manifest["files"]
        self._fingerprints = existing.manifest["fingerprint"]

    def _unchanged(self, ref: RecordRef) -> bool:
        if ref.record_id not in self.existing:
            return False
        i = self.existing.index_of(ref.record_id)
        files = str(self._files.iat[i]).split(";")
        return fingerprint(self.existing.path(f) for f in files) == str(self._fingerprints.iat[i])

    def jobs(self) -> Iterator[_Job]:
        seen: set[str] = set()
        chunk: list[RecordRef] = []
        for ref in self.refs:
            self.found += 1
            if ref.record_id in seen:
                repeated = BadRecord(ref.path, "duplicate record id", f"{ref.record_id!r} appears twice")
                self.problems.append((ref, repeated))
                continue
            seen.add(ref.record_id)
            if self._unchanged(ref):
                self.skipped += 1
                continue
            chunk.append(ref)
            if len(chunk) == self.chunk_size:
                yield self._job(chunk, [])
                chunk = []
        if chunk:
            yield self._job(chunk, [])
        if self.problems:
            yield self._job([], self.problems)

    def _job(self, refs: list[RecordRef], problems: list[tuple[RecordRef, BadRecord]]) -> _Job:
        self.next_shard += 1
        return self.next_shard - 1, refs, problems


def _what_is_there(source: Path) -> str:
    """What a folder holds, for an ingest that found no record in it: `` (it holds 25 .hea, 25 .mat files)``."""
    if not source.is_dir():
        return ""
    counts: dict[str, int] = {}
    for i, path in enumerate(source.rglob("*")):
        if i >= 100_000:
            break
        if path.is_file():
            suffix = path.suffix.lower() or "(no suffix)"
            counts[suffix] = counts.get(suffix, 0) + 1
    if not counts:
        return " (the folder is empty)"
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return " (it holds " + ", ".join(f"{n} {suffix}" for suffix, n in top) + " files)"


def read_quarantine(store: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_csv(Path(store) / "quarantine.csv", dtype=str, keep_default_na=False)
