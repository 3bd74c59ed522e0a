"""What every command of one ``stence-bench`` invocation shares: the plugin registry, loaded once.

A module of its own so that command groups defined outside :mod:`stence_bench.cli` (``stence-bench data``, a plugin's
commands) reach the registry without importing the command line that adds them.
"""

from __future__ import annotations

import click

from .registry import Registry

_REGISTRY_KEY = "stence_bench.registry"


def get_registry(ctx: click.Context) -> Registry:
    """The registry of this invocation, loaded once (plugin errors surface here, as user errors).

    A :class:`Registry` passed as the root context's ``obj`` is used as is (tests, embedding applications).
    """
    root = ctx.find_root()
    if isinstance(root.obj, Registry):
        return root.obj
    meta = root.meta
    if _REGISTRY_KEY not in meta:
        meta[_REGISTRY_KEY] = Registry.load()
    return meta[_REGISTRY_KEY]
