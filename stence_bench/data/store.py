"""The ECG store: the only thing training reads.

A folder of shards. A shard holds its records' samples, record after record, each ``[n_leads, n_samples]``: as
int16 digital values with a per-lead baseline and gain when the source stores integers (WFDB: half the bytes of
float32, and the same float32 millivolts on reading), else as float32 millivolts. A CSV part lists the shard's
records (and the records quarantined while it was written); it is renamed into place after the data files, so
a shard either exists whole or not at all: an ingest killed at any point leaves a store that opens, and
resumes. Reads are memory-mapped: memory stays flat as the store grows.

    store/
      store.json                 layout, source, options, format version
      shards/shard-00000.i16     int16 samples (records with digital samples)
      shards/shard-00000.f32     float32 samples (the others)
      shards/shard-00000.csv     manifest part: one row per record (status ok) or quarantined record
      shards/manifest.parquet    the parts merged at the end of each ingest (opening reads one file, not thousands)
      tables/*.csv               the source's label tables (ptbxl_database.csv, ...)
      quarantine.csv             the report: file, what, why (rewritten at the end of each ingest)
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xxhash

from ..errors import StenceBenchError
from ..files import write_atomic
from .records import BadRecord, Record, to_physical

FORMAT_VERSION = 1
SHARD_DIR = "shards"
#: The compacted manifest: every part's rows merged at the end of an ingest (parts committed later add to it).
COMPACTED = "manifest.parquet"
#: The manifest's numeric columns (typed in the compacted manifest)
_NUMERIC = ("fs", "n_leads", "n_samples", "shard", "offset")
TABLE_DIR = "tables"
#: the manifest's columns, in order; ``offset`` counts values from the start of the shard's file of ``encoding``
#: (``i16``: int16 with per-lead ``baseline`` and ``gain``, digital units per mV; ``f32``: float32 mV)
MANIFEST_COLUMNS = [
    "record_id", "patient_id", "time", "fs", "leads", "n_leads", "n_samples", "encoding", "baseline", "gain",
    "shard", "offset", "source", "files", "fingerprint", "checksum", "meta",
]
#: text columns with a few distinct values in a dataset: held as categories (a code per record), not as text
_FEW_VALUES = ("leads", "encoding", "baseline", "gain")
_SUFFIX = {"i16": ".i16", "f32": ".f32"}
_DTYPE = {"i16": np.int16, "f32": np.float32}
#: a part also lists quarantined records: the file at fault, what is wrong, why
PART_COLUMNS = ["status", *MANIFEST_COLUMNS, "file", "what", "why"]
QUARANTINE_COLUMNS = ["record_id", "file", "what", "why"]


class StoreError(StenceBenchError):
    """A store that cannot be opened or written as asked."""


class UnitsError(StoreError):
    """An encoder contract (or an objective) that assumes millivolts, on a store whose signals are not."""


def fingerprint(files: Iterable[str | os.PathLike[str]]) -> str:
    """Size and modification time of the source files: a change means the record is ingested again."""
    parts = []
    for f in files:
        try:
            st = os.stat(f)
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("missing")
    return ";".join(parts)


def signal_checksum(samples: np.ndarray, calibration: str = "") -> str:
    """xxh3-64 of the stored bytes (and the calibration that turns them into millivolts)."""
    h = xxhash.xxh3_64(np.ascontiguousarray(samples))  # type: ignore[arg-type]  # an ndarray is a buffer
    h.update(calibration.encode())
    return h.hexdigest()


def _floats(values: np.ndarray) -> str:
    """float32 values as text that reads back to the same float32 values."""
    return _floats_of_bytes(np.asarray(values, dtype=np.float32).tobytes())


@functools.lru_cache(maxsize=4096)
def _floats_of_bytes(raw: bytes) -> str:  # records of one dataset share a few calibrations
    return ",".join(repr(float(v)) for v in np.frombuffer(raw, dtype=np.float32))


def encode_leads(leads: Iterable[str]) -> str:
    """Lead names as the manifest keeps them: ``I,II,V1``, or a JSON list when a name holds a comma (or starts
    with ``[``), so that any name reads back as it was."""
    names = list(leads)
    if any("," in name or name.startswith("[") for name in names):
        return json.dumps(names, ensure_ascii=False)
    return ",".join(names)


@functools.lru_cache(maxsize=1024)
def _split_leads(text: str) -> tuple[str, ...]:
    """The inverse of :func:`encode_leads`."""
    return tuple(json.loads(text)) if text.startswith("[") else tuple(text.split(","))


@functools.lru_cache(maxsize=4096)
def _parse_floats(text: str) -> np.ndarray:
    values = np.array([float(v) for v in text.split(",")], dtype=np.float32)
    values.flags.writeable = False
    return values


def _codes(column: pd.Series, *, floats: bool = False) -> tuple[np.ndarray, list[Any]]:
    """A categorical column's code per row and its categories (``floats``: a calibration's comma-separated values
    parsed to a float32 array; empty, as for float32 records, stays ``None``)."""
    values = [str(v) for v in column.cat.categories]
    return column.cat.codes.to_numpy(np.int32), [(_parse_floats(v) if v else None) if floats else v for v in values]


def _release_arrow_memory() -> None:
    """Hand memory that pandas' Arrow-backed columns freed back to the system (their allocator keeps it)."""
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - an allocator without the call: nothing to release
        pass


