"""Encoder windows cut from a per-contract view, and the loader that streams them to every stage.

The one place where windows are cut and normalised (:func:`window` and :func:`apply_contract`, one record as an
encoder's input, use it too):

- :class:`Windows`: a dataset's records in one encoder's contract, read where they lie (the memory-mapped view
  cache). :meth:`Windows.cut` crops each window at its offset inside its record (zero-padding a record shorter
  than a window); :class:`Normalizer` applies the contract's normalisation over each window's own samples,
  leaving the padding at zero.
- :class:`Batches`: a ``torch.utils.data.Dataset`` whose items are whole batches described by a :class:`Cut`
  (rows, offsets, windows per record). A plan (an iterable of cuts, drawn in the main process from the run's
  seeded generators) is its sampler, so what a batch holds never depends on how many loader processes cut it.
  :func:`loader` wraps them in a ``DataLoader`` with worker processes, pinned memory and prefetch where asked.

Memory is set by the batch, not by the dataset: nothing here holds more than the batches in flight.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..specs import EncoderSpec
from .store import UnitsError
from .views import Standardizer, check_standardizer, fit_window, prepare

#: Environment variable: loader worker processes (default: 0 on CPU, 4 with a GPU). ``run --loader-workers``.
ENV_LOADER_WORKERS = "STENCE_BENCH_LOADER_WORKERS"


@dataclass(frozen=True)
class Cut:
    """What one batch holds: the window of record ``rows[i]`` starting at ``offsets[i]``; ``counts`` (evaluation)
    says how many consecutive windows belong to each record; ``normalize`` False keeps millivolts (the batch then
    carries its :class:`Normalizer`); ``tag`` is handed back with the batch (e.g. the batch's positions)."""

    rows: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray | None = None
    normalize: bool = True
    tag: Any = None


class Windows:
    """A dataset's records in one encoder's contract, read where they lie, cut into the encoder's windows on demand.

    Every window of a record lies inside that record: random crops and sliding windows start at offsets within
    the record's own length, and a record shorter than one window gives one window, normalised over its own
    samples and zero-padded at the end (the contract's rule). ``zscore_record`` standardises each window's leads
    over the window's own samples (``zscore_all_leads``: all leads of the window together); ``zscore_dataset`` applies ``scaler`` (per-lead statistics of the training
    records), batch by batch, never by rewriting the data.

    ``read(i)`` gives record ``i`` as ``[leads, length]`` float32 (a memory-mapped slice of the view cache).
    """

    def __init__(self, spec: EncoderSpec, record_ids: list[str], read: Callable[[int], np.ndarray],
                 lengths: np.ndarray, scaler: Standardizer | None = None,
                 excluded: pd.DataFrame | None = None, units: str = "mV", present: np.ndarray | None = None):
        if spec.normalization == "zscore_dataset" and scaler is None:
            raise ValueError(f"encoder {spec.name!r} normalises by dataset statistics: Windows needs a scaler")
        self.spec, self.record_ids, self.read = spec, list(record_ids), read
        #: the store's units (``mV``, or ``z-score`` for a publisher-standardised source such as EchoNext)
        self.units = units
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.scaler = scaler
        self.excluded = excluded if excluded is not None else pd.DataFrame()
        #: ``[records, leads]``: whether each record has each lead of the contract (a lacking one reads as zeros,
        #: is left out of the normalisation's statistics and stays zero)
        self.present = (np.ones((len(self.record_ids), len(spec.leads)), dtype=bool) if present is None
                        else np.asarray(present, dtype=bool).reshape(len(self.record_ids), len(spec.leads)))

    def has_leads(self, leads: Iterable[str]) -> np.ndarray:
        """Which records have every one of ``leads`` (names of the contract's leads): ``[records]`` bool."""
        columns = [self.spec.leads.index(lead) for lead in leads]
        return np.asarray(self.present[:, columns].all(axis=1))

    @classmethod
    def of_arrays(cls, spec: EncoderSpec, record_ids: list[str], arrays: list[np.ndarray],
                  scaler: Standardizer | None = None, present: np.ndarray | None = None) -> Windows:
        """Windows over records held in memory (tests, small tools)."""
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
        return cls(spec, record_ids, arrays.__getitem__, np.array([a.shape[-1] for a in arrays]), scaler,
                   present=present)

    @cached_property
    def position(self) -> dict[str, int]:
        return {rid: i for i, rid in enumerate(self.record_ids)}

    # -- cutting -------------------------------------------------------------------------------------------

    def cut(self, rows: np.ndarray, offsets: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The raw (un-normalised) window of record ``rows[i]`` starting at ``offsets[i]``: ``[B, leads, n]``
        float32, zero after each window's ``valid`` samples (only a record shorter than the window has any)."""
        n = self.spec.n_samples
        out = np.empty((len(rows), len(self.spec.leads), n), dtype=np.float32)
        valid = np.empty(len(rows), dtype=np.int64)
        for i, (row, offset) in enumerate(zip(rows, offsets)):
            record = self.read(int(row))
            out[i] = fit_window(record, n, offset=min(int(offset), max(record.shape[-1] - n, 0)))
            valid[i] = min(record.shape[-1], n)
        return torch.from_numpy(out), valid

    def normalizer(self, valid: np.ndarray, rows: np.ndarray | None = None) -> Normalizer:
        present = None if rows is None or self.present.all() else self.present[np.asarray(rows, dtype=np.int64)]
        return Normalizer(self.spec, self.scaler, valid, present)

    def take(self, cut: Cut, lead_mask: torch.Tensor | None = None) -> dict[str, Any]:
        """The batch ``cut`` describes: ``x`` (normalised, lead mask applied; or millivolts with ``normalize`` for
        :attr:`Cut.normalize` False), ``counts`` and ``tag``."""
        if not cut.normalize and self.units != "mV":
            raise UnitsError(f"encoder {self.spec.name!r}: an objective asks for windows in millivolts "
                             f"(physical_units, such as a VCG augmentation), but this dataset's signals are "
                             f"{self.units!r} (standardised by the publisher); pretrain it with an objective that "
                             "does not augment in physical units, or on another dataset")
        x, valid = self.cut(cut.rows, cut.offsets)
        out: dict[str, Any] = {"counts": cut.counts, "tag": cut.tag}
        if cut.normalize:
            out["x"] = _mask(self.normalizer(valid, cut.rows)(x), lead_mask)
        else:
            out["x"], out["normalize"] = _mask(x, lead_mask), self.normalizer(valid, cut.rows)
        return out

    def random_offsets(self, rows: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """A uniformly drawn start of a window inside each record (0 for a record no longer than a window)."""
        spare = np.maximum(self.lengths[rows] - self.spec.n_samples, 0)
        return (generator.random(len(rows)) * (spare + 1)).astype(np.int64)

    def centre_offsets(self, rows: np.ndarray) -> np.ndarray:
        return np.maximum(self.lengths[np.asarray(rows)] - self.spec.n_samples, 0) // 2

    def sliding_starts(self, row: int) -> list[int]:
        """Starts of a record's evaluation windows: every half window from 0 while the window fits inside the
        record (one window at 0 for a record no longer than a window)."""
        n = self.spec.n_samples
        stride = max(n // 2, 1)
        return list(range(0, max(int(self.lengths[row]) - n, 0) + 1, stride))

    def sliding_cut(self, rows: np.ndarray, tag: Any = None) -> Cut:
        """Every evaluation window of each record of ``rows`` (:meth:`sliding_starts`), as one cut."""
        rows = np.asarray(rows)
        starts = [self.sliding_starts(int(r)) for r in rows]
        counts = np.array([len(s) for s in starts], dtype=np.int64)
        offsets = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
        return Cut(np.repeat(rows, counts), offsets, counts=counts, tag=tag)

    # -- the same, in the calling process (tests, small tools) ----------------------------------------------

    def crops(self, rows: np.ndarray, generator: np.random.Generator, lead_mask: torch.Tensor | None = None,
              part: slice = slice(None)) -> torch.Tensor:
        """A random window of each record (training). ``part``: cut only these of ``rows`` (a rank's slice of a
        global batch) after drawing the offsets of all of them, so every rank's generator stays in step."""
        rows = np.asarray(rows)
        offsets = self.random_offsets(rows, generator)
        return self.take(Cut(rows[part], offsets[part]), lead_mask)["x"]

    def crops_physical(self, rows: np.ndarray, generator: np.random.Generator,
                       part: slice = slice(None)) -> tuple[torch.Tensor, Normalizer]:
        """:meth:`crops` before normalisation, in millivolts, and the :class:`Normalizer` that finishes them (for
        augmentations that assume lead geometry); refused on a store whose samples are not millivolts."""
        rows = np.asarray(rows)
        offsets = self.random_offsets(rows, generator)
        batch = self.take(Cut(rows[part], offsets[part], normalize=False))
        return batch["x"], batch["normalize"]

    def centre(self, rows: np.ndarray, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The centred window of each record (validation during training: one window, not all)."""
        rows = np.asarray(rows)
        return self.take(Cut(rows, self.centre_offsets(rows)), lead_mask)["x"]

    def sliding(self, rows: np.ndarray, lead_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Every evaluation window of each record (:meth:`sliding_starts`): ``[sum(counts), leads, n]`` and the
        number of windows of each record, ``counts`` (records of different lengths have different counts)."""
        batch = self.take(self.sliding_cut(rows), lead_mask)
        return batch["x"], batch["counts"]

    def sliding_chunks(self, rows: np.ndarray, max_windows: int = 512) -> Iterator[Cut]:
        """``rows`` cut into consecutive runs of about ``max_windows`` evaluation windows (at least one record each),
        each tagged with its slice of ``rows``."""
        rows = np.asarray(rows)
        counts = [len(self.sliding_starts(int(r))) for r in rows]
        start, total = 0, 0
        for i, k in enumerate(counts):
            if total and total + k > max_windows:
                yield self.sliding_cut(rows[start:i], tag=(start, i))
                start, total = i, 0
            total += k
        if start < len(rows):
            yield self.sliding_cut(rows[start:], tag=(start, len(rows)))


def _mask(x: torch.Tensor, lead_mask: torch.Tensor | None) -> torch.Tensor:
    return x if lead_mask is None else x * lead_mask[None, :, None]


class Normalizer:
    """An encoder contract's normalisation of a batch of windows whose first ``valid[i]`` samples are signal and
    the rest zero padding: statistics over the signal only, padding left at zero. ``present`` (``[B, leads]``
    bool, default all): the leads each window's record has; a lacking lead (zeros) is left out of the statistics
    (``zscore_all_leads``) and stays zero. Callable on any device."""

    def __init__(self, spec: EncoderSpec, scaler: Standardizer | None, valid: np.ndarray | list[int],
                 present: np.ndarray | None = None):
        self.spec, self.scaler = spec, scaler
        self.valid = np.asarray(valid, dtype=np.int64)
        self.present = None if present is None else np.asarray(present, dtype=bool).reshape(len(self.valid), -1)
        if spec.normalization == "zscore_dataset" and (scaler is None or not scaler.fitted):
            raise ValueError(f"encoder {spec.name!r} declares normalization 'zscore_dataset': pass a Standardizer "
                             "fitted on the training records")

    def part(self, rows: slice) -> Normalizer:
        """The normaliser of a part of the batch (its windows ``rows``)."""
        return Normalizer(self.spec, self.scaler, self.valid[rows],
                          None if self.present is None else self.present[rows])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        lacking = (np.zeros(len(self.valid), dtype=bool) if self.present is None
                   else ~self.present.all(axis=1))
        irregular = np.flatnonzero((self.valid < n) | lacking)
        if self.spec.normalization in ("zscore_record", "zscore_all_leads"):
            dims = (-1,) if self.spec.normalization == "zscore_record" else (-2, -1)  # each lead, or all together
            out = _zscore(x, dims)
            for i in irregular:  # a record shorter than the window, or lacking leads: statistics of its own samples
                m = int(self.valid[i])  # and leads, then zeros
                have = (torch.ones(x.shape[1], dtype=torch.bool) if self.present is None
                        else torch.from_numpy(self.present[i])).to(x.device)
                out[i] = 0.0
                if m and bool(have.any()):
                    own = _zscore(x[i : i + 1, have, :m], dims)[0]
                    out[i, have, :m] = own
            return out
        if self.spec.normalization == "zscore_dataset":
            assert self.scaler is not None
            # in float64, as the scaler's statistics (a float32 shortcut halves this step's time but moves the
            # quickstart's numbers: training amplifies a last-bit difference into a different AUROC on small sets)
            mean = torch.as_tensor(self.scaler.mean, dtype=torch.float64, device=x.device)[None, :, None]
            std = torch.as_tensor(self.scaler.std, dtype=torch.float64, device=x.device)[None, :, None]
            x = ((x.double() - mean) / (std + self.scaler.eps)).to(x.dtype)
            for i in irregular:
                x[i, :, int(self.valid[i]) :] = 0.0
                if self.present is not None:
                    x[i, torch.from_numpy(~self.present[i]).to(x.device)] = 0.0
        return x


def _zscore(x: torch.Tensor, dims: tuple[int, ...] = (-1,)) -> torch.Tensor:
    std, mean = torch.std_mean(x, dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / (std + 1e-6)


# -- the loader ------------------------------------------------------------------------------------------------


class Batches(torch.utils.data.Dataset):
    """Whole batches of windows: item ``cut`` (a :class:`Cut`) is :meth:`Windows.take` of it. Used as the dataset
    of a ``DataLoader`` whose sampler is a plan of cuts (``batch_size=None``: the plan makes the batches)."""

    def __init__(self, windows: Windows, lead_mask: torch.Tensor | None = None):
        self.windows, self.lead_mask = windows, lead_mask

    def __getitem__(self, cut: Cut) -> dict[str, Any]:
        return self.windows.take(cut, self.lead_mask)

    def __len__(self) -> int:  # a plan decides how many batches there are
        return 0


class _Plan(torch.utils.data.Sampler):
    """A sampler yielding the cuts of ``plan`` (drawn lazily in the main process, in order)."""

    def __init__(self, plan: Iterable[Cut]):
        self.plan = plan

    def __iter__(self) -> Iterator[Cut]:
        return iter(self.plan)


def loader_workers(device: torch.device | None = None) -> int:
    """Loader worker processes: ``STENCE_BENCH_LOADER_WORKERS``, else 4 with a GPU and 0 on CPU (the batch is cut
    in the training process: on CPU the model, not the cutting, is the bottleneck; see docs/benchmarks.md)."""
    value = os.environ.get(ENV_LOADER_WORKERS, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = -1
        if n < 0:
            from ..errors import StenceBenchError

            raise StenceBenchError(f"{ENV_LOADER_WORKERS}={value!r}: not a number of processes (0 or more)")
        return n
    return 4 if device is not None and device.type == "cuda" else 0


def loader(windows: Windows, plan: Iterable[Cut], *, lead_mask: torch.Tensor | None = None,
           device: torch.device | None = None, workers: int | None = None) -> Iterable[dict[str, Any]]:
    """The batches of ``plan``, cut by ``workers`` loader processes (default :func:`loader_workers`) ahead of the
    training loop, pinned for a GPU; with no workers, cut here, one at a time, as they are asked for."""
    workers = loader_workers(device) if workers is None else workers
    batches = Batches(windows, lead_mask)
    if workers == 0:
        return (batches[cut] for cut in plan)
    cuda = device is not None and device.type == "cuda"
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=_Plan(plan), num_workers=workers,
                                       collate_fn=_as_cut, pin_memory=cuda, prefetch_factor=4, persistent_workers=False,
                                       worker_init_fn=functools.partial(_worker_init, os.getpid()))


def _as_cut(batch: Any) -> Any:
    """A batch as :meth:`Windows.take` made it (the default would turn its NumPy arrays into tensors)."""
    return batch


def _worker_init(parent_pid: int, _: int) -> None:
    """A loader worker dies with the process that started it and cuts on one thread."""
    from ..processes import die_with_parent

    die_with_parent(parent_pid)
    torch.set_num_threads(1)


def window(prepared: np.ndarray, spec: EncoderSpec, *, standardizer: Standardizer | None = None,
           offset: int | None = None, normalize: bool = True, present: np.ndarray | None = None) -> np.ndarray:
    """The window the encoder sees, from a :func:`prepare` d signal: crop, normalise, then zero-pad, with the
    harness's one implementation (:class:`stence_bench.data.windows.Windows`, which imports torch).

    ``offset`` places the window, in samples at ``spec.sampling_rate`` (default: centred); ``present``: the
    contract's leads the record has (default: all; a lacking one is zeros, kept out of the statistics).
    """
    if normalize:
        check_standardizer(spec, standardizer)
    n = spec.n_samples
    length = prepared.shape[-1]
    if length <= n and offset not in (None, 0):
        raise ValueError(f"offset {offset} given, but the record has only {length} samples "
                         f"at {spec.sampling_rate:g} Hz for a window of {n}")
    if offset is None:
        offset = max(length - n, 0) // 2
    elif not 0 <= offset <= max(length - n, 0):
        raise ValueError(f"offset {offset} is outside [0, {max(length - n, 0)}] for {length} samples "
                         f"and a window of {n}")
    contract = spec if normalize else spec.model_copy(update={"normalization": "none"})
    windows = Windows.of_arrays(contract, ["record"], [prepared], standardizer if normalize else None,
                                present=None if present is None else np.asarray(present)[None])
    return windows.take(Cut(np.array([0]), np.array([offset])))["x"][0].numpy()


def apply_contract(signal: np.ndarray, fs: float, leads: Sequence[str], spec: EncoderSpec, *,
                   standardizer: Standardizer | None = None, offset: int | None = None,
                   normalize: bool = True) -> np.ndarray:
    """One record as ``spec``'s input: float32 ``[len(spec.leads), spec.n_samples]`` (order: :mod:`stence_bench.data.views`).

    :func:`prepare` then :func:`window`. ``normalize=False`` stops before normalising: what
    :meth:`Standardizer.partial_fit` is fed for a ``zscore_dataset`` encoder.
    """
    if normalize:
        check_standardizer(spec, standardizer)  # fail before any work
    try:
        prepared = prepare(signal, fs, leads, spec)
    except ValueError as exc:
        raise ValueError(f"apply_contract: {exc}") from None
    try:
        return window(prepared, spec, standardizer=standardizer, offset=offset, normalize=normalize)
    except ValueError as exc:
        raise ValueError(f"apply_contract: {exc}") from None
