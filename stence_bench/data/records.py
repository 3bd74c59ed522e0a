"""What readers produce: :class:`Record` (one ECG in physical units) or :class:`BadRecord` (quarantine)."""

from __future__ import annotations

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


@dataclass
class Record:
    """One ECG: ``signal`` is float32 ``[n_leads, n_samples]`` in millivolts, leads named canonically."""

    record_id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    source: str
    patient_id: str | None = None
    #: Acquisition time, ISO 8601, when known.
    time: str | None = None
    #: JSON-able extras: header comments, age, sex, diagnosis codes, device, ...
    meta: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Record:
        """Raise :class:`BadRecord` unless the signal is finite float32 of the declared shape."""
        sig = self.signal
        if sig.ndim != 2 or sig.shape[0] != len(self.leads):
            raise BadRecord(self.source, "wrong lead count",
                            f"signal has shape {sig.shape}, header names {len(self.leads)} leads")
        if sig.shape[1] == 0:
            raise BadRecord(self.source, "empty signal", "no samples")
        if not np.isfinite(sig).all():
            bad = int((~np.isfinite(sig)).sum())
            raise BadRecord(self.source, "non-finite samples", f"{bad} NaN or infinite sample(s)")
        if not self.fs > 0:
            raise BadRecord(self.source, "bad sampling rate", f"fs={self.fs}")
        if sig.dtype != np.float32:
            self.signal = sig.astype(np.float32)
        return self


_CANONICAL = {name.lower(): name for name in TWELVE_LEADS}
_CANONICAL.update({"avr": "aVR", "avl": "aVL", "avf": "aVF"})


def canonical_lead(name: str) -> str:
    """``AVR`` -> ``aVR``, ``i`` -> ``I``, ``Lead V1`` -> ``V1``, ``Lead I (Einthoven)`` -> ``I``; others unchanged."""
    text = name.strip()
    text = re.sub(r"\s*\(.*\)\s*$", "", text)        # "Lead I (Einthoven)"
    text = re.sub(r"^lead\s+", "", text, flags=re.I)  # "Lead V1"
    return _CANONICAL.get(text.lower(), text)
