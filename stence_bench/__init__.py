"""stence-bench: a plugin-based benchmarking and evaluation harness for ECG representation learning.

The public API for plugin authors (stable once released)::

    from stence_bench import hookimpl, EncoderSpec, ObjectiveSpec, TaskSpec

Importing this package is cheap: it never imports torch or model code.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .hookspecs import hookimpl
from .specs import (
    LIMB_LEADS,
    PRECORDIAL_LEADS,
    TWELVE_LEADS,
    DatasetCard,
    DatasetSpec,
    EncoderPreset,
    EncoderSpec,
    ModalitySpec,
    ObjectiveSpec,
    TaskSpec,
)

try:
    __version__ = version("stence-bench")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "LIMB_LEADS",
    "PRECORDIAL_LEADS",
    "TWELVE_LEADS",
    "DatasetCard",
    "DatasetSpec",
    "EncoderPreset",
    "EncoderSpec",
    "ModalitySpec",
    "ObjectiveSpec",
    "TaskSpec",
    "__version__",
    "hookimpl",
]
