"""Per-encoder views: turn a stored record into exactly the input an encoder's contract declares.

A stored record is float32 ``[n_leads, n_samples]`` in mV at its own sampling rate, with canonical lead names.
:func:`stence_bench.data.windows.apply_contract` maps it to float32 ``[len(spec.leads), spec.n_samples]``:

1. :func:`select_leads` - first, so no work is spent on leads the encoder does not take;
2. :func:`resample` to ``spec.sampling_rate`` - anti-aliased polyphase, so the filter band below is in the
   encoder's own rate, as declared;
3. :func:`bandpass` (if ``spec.bandpass_hz``) - on the whole record, *before* cropping, so the filter's edge
   transients (seconds long for a 0.5 Hz high-pass) fall at the record's ends, not inside the window;
4. crop to the window (centred, or at ``offset`` samples of the resampled record);
5. normalise (``zscore_record``: each lead over the window the encoder sees; ``zscore_all_leads``: the window with
   one mean and standard deviation over all its leads; ``zscore_dataset`` with a fitted :class:`Standardizer`);
6. zero-pad at the end when the record is shorter than the window - after normalising, so padding never
   enters the statistics and reads as "no signal" (0 = the mean) in normalised units.

Steps 1-3 (:func:`prepare`) are NumPy/SciPy and make the view caches; steps 4-6 are the harness's one window
implementation, :class:`stence_bench.data.windows.Windows` (torch, imported only by :func:`window`), which every
stage of a run uses too. :func:`contract_key` names a cached view, shared by every encoder with the same contract.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

from ..hashing import digest
from ..specs import EncoderSpec

#: Largest ``up`` or ``down`` factor :func:`resample` accepts (e.g. 360 -> 500 Hz is 25/18; 257 -> 100 is 100/257).
MAX_RESAMPLE_FACTOR = 1000
#: Relative tolerance between the rational up/down ratio and ``fs_out / fs_in``.
RESAMPLE_RTOL = 1e-6
#: Bump when the view pipeline changes numbers for an unchanged contract: it is hashed into :func:`contract_key`.
VIEW_VERSION = 2  # 2: records lacking some of the contract's leads are kept, those leads zero (and named)
#: The :class:`~stence_bench.specs.EncoderSpec` fields that change the view.
CONTRACT_FIELDS: tuple[str, ...] = ("sampling_rate", "window_s", "leads", "bandpass_hz", "normalization")


def _rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """``(up, down)`` with ``up / down == fs_out / fs_in`` within :data:`RESAMPLE_RTOL`, else ValueError."""
    for name, fs in (("fs_in", fs_in), ("fs_out", fs_out)):
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"resample: {name} must be a positive finite rate, got {fs!r}")
    exact = fs_out / fs_in
    ratio = Fraction(exact).limit_denominator(MAX_RESAMPLE_FACTOR)
    up, down = ratio.numerator, ratio.denominator
    if up == 0 or up > MAX_RESAMPLE_FACTOR or abs(up / down - exact) > RESAMPLE_RTOL * exact:
        raise ValueError(
            f"resample: cannot resample {fs_in:g} Hz -> {fs_out:g} Hz: the ratio {exact:.9g} has no up/down "
            f"approximation with factors <= {MAX_RESAMPLE_FACTOR} within a relative {RESAMPLE_RTOL:g}"
        )
    return up, down


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample along the last axis with an anti-aliasing polyphase filter; float32 out.

    Equal rates return the input as is (float32, no copy when it already is). Output length is
    ``ceil(n * up / down)``. Each row's mean is taken out before filtering and put back after, so a baseline
    offset comes through exactly (the polyphase filter's phases differ in DC gain by ~1e-3, which would
    otherwise turn a 1 V offset into a periodic ripple of ~1 mV), and the ends are extended linearly
    (``padtype="line"``), so a sloping baseline does not ring at the record's edges.
    """
    up, down = _rate_ratio(float(fs_in), float(fs_out))
    signal = np.asarray(signal)
    if up == down:
        return signal.astype(np.float32, copy=False)
    x = signal.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,))
    out = resample_poly(x - mean, up, down, axis=-1, padtype="line")
    out += mean
    return out.astype(np.float32)


