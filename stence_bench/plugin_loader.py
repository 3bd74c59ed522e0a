"""Loading plugins: the built-ins of DEFAULT_PLUGINS, then third parties from the ``stence_bench`` entry points.

Built-ins are loaded exactly as a third-party plugin is; nothing downstream special-cases them. Two environment
switches make runs reproducible:

- ``STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins, only the built-ins.
- ``STENCE_BENCH_BLOCK_PLUGINS=name,name``: skip these plugins. A name matches a plugin's entry-point name,
  its distribution (``stence-bench-example``; ``stence-bench`` blocks every built-in) or its module.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import PluginError, did_you_mean

DEFAULT_PLUGINS: tuple[str, ...] = (
    "stence_bench_plugins.encoders",
    "stence_bench_plugins.modalities",
    "stence_bench_plugins.objectives",
    "stence_bench_plugins.datasets",
    "stence_bench_tasks.ptbxl",
    "stence_bench_tasks.stenosis",
    "stence_bench_tasks.lvef",
    "stence_bench_tasks.potassium",
    "stence_bench_tasks.pcwp",
    "stence_bench_tasks.cinc2021",
    "stence_bench_tasks.echonext",
    "stence_bench_tasks.code15",
    "stence_bench_tasks.chapman",
    "stence_bench_tasks.sph",
    "stence_bench_tasks.cpsc2018",
)
ENV_DISABLE_AUTOLOAD = "STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD"
ENV_BLOCK = "STENCE_BENCH_BLOCK_PLUGINS"
HOST_DISTRIBUTION = "stence-bench"


def normalize_distribution(name: str) -> str:
    """PEP 503 normalisation, so ``Stence_Bench.Example`` and ``stence-bench-example`` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin comes from: its name in the plugin manager, module and distribution."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool

    @property
    def origin(self) -> str:
        """``distribution version (module)``: how messages and tables name a plugin."""
        return " ".join(filter(None, [self.distribution, self.version, f"({self.module})"]))

    def matches(self, blocked: Iterable[str]) -> bool:
        keys = {self.name, self.module, normalize_distribution(self.distribution)}
        return any(b in keys or normalize_distribution(b) in keys for b in blocked)


@dataclass
class LoadedPlugins:
    """A plugin manager with every allowed plugin registered and validated, and where each came from."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    blocked: list[PluginInfo] = field(default_factory=list)
    #: What the user should know but that stops nothing (a blocked name that matches no plugin); the CLI prints
    #: them as ``Warning:`` lines.
    warnings: list[str] = field(default_factory=list)

    def info(self, plugin: object) -> PluginInfo:
        name = self.manager.get_name(plugin)
        for info in self.plugins:
            if info.name == name:
                return info
        raise KeyError(name)  # a plugin registered behind our back: a bug


def _host_version() -> str:
    try:
        return metadata.version(HOST_DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _one_line(exc: Exception) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def blocked_names(environ: Mapping[str, str]) -> list[str]:
    return [part.strip() for part in environ.get(ENV_BLOCK, "").split(",") if part.strip()]


def load_plugins(*, extra: Iterable[object] = (), environ: Mapping[str, str] | None = None) -> LoadedPlugins:
    """Register the built-ins, the entry-point plugins and ``extra`` (in-process plugin objects, for tests).

    Raises :class:`PluginError` naming the distribution when a plugin fails to import or to validate.
    """
    environ = os.environ if environ is None else environ
    block = blocked_names(environ)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    loaded = LoadedPlugins(manager=pm)

    candidates: list[tuple[PluginInfo, object]] = []
    host_version = _host_version()
    for module_name in DEFAULT_PLUGINS:
        info = PluginInfo(module_name, module_name, HOST_DISTRIBUTION, host_version, builtin=True)
        candidates.append((info, lambda m=module_name: importlib.import_module(m)))
    if environ.get(ENV_DISABLE_AUTOLOAD, "").strip() not in ("", "0"):
        entry_points: list[metadata.EntryPoint] = []
    else:
        entry_points = list(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP))
    seen: dict[str, PluginInfo] = {}
    for ep in entry_points:
        dist_name = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        version = ep.dist.version if ep.dist is not None else "?"
        info = PluginInfo(ep.name, ep.module, dist_name, version, builtin=False)
        if ep.name in seen:
            if normalize_distribution(seen[ep.name].distribution) == normalize_distribution(dist_name):
                continue  # the same distribution found twice on sys.path
            raise PluginError(
                f"two distributions declare the plugin {ep.name!r}: {seen[ep.name].origin} and {info.origin}; "
                f"uninstall one, or block one with {ENV_BLOCK}={dist_name}"
            )
        seen[ep.name] = info
        candidates.append((info, ep.load))
    for plugin in extra:
        module = getattr(plugin, "__name__", type(plugin).__name__)
        candidates.append((PluginInfo(module, module, "<in-process>", "", builtin=False), lambda p=plugin: p))

    for name in block:  # a typo here would silently leave the plugin it meant in the run
        if not any(info.matches([name]) for info, _ in candidates):
            known = sorted({k for info, _ in candidates for k in (info.name, info.distribution)})
            loaded.warnings.append(f"{ENV_BLOCK}: {name!r} matches no plugin{did_you_mean(name, known)} (plugins: "
                                   f"{', '.join(known)})")
    for info, load in candidates:
        if info.matches(block):
            loaded.blocked.append(info)
            continue
        assert callable(load)
        try:
            plugin = load()
        except Exception as exc:
            raise PluginError(
                f"plugin {info.name!r} of {info.origin} failed to import: {type(exc).__name__}: {exc}; "
                f"fix or uninstall {info.distribution}, or block it with {ENV_BLOCK}={info.distribution}"
            ) from exc
        try:
            pm.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {info.name!r} of {info.origin} is invalid: {_one_line(exc)}") from exc
        loaded.plugins.append(info)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        info = loaded.info(exc.plugin)
        raise PluginError(f"plugin {info.name!r} of {info.origin}: {_one_line(exc)}") from exc
    return loaded
