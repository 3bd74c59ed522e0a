"""Optional dependencies: the packages only some paths need are extras of ``stence-bench`` (``pyproject.toml``,
``[project.optional-dependencies]``), imported where they are used through :func:`require`, which names the extra
to install when one is missing:

========  ==========================  ==================================================================
extra     installs                    needed by
========  ==========================  ==================================================================
slurm     submitit                    ``stence-bench run --launcher slurm`` (docs/cluster.md)
dicom     python-gdcm                 JPEG, JPEG-LS and JPEG 2000 compressed DICOM pixel data (docs/data.md)
htj2k     pylibjpeg, pylibjpeg-openjpeg  High-Throughput JPEG 2000 DICOM pixel data
dtw       dtaidistance                ``distance = "dtw"`` of the metric-learning objectives
text      sentence-transformers       the ``text_sentence`` modality encoder
trackers  mlflow-skinny, tensorboard  the experiment trackers (suite ``[trackers]``, ``run --tracker``)
all       every extra above
========  ==========================  ==================================================================

``pip install "stence-bench[slurm]"`` (or ``pip install -e ".[slurm]"`` in a clone) adds one; the ``test`` extra
installs every extra the tests exercise.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import StenceBenchError

__all__ = ["EXTRAS", "MissingExtra", "install_hint", "require"]

#: Import name (top-level module) -> (extra, the distribution that provides it).
EXTRAS: dict[str, tuple[str, str]] = {
    "submitit": ("slurm", "submitit"),
    "gdcm": ("dicom", "python-gdcm"),
    "pylibjpeg": ("htj2k", "pylibjpeg"),
    "openjpeg": ("htj2k", "pylibjpeg-openjpeg"),
    "dtaidistance": ("dtw", "dtaidistance"),
    "sentence_transformers": ("text", "sentence-transformers"),
    "mlflow": ("trackers", "mlflow-skinny"),
    "tensorboard": ("trackers", "tensorboard"),
}


class MissingExtra(StenceBenchError, ImportError):
    """An optional dependency a path needs is not installed (or does not import); the message names the extra."""


def install_hint(extra: str) -> str:
    """What to run to install ``extra``: ``pip install "stence-bench[EXTRA]"``."""
    return f'pip install "stence-bench[{extra}]"'


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (of a package in :data:`EXTRAS`) for ``what`` (the feature that needs it, as a user names
    it), or raise :class:`MissingExtra` in one line: ``WHAT needs DIST, which is not installed: pip install
    "stence-bench[EXTRA]"``."""
    top = module.partition(".")[0]
    extra, distribution = EXTRAS[top]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is None or exc.name == top or exc.name.startswith(f"{top}."):
            why = "which is not installed"
        else:  # installed, but it (or a library it loads) does not import
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            why = f"which does not import ({first})"
        raise MissingExtra(f"{what} needs {distribution}, {why}: {install_hint(extra)}") from None
