"""Stable short hashes of JSON-able values: the names of cells, caches and data fingerprints.

``digest(value)`` is the first 16 hex digits of the SHA-256 of ``value`` as canonical JSON (sorted keys, no
spaces), so equal values give equal digests on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(value: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]