def fit_window(signal: np.ndarray, n_samples: int, *, offset: int | None = None) -> np.ndarray:
    """Crop the last axis to ``n_samples`` (at ``offset``, default centred) or zero-pad it at the end.

    ``offset`` must lie in ``[0, max(0, length - n_samples)]``; a crop is a view of ``signal``.
    """
    if n_samples < 1:
        raise ValueError(f"fit_window: n_samples must be >= 1, got {n_samples}")
    signal = np.asarray(signal)
    length = signal.shape[-1]
    spare = max(0, length - n_samples)
    if offset is None:
        offset = spare // 2
    elif not 0 <= offset <= spare:
        raise ValueError(f"fit_window: offset {offset} is outside [0, {spare}] for {length} samples "
                         f"and a window of {n_samples}")
    if length >= n_samples:
        return signal[..., offset:offset + n_samples]
    pad = [(0, 0)] * (signal.ndim - 1) + [(0, n_samples - length)]
    return np.pad(signal, pad)


def select_leads(signal: np.ndarray, leads_in: Sequence[str], leads_out: Sequence[str], *,
                 fill_missing: bool = False) -> np.ndarray:
    """Rows of ``signal`` (named ``leads_in``) in the order ``leads_out``; a missing lead is a ValueError, or with
    ``fill_missing`` a row of zeros (a record with none of ``leads_out`` is still a ValueError)."""
    signal = np.asarray(signal)
    leads_in, leads_out = tuple(leads_in), tuple(leads_out)
    if signal.ndim < 1 or signal.shape[0] != len(leads_in):
        raise ValueError(f"select_leads: signal has shape {signal.shape} but {len(leads_in)} lead names")
    if len(set(leads_in)) != len(leads_in):
        raise ValueError(f"select_leads: repeated lead name in {leads_in}")
    if leads_in == leads_out:
        return signal
    index = {name: i for i, name in enumerate(leads_in)}
    missing = [name for name in leads_out if name not in index]
    if missing and (not fill_missing or len(missing) == len(leads_out)):
        raise ValueError(f"record lacks lead(s) {', '.join(missing)}; it has {', '.join(leads_in)}")
    if missing:
        out = np.zeros((len(leads_out), *signal.shape[1:]), dtype=signal.dtype)
        for j, name in enumerate(leads_out):
            if name in index:
                out[j] = signal[index[name]]
        return out
    return signal[[index[name] for name in leads_out]]


def missing_leads(leads_in: Sequence[str], spec: EncoderSpec) -> list[str]:
    """The leads of ``spec``'s contract a record with ``leads_in`` lacks (the view holds them as zeros)."""
    have = set(leads_in)
    return [name for name in spec.leads if name not in have]


@functools.lru_cache(maxsize=64)
def bandpass_design(fs: float, low: float, high: float, order: int = 4) -> np.ndarray | None:
    """The (cached, read-only) Butterworth second-order sections for :func:`bandpass`; None: nothing to do.

    ``low == 0`` designs a low-pass only, ``high >= fs / 2`` a high-pass only; a band-pass has ``2 * order`` poles.
    """
    nyquist = fs / 2
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"bandpass: fs must be a positive finite rate, got {fs!r}")
    if not (0 <= low < high) or order < 1:
        raise ValueError(f"bandpass: need 0 <= low < high and order >= 1, got low={low}, high={high}, order={order}")
    if low >= nyquist:
        raise ValueError(f"bandpass: low={low} Hz is not below the Nyquist frequency {nyquist:g} Hz")
    if low == 0 and high >= nyquist:
        return None
    if low == 0:
        sos = butter(order, high, btype="lowpass", fs=fs, output="sos")
    elif high >= nyquist:
        sos = butter(order, low, btype="highpass", fs=fs, output="sos")
    else:
        sos = butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    sos.setflags(write=False)
    return sos


def filter_padlen(sos: np.ndarray) -> int:
    """The edge padding ``scipy.signal.sosfiltfilt`` uses by default; a signal must be longer than this."""
    zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - zeros)