@dataclass
class StoreInfo:
    layout: str
    source: str
    options: dict[str, Any]
    created: str
    format: int = FORMAT_VERSION
    #: the folder the manifest's paths (``source``, ``files``) and the layout's tables' paths are relative to:
    #: the source folder (a file's folder when the source is one file). Empty in stores made before it existed,
    #: whose paths are as the ingest was given them.
    root: str = ""
    #: what the samples are: ``mV``, or ``z-score`` (standardised by the publisher; :attr:`Layout.units`)
    units: str = "mV"


class ShardWriter:
    """Writes one shard: samples appended to temporary files, committed by :meth:`commit`."""

    def __init__(self, root: Path, shard: int, base: str = ""):
        self.shard = shard
        self.base = base
        self.folder = root / SHARD_DIR
        self.part_path = self.folder / f"shard-{shard:05d}.csv"
        self._files: dict[str, Any] = {}
        self._offset = {"i16": 0, "f32": 0}
        self.rows: list[dict[str, Any]] = []

    def _tmp(self, encoding: str) -> Path:
        return self.folder / f"shard-{self.shard:05d}{_SUFFIX[encoding]}.tmp"

    def _file(self, encoding: str) -> Any:
        if encoding not in self._files:
            self._files[encoding] = open(self._tmp(encoding), "wb")  # noqa: SIM115 - closed in commit/abort
        return self._files[encoding]

    def add(self, record: Record) -> None:
        if record.digital is not None:
            encoding, samples = "i16", np.ascontiguousarray(record.digital, dtype=np.int16)
            baseline, gain = _floats(record.baseline), _floats(record.gain)  # type: ignore[arg-type]  # set with digital
        else:
            encoding, samples = "f32", np.ascontiguousarray(record.physical(), dtype=np.float32)
            baseline = gain = ""
        samples.tofile(self._file(encoding))
        files = record.files or (record.source,)
        fingerprint_now = fingerprint(files)
        source, relative = self._relative(record.source), [self._relative(f) for f in files]
        self.rows.append({
            "status": "ok", "record_id": record.record_id, "patient_id": record.patient_id, "time": record.time,
            "fs": record.fs, "leads": encode_leads(record.leads), "n_leads": samples.shape[0],
            "n_samples": samples.shape[1], "encoding": encoding, "baseline": baseline, "gain": gain,
            "shard": self.shard, "offset": self._offset[encoding], "source": source,
            "files": ";".join(relative), "fingerprint": fingerprint_now,
            "checksum": signal_checksum(samples, baseline + ";" + gain),
            "meta": json.dumps(record.meta, sort_keys=True, default=str) if record.meta else "",
        })
        self._offset[encoding] += samples.size

    def _relative(self, path: str) -> str:
        """``path`` relative to the source folder, when it lies inside it."""
        if not self.base or not os.path.isabs(path):
            return path
        relative = os.path.relpath(path, self.base)
        return path if relative.startswith("..") else relative

    def quarantine(self, record_id: str, source: str, bad: BadRecord) -> None:
        self.rows.append({"status": "quarantined", "record_id": record_id, "source": source, "shard": self.shard,
                          "file": bad.file, "what": bad.what, "why": bad.why})

    def commit(self) -> None:
        """Data first, then the part that makes the shard visible."""
        for encoding, fh in self._files.items():
            fh.close()
            os.replace(self._tmp(encoding), self.folder / f"shard-{self.shard:05d}{_SUFFIX[encoding]}")
        frame = pd.DataFrame(self.rows, columns=PART_COLUMNS)
        write_atomic(self.part_path, frame.to_csv(index=False))

    def abort(self) -> None:
        for encoding, fh in self._files.items():
            fh.close()
            self._tmp(encoding).unlink(missing_ok=True)


