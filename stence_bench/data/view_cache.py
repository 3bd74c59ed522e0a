"""Per-encoder views of a store, computed once per input contract and cached beside the store.

A view holds every record prepared for one contract (leads selected, resampled, band-passed: see
:func:`stence_bench.data.views.prepare`) at full length, so that loaders only crop and normalise. Encoders that
declare the same contract share a view (the folder is named by :func:`~stence_bench.data.views.contract_key`).
A record that lacks some of the contract's leads is kept, those leads zero rows and named in the index (``missing``):
the protocol scores it on the lead sets it has (lead I of a single-lead recorder), never on a lead it lacks. A record
the contract cannot take (none of its leads, too short to filter) is left out of the view with its reason.

    store/views/<contract key>/
      contract.json         the contract, the store fingerprint it was built from, its chunks (written last)
      chunk-NNNNN-<h>.f32   the prepared samples of a chunk of records, record after record
      chunk-NNNNN-<h>.csv   record_id, offset, n_samples, missing (the contract's leads it lacks, "+"-joined), or
                            the reason it is left out; <h>: a hash of the
                            chunk's records and signals, so a chunk of a changed store is never reused

A view is built in chunks of :data:`CHUNK` records, in worker processes (``workers``), each chunk written under a
temporary name and renamed into place: a killed build resumes from the chunks it finished, and two processes
building the same view write identical chunks.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import write_atomic
from ..hashing import digest
from ..specs import EncoderSpec
from .store import ECGStore, UnitsError
from .views import Standardizer, contract_dict, contract_key, missing_leads, prepare
from .windows import window

VIEW_DIR = "views"


class ContractView:
    """A store's records in one encoder's contract. Build with :func:`build_view`."""

    def __init__(self, store: ECGStore, spec: EncoderSpec, folder: os.PathLike[str] | str, chunks: Sequence[str]):
        self.store, self.spec = store, spec
        self.folder = os.fspath(folder)
        frames = []
        for number, chunk in enumerate(chunks):
            index = pd.read_csv(os.path.join(self.folder, f"{chunk}.csv"),
                                dtype={"record_id": str, "reason": str, "missing": str}, keep_default_na=False)
            index["chunk"] = number
            frames.append(index)
        index = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*INDEX_COLUMNS, "chunk"])
        self.excluded = index[index["reason"] != ""][["record_id", "reason"]].reset_index(drop=True)
        kept = index[index["reason"] == ""]
        self.record_ids: list[str] = list(kept["record_id"])
        self._chunk = kept["chunk"].astype(np.int64).to_numpy()
        self._offset = kept["offset"].astype(np.int64).to_numpy()
        self._length = kept["n_samples"].astype(np.int64).to_numpy()
        #: ``[records, leads]``: whether each record has each of the contract's leads (a lacking one is zeros)
        self.present = np.ones((len(kept), len(spec.leads)), dtype=bool)
        missing = kept["missing"] if "missing" in kept else pd.Series([""] * len(kept))
        for i in np.flatnonzero((missing != "").to_numpy()):  # (most records lack no lead: nothing per record)
            lacking = set(str(missing.iat[i]).split("+"))
            self.present[i] = [lead not in lacking for lead in spec.leads]
        self._data = [np.memmap(os.path.join(self.folder, f"{chunk}.f32"), dtype=np.float32, mode="r")
                      if os.path.getsize(os.path.join(self.folder, f"{chunk}.f32")) else np.zeros(0, np.float32)
                      for chunk in chunks]

    def __len__(self) -> int:
        return len(self.record_ids)

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        """Record id -> position, built when a record is first looked up by id (batches read by position)."""
        return {rid: i for i, rid in enumerate(self.record_ids)}

    @property
    def lengths(self) -> np.ndarray:
        """Samples per lead of each record, in :attr:`record_ids` order."""
        return self._length

    def at(self, i: int) -> np.ndarray:
        """Record ``i`` (its position in :attr:`record_ids`) at the contract's rate and leads, full length:
        ``[n_leads, n]``, a read-only memory-mapped slice."""
        n_leads, n = len(self.spec.leads), int(self._length[i])
        start = int(self._offset[i])
        return self._data[self._chunk[i]][start : start + n_leads * n].reshape(n_leads, n)

    def prepared(self, record_id: str) -> np.ndarray:
        """The record at the contract's rate and leads, full length: ``[n_leads, n]`` (a memory-mapped view)."""
        return self.at(self._position[record_id])

    def window(self, record_id: str, *, offset: int | None = None, standardizer: Standardizer | None = None) -> np.ndarray:
        """The encoder's input for one record: ``[n_leads, spec.n_samples]``, cropped (centred by default) and
        normalised as the contract says."""
        return window(self.prepared(record_id), self.spec, standardizer=standardizer, offset=offset,
                      present=self.present[self._position[record_id]])

    def fit_standardizer(self, record_ids: Sequence[str]) -> Standardizer:
        """One per-lead scaler over every sample of ``record_ids`` (the training split), whole records as in the
        PTB-XL benchmark's global scaler: the ``zscore_dataset`` normalisation."""
        scaler = Standardizer(leads=self.spec.leads)
        for rid in record_ids:
            scaler.partial_fit(self.prepared(rid), self.present[self._position[rid]])  # a lacking lead adds nothing
        return scaler


