"""The installed distribution's version (a module of its own, so that modules needing it import neither the package's
public API nor anything heavy)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stence-bench")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
