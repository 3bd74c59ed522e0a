"""Per-encoder views of a store, computed once per input contract and cached beside the store.

A view holds every record prepared for one contract (leads selected, resampled, band-passed: see
:func:`stence_bench.data.views.prepare`) at full length, so that loaders only crop and normalise. Encoders that
declare the same contract share a view (the folder is named by :func:`~stence_bench.data.views.contract_key`).
A record the contract cannot take (a lead it lacks, too short to filter) is left out of the view with its reason.

    store/views/<contract key>/
      contract.json   the contract, the store fingerprint it was built from
      view.f32        the prepared samples, record after record
      index.csv       record_id, offset, n_samples (or the reason it is left out)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..specs import EncoderSpec
from .store import ECGStore, StoreError, write_atomic
from .views import Standardizer, contract_dict, contract_key, prepare, window

VIEW_DIR = "views"


class ContractView:
    """A store's records in one encoder's contract. Build with :func:`build_view`."""

    def __init__(self, store: ECGStore, spec: EncoderSpec, folder: os.PathLike[str] | str):
        self.store, self.spec = store, spec
        self.folder = os.fspath(folder)
        index = pd.read_csv(os.path.join(self.folder, "index.csv"), dtype={"record_id": str, "reason": str},
                            keep_default_na=False)
        self.excluded = index[index["reason"] != ""][["record_id", "reason"]].reset_index(drop=True)
        kept = index[index["reason"] == ""]
        self.record_ids: list[str] = list(kept["record_id"])
        self._offset = kept["offset"].astype(np.int64).to_numpy()
        self._length = kept["n_samples"].astype(np.int64).to_numpy()
        self._position = {rid: i for i, rid in enumerate(self.record_ids)}
        size = int((self._length * len(spec.leads)).sum())
        path = os.path.join(self.folder, "view.f32")
        self._data = np.memmap(path, dtype=np.float32, mode="r") if size else np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Samples per lead of each record, in :attr:`record_ids` order."""
        return self._length

    def at(self, i: int) -> np.ndarray:
        """Record ``i`` (its position in :attr:`record_ids`) at the contract's rate and leads, full length:
        ``[n_leads, n]``, a read-only memory-mapped slice."""
        n_leads, n = len(self.spec.leads), int(self._length[i])
        start = int(self._offset[i])
        return self._data[start : start + n_leads * n].reshape(n_leads, n)

    def prepared(self, record_id: str) -> np.ndarray:
        """The record at the contract's rate and leads, full length: ``[n_leads, n]`` (a memory-mapped view)."""
        return self.at(self._position[record_id])

    def window(self, record_id: str, *, offset: int | None = None, standardizer: Standardizer | None = None) -> np.ndarray:
        """The encoder's input for one record: ``[n_leads, spec.n_samples]``, cropped (centred by default) and
        normalised as the contract says."""
        return window(self.prepared(record_id), self.spec, standardizer=standardizer, offset=offset)

    def fit_standardizer(self, record_ids: Sequence[str]) -> Standardizer:
        """One per-lead scaler over every sample of ``record_ids`` (the training split), whole records as in the
        PTB-XL benchmark's global scaler: the ``zscore_dataset`` normalisation."""
        scaler = Standardizer(leads=self.spec.leads)
        for rid in record_ids:
            scaler.partial_fit(self.prepared(rid))
        return scaler


class UnitsError(StoreError):
    """An encoder contract (or an objective) that assumes millivolts, on a store whose signals are not."""


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


def build_view(store: ECGStore, spec: EncoderSpec, *, progress: Callable[[int], None] | None = None) -> ContractView:
    """The view of ``store`` for ``spec``'s contract: reused when already built from the same store contents.
    A contract that assumes millivolts on a store that is not in millivolts is a :class:`UnitsError`."""
    check_units(store.info.units, spec, where=f"store {store.root} (layout {store.info.layout})")
    key = contract_key(spec)
    folder = store.root / VIEW_DIR / key
    fingerprint = store.fingerprint()
    description = {"contract": contract_dict(spec), "store_fingerprint": fingerprint, "records": len(store)}
    marker = folder / "contract.json"
    if marker.is_file() and json.loads(marker.read_text()) == description:
        return ContractView(store, spec, folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # the view is invalid until it is complete
    rows = []
    offset = 0
    tmp = folder / "view.f32.tmp"
    with open(tmp, "wb") as fh:
        for i, rid in enumerate(store.manifest["record_id"]):
            try:
                x = prepare(store.signal(i), float(store.manifest.iloc[i]["fs"]), store.leads(i), spec)
            except ValueError as exc:
                rows.append({"record_id": rid, "offset": -1, "n_samples": 0, "reason": str(exc).splitlines()[0]})
            else:
                x.tofile(fh)
                rows.append({"record_id": rid, "offset": offset, "n_samples": x.shape[1], "reason": ""})
                offset += x.size
            if progress:
                progress(1)
    os.replace(tmp, folder / "view.f32")
    write_atomic(folder / "index.csv", pd.DataFrame(rows, columns=["record_id", "offset", "n_samples", "reason"])
                 .to_csv(index=False))
    write_atomic(marker, json.dumps(description, indent=2, sort_keys=True))
    return ContractView(store, spec, folder)