def check_units(units: str, spec: EncoderSpec, *, where: str) -> None:
    """Refuse ``spec``'s contract on samples in ``units`` when it would feed them as if they were millivolts.

    A store of ``z-score`` samples (standardised per lead by the publisher: ``(x - m_lead) / s_lead``) serves every
    contract whose normalisation is invariant to a per-lead affine map, which is exactly the same input as from
    millivolts: ``zscore_record`` (each window's own mean and std) and ``zscore_dataset`` (a scaler fitted on the
    training records); resampling and band-pass filters are linear, and a normalisation follows them. A contract
    with ``normalization = "none"`` feeds the values as they are, in the units the encoder was built for
    (millivolts): refused."""
    if units == "mV" or spec.normalization != "none":
        return
    raise UnitsError(
        f"{where}: its signals are {units!r} (standardised by the publisher, not millivolts), but encoder "
        f"{spec.name!r} declares normalization 'none' and so expects millivolts; use an encoder whose contract "
        "normalises (zscore_record or zscore_dataset: the same inputs as from millivolts, docs/data.md#units)")


#: Records per chunk of a view: the unit of a parallel, resumable build.
CHUNK = 2048
INDEX_COLUMNS = ["record_id", "offset", "n_samples", "missing", "reason"]


def build_view(store: ECGStore, spec: EncoderSpec, *, progress: Callable[[int], None] | None = None,
               workers: int = 1) -> ContractView:
    """The view of ``store`` for ``spec``'s contract: reused when already built from the same store contents, else
    built in chunks (in ``workers`` processes; a killed build resumes from its finished chunks). ``progress`` is
    called with the number of records each finished chunk holds. A contract that assumes millivolts on a store
    that is not in millivolts is a :class:`UnitsError`."""
    check_units(store.info.units, spec, where=f"store {store.root} (layout {store.info.layout})")
    key = contract_key(spec)
    folder = store.root / VIEW_DIR / key
    description = {"contract": contract_dict(spec), "store_fingerprint": store.fingerprint(), "records": len(store)}
    marker = folder / "contract.json"
    if marker.is_file():
        found = json.loads(marker.read_text())
        if {k: found.get(k) for k in description} == description and "chunks" in found:
            return ContractView(store, spec, folder, found["chunks"])
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # the view is invalid until it is complete
    ids, checksums = store.manifest["record_id"].to_numpy(), store.manifest["checksum"].to_numpy()
    chunks = []
    for number, start in enumerate(range(0, len(ids), CHUNK)):
        stop = min(start + CHUNK, len(ids))
        name = f"chunk-{number:05d}-{digest([list(map(str, ids[start:stop])), list(map(str, checksums[start:stop]))], 8)}"
        chunks.append((name, start, stop))
    todo = [c for c in chunks if not ((folder / f"{c[0]}.csv").is_file() and (folder / f"{c[0]}.f32").is_file())]
    if progress and len(todo) < len(chunks):
        progress(sum(stop - start for name, start, stop in chunks if (name, start, stop) not in todo))
    _OPENED[str(store.root)] = store  # this process builds with the store it has; forked workers inherit it
    if workers <= 1 or len(todo) <= 1:
        for name, start, stop in todo:
            progress_n = _build_chunk(str(store.root), spec, str(folder), name, start, stop)
            if progress:
                progress(progress_n)
    else:
        from ..processes import WorkerPool

        with WorkerPool(min(workers, len(todo))) as pool:  # builders die with this process
            futures = [pool.submit(_build_chunk, str(store.root), spec, str(folder), *chunk) for chunk in todo]
            try:
                for future in as_completed(futures):
                    n = future.result()
                    if progress:
                        progress(n)
            except BaseException:
                pool.kill()  # a chunk in flight is never renamed into place: the next build makes it again
                raise
    names = [name for name, _, _ in chunks]
    write_atomic(marker, json.dumps({**description, "chunks": names}, indent=2, sort_keys=True))
    for stale in folder.iterdir():  # chunks of an earlier store, and files of the single-file format
        if stale.name != "contract.json" and stale.stem not in names and not stale.name.endswith(".tmp"):
            stale.unlink(missing_ok=True)
    return ContractView(store, spec, folder, names)


#: The store each process opened for building chunks (opening a large store takes seconds: once per process).
_OPENED: dict[str, ECGStore] = {}


def _build_chunk(root: str, spec: EncoderSpec, folder: str, name: str, start: int, stop: int) -> int:
    """Prepare records ``start:stop`` of the store (in any process) into chunk ``name``: data, then index."""
    store = _OPENED.get(root)
    if store is None or len(store) < stop:
        store = _OPENED[root] = ECGStore(root)
    rows = []

    def samples(tmp: Path) -> None:
        offset = 0
        with open(tmp, "wb") as fh:
            for i in range(start, stop):
                rid = store.manifest["record_id"].iat[i]
                leads = store.leads(i)
                try:
                    x = prepare(store.signal(i), float(store.manifest["fs"].iat[i]), leads, spec, fill_missing=True)
                except ValueError as exc:
                    rows.append({"record_id": rid, "offset": -1, "n_samples": 0, "missing": "",
                                 "reason": str(exc).splitlines()[0]})
                else:
                    x.tofile(fh)
                    rows.append({"record_id": rid, "offset": offset, "n_samples": x.shape[1],
                                 "missing": "+".join(missing_leads(leads, spec)), "reason": ""})
                    offset += x.size

    write_atomic(Path(folder) / f"{name}.f32", writer=samples)  # the data first, then the index that shows it
    write_atomic(Path(folder) / f"{name}.csv", pd.DataFrame(rows, columns=INDEX_COLUMNS).to_csv(index=False))
    return stop - start