class ECGStore:
    """A store opened for reading. ``manifest`` has one row per record (the newest, when re-ingested)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        meta_path = self.root / "store.json"
        if not meta_path.is_file():
            raise StoreError(f"{self.root}: not an ECG store (no store.json); create one with `stence-bench data ingest`")
        try:
            self.info = StoreInfo(**json.loads(meta_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{meta_path}: unreadable store description: {exc}") from None
        if self.info.format != FORMAT_VERSION:
            raise StoreError(f"{meta_path}: store format {self.info.format}, this stence-bench reads {FORMAT_VERSION}")
        parts = self._read_parts()
        ok = parts[parts["status"] == "ok"].copy()
        for column in ("n_leads", "n_samples", "shard", "offset"):
            ok[column] = pd.to_numeric(ok[column]).astype(np.int64)
        ok["fs"] = pd.to_numeric(ok["fs"]).astype(np.float64)
        # a record ingested again (its source changed) lives in a newer shard: keep the newest row
        ok = ok.sort_values("shard", kind="stable").drop_duplicates("record_id", keep="last")
        self.manifest = ok[MANIFEST_COLUMNS].reset_index(drop=True)
        for column in _FEW_VALUES:
            self.manifest[column] = self.manifest[column].astype("category")
        bad = parts[parts["status"] == "quarantined"]
        if len(bad):  # (a record quarantined once and stored since is no longer quarantined)
            bad = bad[~bad["record_id"].isin(self.manifest["record_id"])]
        self.quarantine = bad.drop_duplicates("record_id", keep="last")[[*QUARANTINE_COLUMNS, "source"]]
        del parts, ok, bad
        self._maps: dict[tuple[int, str], np.memmap] = {}
        self._layout = self.manifest[["shard", "offset", "n_leads", "n_samples"]].to_numpy(dtype=np.int64)
        # what decodes a record, once per distinct value (a few per dataset), with a small code per record: a
        # Python string per record and column held ~300 B a record (0.3 GB per process at a million records)
        self._encoding, self._encodings = _codes(self.manifest["encoding"])
        self._baseline, self._baselines = _codes(self.manifest["baseline"], floats=True)
        self._gain, self._gains = _codes(self.manifest["gain"], floats=True)
        _release_arrow_memory()  # the parts as read and their copies: freed, handed back to the system

    @functools.cached_property
    def _row(self) -> dict[str, int]:
        """Record id -> row, built when a record is first looked up by id (the runner reads by row)."""
        ids = self.manifest["record_id"].tolist()
        return dict(zip(ids, range(len(ids))))

    def _read_parts(self) -> pd.DataFrame:
        return read_parts(self.root)

    # -- reading -----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.manifest)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._row

    def index_of(self, record_id: str) -> int:
        try:
            return self._row[record_id]
        except KeyError:
            raise KeyError(f"record {record_id!r} is not in the store {self.root}") from None

    def _shard(self, shard: int, encoding: str) -> np.memmap:
        key = (shard, encoding)
        if key not in self._maps:
            path = self.root / SHARD_DIR / f"shard-{shard:05d}{_SUFFIX[encoding]}"
            if not path.is_file():
                raise StoreError(f"{path}: missing; the store is damaged (its manifest lists records in it)")
            self._maps[key] = np.memmap(path, dtype=_DTYPE[encoding], mode="r")
        return self._maps[key]

    def samples(self, item: int | str) -> np.ndarray:
        """A record's stored samples as they are on disk (int16 or float32), ``[n_leads, n_samples]``."""
        i = self.index_of(item) if isinstance(item, str) else int(item)
        shard, offset, n_leads, n_samples = (int(v) for v in self._layout[i])
        data = self._shard(shard, self._encodings[self._encoding[i]])
        return data[offset : offset + n_leads * n_samples].reshape(n_leads, n_samples)

    def signal(self, item: int | str) -> np.ndarray:
        """A record's samples in float32 millivolts (or the store's :attr:`StoreInfo.units`),
        ``[n_leads, n_samples]``."""
        i = self.index_of(item) if isinstance(item, str) else int(item)
        samples = self.samples(i)
        if self._encodings[self._encoding[i]] == "f32":
            return samples
        return to_physical(samples, self._baselines[self._baseline[i]], self._gains[self._gain[i]])

    def leads(self, item: int | str) -> tuple[str, ...]:
        i = self.index_of(item) if isinstance(item, str) else int(item)
        return _split_leads(self.manifest["leads"].iat[i])

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """A path the store keeps (a record's ``source`` or ``files``, a path in a layout's table such as the
        DICOM ``angiography`` table) as a path to open: relative ones are in the source folder."""
        path = Path(relative)
        return path if path.is_absolute() or not self.info.root else Path(self.info.root) / path

    def files(self, item: int | str) -> list[Path]:
        """The files a record was read from."""
        i = self.index_of(item) if isinstance(item, str) else int(item)
        return [self.path(f) for f in self.manifest["files"].iat[i].split(";")]

    def meta(self, item: int | str) -> dict[str, Any]:
        i = self.index_of(item) if isinstance(item, str) else int(item)
        text = self.manifest.iloc[i]["meta"]
        return json.loads(text) if text else {}

    def tables(self) -> dict[str, pd.DataFrame]:
        """The label tables kept from the source, by file stem."""
        return {p.stem: pd.read_csv(p) for p in sorted((self.root / TABLE_DIR).glob("*.csv"))}

    def fingerprint(self) -> str:
        """The dataset fingerprint: a hash of every record id with its checksum."""
        h = xxhash.xxh3_64()
        for rid, checksum in sorted(zip(self.manifest["record_id"].tolist(), self.manifest["checksum"].tolist())):
            h.update(f"{rid}:{checksum}\n".encode())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "store": str(self.root), "layout": self.info.layout, "source": self.info.source, "units": self.info.units,
            "records": len(m), "patients": int(m["patient_id"].replace("", np.nan).nunique()),
            "sampling_rates": {f"{fs:g}": int(n) for fs, n in m["fs"].value_counts().sort_index().items()},
            "leads": {leads: int(n) for leads, n in m["leads"].value_counts().items()},
            "samples": int((m["n_leads"] * m["n_samples"]).sum()) if len(m) else 0,
            "quarantined": len(self.quarantine),
            "quarantine_report": str(self.root / "quarantine.csv"),
            "fingerprint": self.fingerprint(),
            "duplicate_signals": self.duplicate_signals(),
        }

    def duplicate_signals(self) -> list[list[str]]:
        """Record ids that share one signal (equal checksums), a list per signal: the harness counts each group
        as one patient, so its records always share a split."""
        from .splits import duplicate_groups

        m = self.manifest
        return duplicate_groups(pd.Series(m["checksum"].to_numpy(), index=m["record_id"].astype(str).to_numpy()))


