"""stence-bench: a plugin-based benchmarking and evaluation harness for ECG representation learning.

The public API for plugin authors (stable once released)::

    from stence_bench import hookimpl, EncoderSpec, ObjectiveSpec, TaskSpec

and for users in Python (docs/api.md)::

    import stence_bench

    report = stence_bench.run("quickstart", out="runs/quickstart")   # as `stence-bench run`
    df = stence_bench.load_results("runs/quickstart")                # one row per cell
    stence_bench.build_leaderboard(["runs/quickstart"], "site")      # as `stence-bench leaderboard`

Importing this package is cheap: it never imports torch or model code (``run``, ``load_results`` and
``build_leaderboard`` import what they need when called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
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

if TYPE_CHECKING:
    from .api import RunReport, build_leaderboard, load_results, run

#: The Python API (:mod:`stence_bench.api`), imported on first use.
_API = ("RunReport", "build_leaderboard", "load_results", "run")


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'stence_bench' has no attribute {name!r}")

__all__ = [
    "LIMB_LEADS",
    "PRECORDIAL_LEADS",
    "TWELVE_LEADS",
    "RunReport",
    "DatasetCard",
    "DatasetSpec",
    "EncoderPreset",
    "EncoderSpec",
    "ModalitySpec",
    "ObjectiveSpec",
    "TaskSpec",
    "__version__",
    "build_leaderboard",
    "hookimpl",
    "load_results",
    "run",
]
