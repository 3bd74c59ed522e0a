"""What readers produce: :class:`Record` (one ECG in physical units) or :class:`BadRecord` (quarantine)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..specs import TWELVE_LEADS


class BadRecord(Exception):
    """A record that cannot be ingested. It is quarantined with a one-line reason: file, what, why."""

    def __init__(self, file: str, what: str, why: str):
        self.file, self.what, self.why = str(file), what, why
        super().__init__(f"{self.file}: {what}: {why}")

    def __reduce__(self) -> tuple[type[BadRecord], tuple[str, str, str]]:  # to and from reader processes
        return (type(self), (self.file, self.what, self.why))


def to_physical(digital: np.ndarray, baseline: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``(digital - baseline) / gain`` per lead, in float32 millivolts (``gain``: digital units per mV)."""
    out = digital.astype(np.float32)
    out -= np.asarray(baseline, dtype=np.float32)[:, None]
    out /= np.asarray(gain, dtype=np.float32)[:, None]
    return out


@dataclass
class Record:
    """One ECG with its lead names (canonical) and sampling rate.

    The samples are either ``signal`` (float32 ``[n_leads, n_samples]`` in millivolts) or, when the source
    stores integers, ``digital`` (int16 ``[n_leads, n_samples]``) with per-lead ``baseline`` and ``gain``
    (digital units per mV): half the bytes to move and store, and :meth:`physical` gives the same float32 values.
    """

    record_id: str
    fs: float
    leads: tuple[str, ...]
    source: str
    signal: np.ndarray | None = None
    digital: np.ndarray | None = None
    baseline: np.ndarray | None = None
    gain: np.ndarray | None = None
    #: Every file the record was read from: a change to one means the record is read again.
    files: tuple[str, ...] = ()
    patient_id: str | None = None
    #: Acquisition time, ISO 8601, when known.
    time: str | None = None
    #: JSON-able extras: header comments, age, sex, diagnosis codes, device, ...
    meta: dict[str, Any] = field(default_factory=dict)

    def physical(self) -> np.ndarray:
        """The samples in float32 millivolts, ``[n_leads, n_samples]``."""
        if self.signal is not None:
            return self.signal
        assert self.digital is not None and self.baseline is not None and self.gain is not None
        return to_physical(self.digital, self.baseline, self.gain)

    @property
    def shape(self) -> tuple[int, ...]:
        samples = self.signal if self.signal is not None else self.digital
        return tuple(samples.shape) if samples is not None else ()

    def check(self) -> Record:
        """Raise :class:`BadRecord` unless the samples are finite, of the declared shape, and calibrated."""
        if (self.signal is None) == (self.digital is None):
            raise ValueError(f"record {self.record_id!r}: give either signal or digital samples")  # a reader bug
        shape = self.shape
        if len(shape) != 2 or shape[0] != len(self.leads):
            raise BadRecord(self.source, "wrong lead count",
                            f"signal has shape {shape}, header names {len(self.leads)} leads")
        if shape[1] == 0:
            raise BadRecord(self.source, "empty signal", "no samples")
        if not self.fs > 0:
            raise BadRecord(self.source, "bad sampling rate", f"fs={self.fs}")
        if self.signal is not None:
            if not np.isfinite(self.signal).all():
                bad = int((~np.isfinite(self.signal)).sum())
                raise BadRecord(self.source, "non-finite samples", f"{bad} NaN or infinite sample(s)")
            if self.signal.dtype != np.float32:
                self.signal = self.signal.astype(np.float32)
        else:
            gain = np.asarray(self.gain, dtype=np.float32)
            if gain.shape != (shape[0],) or np.asarray(self.baseline).shape != (shape[0],):
                raise ValueError(f"record {self.record_id!r}: baseline and gain need one value per lead")
            if not (np.isfinite(gain).all() and (gain != 0).all()):
                raise BadRecord(self.source, "bad calibration", f"gain {gain.tolist()}")
            if self.digital is None or self.digital.dtype != np.int16:
                raise ValueError(f"record {self.record_id!r}: digital samples must be int16")
        return self


_CANONICAL = {name.lower(): name for name in TWELVE_LEADS}
_CANONICAL.update({"avr": "aVR", "avl": "aVL", "avf": "aVF"})


@functools.lru_cache(maxsize=4096)
def canonical_lead(name: str) -> str:
    """``AVR`` -> ``aVR``, ``i`` -> ``I``, ``Lead V1`` -> ``V1``, ``Lead I (Einthoven)`` -> ``I``; others unchanged."""
    text = name.strip()
    text = re.sub(r"\s*\(.*\)\s*$", "", text)        # "Lead I (Einthoven)"
    text = re.sub(r"^lead\s+", "", text, flags=re.I)  # "Lead V1"
    return _CANONICAL.get(text.lower(), text)