def bandpass(signal: np.ndarray, fs: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth filter along the last axis (forward and backward), float32 out.

    ``low == 0``: low-pass only; ``high >= fs / 2``: high-pass only; both: returned unfiltered. A signal no longer
    than the filter's edge padding (27 samples for the default band-pass) is a ValueError, never filtered with
    a shortened padding: so few samples cannot be meaningfully filtered, and the caller should quarantine them.
    """
    sos = bandpass_design(float(fs), float(low), float(high), int(order))
    signal = np.asarray(signal)
    if sos is None:
        return signal.astype(np.float32, copy=False)
    padlen = filter_padlen(sos)
    if signal.shape[-1] <= padlen:
        raise ValueError(f"bandpass: signal of {signal.shape[-1]} samples is too short to filter "
                         f"({low:g}-{high:g} Hz at {fs:g} Hz needs more than {padlen} samples)")
    # sosfilt needs a writable array: filter with a copy of the cached, read-only design
    out = sosfiltfilt(sos.copy(), signal.astype(np.float64, copy=False), axis=-1, padlen=padlen)
    return out.astype(np.float32)


class Standardizer:
    """One per-lead mean and std over many records (a global scaler fitted on the training folds).

    :meth:`partial_fit` takes one ``[n_leads, n_samples]`` record at a time; counts, means and centred sums of
    squares are kept per lead in float64 and merged with Chan et al.'s pairwise update, so a large baseline offset
    does not cancel away the variance. A record that lacks some leads (``present``) adds to the others only: a lead's
    statistics are over the records that have it (a lead no record had gets mean 0, std 1). The std is the
    population one (``ddof=0``), as ``np.std``.
    """

    def __init__(self, leads: Sequence[str] | None = None, eps: float = 1e-6):
        self.leads: tuple[str, ...] | None = tuple(leads) if leads is not None else None
        self.eps = float(eps)
        self._n: np.ndarray | None = None  # samples per lead
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    @property
    def count(self) -> int:
        """Samples of the lead with the most (every lead's, when every record had every lead)."""
        return 0 if self._n is None else int(self._n.max())

    @property
    def fitted(self) -> bool:
        return self.count > 0

    def _check_shape(self, signal: np.ndarray, what: str) -> None:
        n_leads = len(self._mean) if self._mean is not None else (len(self.leads) if self.leads else None)
        if signal.ndim != 2:
            raise ValueError(f"Standardizer.{what}: expected [n_leads, n_samples], got shape {signal.shape}")
        if n_leads is not None and signal.shape[0] != n_leads:
            raise ValueError(f"Standardizer.{what}: signal has {signal.shape[0]} leads, the scaler {n_leads}")

    def partial_fit(self, signal: np.ndarray, present: np.ndarray | None = None) -> Standardizer:
        """Add one record's samples to the running per-lead statistics; ``present`` (bool per lead): the leads it
        has (default: all), the others left as they are."""
        x = np.asarray(signal, dtype=np.float64)
        self._check_shape(x, "partial_fit")
        m = x.shape[1]
        leads = x.shape[0]
        if self._n is None:
            self._n, self._mean, self._m2 = np.zeros(leads), np.zeros(leads), np.zeros(leads)
        if m == 0:
            return self
        if not np.isfinite(x).all():
            raise ValueError("Standardizer.partial_fit: signal has non-finite samples")
        have = np.ones(leads, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        assert self._mean is not None and self._m2 is not None
        batch_mean = x.mean(axis=1)
        batch_m2 = np.square(x - batch_mean[:, None]).sum(axis=1)
        n = self._n
        total = n + m
        delta = batch_mean - self._mean
        mean = self._mean + delta * (m / total)
        m2 = self._m2 + batch_m2 + np.square(delta) * (n * m / total)
        self._mean = np.where(have, mean, self._mean)
        self._m2 = np.where(have, m2, self._m2)
        self._n = np.where(have, total, n)
        return self

    @property
    def mean(self) -> np.ndarray:
        """Per-lead mean (float64)."""
        self._require_fit()
        assert self._mean is not None
        return self._mean.copy()

    @property
    def std(self) -> np.ndarray:
        """Per-lead population standard deviation (float64); 1 for a lead no record had."""
        self._require_fit()
        assert self._m2 is not None and self._n is not None
        return np.where(self._n > 0, np.sqrt(self._m2 / np.maximum(self._n, 1)), 1.0)

    def _require_fit(self) -> None:
        if not self.fitted:
            raise ValueError("Standardizer is not fitted: call partial_fit on the training records first")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (floats round-trip exactly through ``json``)."""
        self._require_fit()
        assert self._mean is not None and self._m2 is not None
        assert self._n is not None
        counts = [int(c) for c in self._n]
        return {"leads": list(self.leads) if self.leads is not None else None, "eps": self.eps,
                "count": counts[0] if len(set(counts)) == 1 else counts,
                "mean": self._mean.tolist(), "m2": self._m2.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Standardizer:
        """The inverse of :meth:`to_dict`."""
        try:
            new = cls(leads=state["leads"], eps=state["eps"])
            mean = np.asarray(state["mean"], dtype=np.float64)
            m2 = np.asarray(state["m2"], dtype=np.float64)
            count = np.broadcast_to(np.asarray(state["count"], dtype=np.float64), mean.shape).copy()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Standardizer.from_dict: bad state: {type(exc).__name__}: {exc}") from exc
        if mean.ndim != 1 or mean.shape != m2.shape or count.max(initial=0) < 1 or (count < 0).any() or (m2 < 0).any():
            raise ValueError("Standardizer.from_dict: bad state: need count >= 1 and equal-length mean, m2 >= 0")
        if new.leads is not None and len(new.leads) != len(mean):
            raise ValueError(f"Standardizer.from_dict: {len(new.leads)} leads but {len(mean)} means")
        new._mean, new._m2, new._n = mean, m2, count
        return new

    def __repr__(self) -> str:
        leads = len(self._mean) if self._mean is not None else "?"
        return f"Standardizer(n_leads={leads}, count={self.count})"


def contract_dict(spec: EncoderSpec) -> dict[str, Any]:
    """The fields of ``spec`` that change its view, JSON-able."""
    return {
        "sampling_rate": float(spec.sampling_rate),
        "window_s": float(spec.window_s),
        "leads": list(spec.leads),
        "bandpass_hz": [float(f) for f in spec.bandpass_hz] if spec.bandpass_hz is not None else None,
        "normalization": spec.normalization,
    }


def contract_key(spec: EncoderSpec) -> str:
    """A short stable hash of :func:`contract_dict` (and :data:`VIEW_VERSION`): the name of a cached view."""
    return digest({"view_version": VIEW_VERSION, **contract_dict(spec)})


def prepare(signal: np.ndarray, fs: float, leads: Sequence[str], spec: EncoderSpec, *,
            fill_missing: bool = False) -> np.ndarray:
    """The part of the contract that does not depend on the window: select leads, resample, band-pass.

    Full length, float32 ``[len(spec.leads), n]`` at ``spec.sampling_rate``: what a view cache stores, once per
    contract (:mod:`stence_bench.data.view_cache`). ``fill_missing``: a lead of the contract the record lacks is a
    row of zeros (:func:`missing_leads` names them), not an error.
    """
    signal = np.asarray(signal)
    if signal.ndim != 2 or signal.shape[1] == 0:
        raise ValueError(f"expected a non-empty [n_leads, n_samples] signal, got {signal.shape}")
    x = select_leads(signal, leads, spec.leads, fill_missing=fill_missing)
    x = resample(x, fs, spec.sampling_rate)
    if spec.bandpass_hz is not None:
        x = bandpass(x, spec.sampling_rate, *spec.bandpass_hz)
    return np.ascontiguousarray(x, dtype=np.float32)


def check_standardizer(spec: EncoderSpec, standardizer: Standardizer | None) -> None:
    """A ``zscore_dataset`` encoder needs a fitted Standardizer over its own leads."""
    if spec.normalization != "zscore_dataset":
        return
    if standardizer is None or not standardizer.fitted:
        raise ValueError(f"encoder {spec.name!r} declares normalization 'zscore_dataset': pass a Standardizer "
                         "fitted on the training records (standardizer=...)")
    if standardizer.leads is not None and standardizer.leads != tuple(spec.leads):
        raise ValueError(f"standardizer was fitted on leads {standardizer.leads}, encoder {spec.name!r} "
                         f"takes {tuple(spec.leads)}")