#: The lock file of a store while an ingest writes it (the writer's pid and host).
STORE_LOCK = "ingest.lock"


def read_parts(root: Path) -> pd.DataFrame:
    """Every manifest row of a store, as text: the compacted manifest (``shards/manifest.parquet``) and the parts
    committed since. The parts are read first: a compaction meanwhile moves rows from parts into the manifest,
    never the other way, so no row is missed (one read twice is the same row, and readers keep one)."""
    frames = []
    for path in sorted((root / SHARD_DIR).glob("shard-*.csv")):
        try:
            frames.append(pd.read_csv(path, dtype=str, keep_default_na=False))
        except FileNotFoundError:  # compacted (or a part of old quarantine rows dropped) meanwhile
            continue
    compacted = root / SHARD_DIR / COMPACTED
    if compacted.is_file():  # its numbers typed (no parsing), its text as text, like the parts
        frame = pd.read_parquet(compacted)
        text = [c for c in frame.columns if c not in _NUMERIC]
        frame[text] = frame[text].astype(str)
        frames.insert(0, frame)
    if not frames:
        return pd.DataFrame(columns=PART_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def compact(root: Path, *, quarantine_before: int | None = None) -> int:
    """Merge the store's manifest parts into one compacted manifest (``shards/manifest.parquet``), so that opening a
    store of a million records reads one file, not thousands of parts. ``quarantine_before``: drop the quarantine
    rows of shards before this one (every ingest tries quarantined records again and writes its own rows).
    Written to a temporary name, renamed into place, then the merged parts deleted: a kill at any point leaves a
    store that opens with every row. Returns the number of rows kept."""
    folder = root / SHARD_DIR
    parts = sorted(folder.glob("shard-*.csv"))
    rows = read_parts(root)
    if quarantine_before is not None and len(rows):
        shard = pd.to_numeric(rows["shard"], errors="coerce").fillna(-1)  # (older quarantine rows have none)
        rows = rows[~((rows["status"] == "quarantined") & (shard < quarantine_before))]
    rows = rows.drop_duplicates(keep="last").reset_index(drop=True)
    rows = rows.astype(str)
    for column in _NUMERIC:  # typed in the file: opening parses no numbers (empty for quarantine rows: NaN)
        rows[column] = pd.to_numeric(rows[column].replace({"": None, "nan": None}), errors="coerce")
    write_atomic(folder / COMPACTED, writer=lambda tmp: rows.to_parquet(tmp, index=False))
    for part in parts:
        part.unlink(missing_ok=True)
    return len(rows)


def check_store(root: Path, info: StoreInfo) -> bool:
    """Whether ``root`` is a store made from the same layout, source and options as ``info`` (True) or a folder
    that may become one (False: absent, or empty but for the ingest lock); anything else is a
    :class:`StoreError`. Writes nothing."""
    meta_path = root / "store.json"
    if meta_path.exists():
        existing = ECGStore(root).info
        if (existing.layout, existing.source) != (info.layout, info.source):
            raise StoreError(
                f"{root}: this store holds layout {existing.layout!r} from {existing.source}; "
                f"use another --store for {info.layout!r} from {info.source}"
            )
        if existing.options != info.options:
            raise StoreError(f"{root}: this store was ingested with options {existing.options}, not {info.options}")
        return True
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: is a file, not a store folder; choose an empty or new folder")
    if root.exists() and any(p.name != STORE_LOCK for p in root.iterdir()):
        raise StoreError(f"{root}: exists and is not an ECG store; choose an empty or new folder")
    return False


def create_store(root: Path, info: StoreInfo) -> None:
    """Create an empty store, or check that an existing one was made from the same layout and source."""
    if check_store(root, info):
        return
    (root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    (root / TABLE_DIR).mkdir(exist_ok=True)
    write_atomic(root / "store.json", json.dumps(info.__dict__, indent=2))


def new_store_info(layout: str, source: Path, options: dict[str, Any], units: str = "mV") -> StoreInfo:
    resolved = source.resolve()
    return StoreInfo(layout=layout, source=str(resolved), options=options,
                     created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     root=str(resolved if resolved.is_dir() else resolved.parent), units=units)
