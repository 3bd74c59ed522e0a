"""The registry: what the loaded plugins registered, by kind, with where each entry came from.

Each kind is collected on first use by calling every plugin's registration hook with a ``register`` callable
bound to that plugin, so an entry always knows its origin and a duplicate name names both plugins.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError

from .errors import DuplicateNameError, PluginError, StenceBenchError, UnknownNameError, unknown_name_message
from .hashing import digest
from .plugin_loader import ENV_BLOCK, LoadedPlugins, PluginInfo, load_plugins
from .specs import DatasetSpec, EncoderSpec, ModalitySpec, ObjectiveSpec, Spec, TaskSpec

if TYPE_CHECKING:
    import click

S = TypeVar("S", bound=Spec)

#: kind -> (registration hook, spec class). The order is the order of ``stence-bench list``.
KINDS: dict[str, tuple[str, type[Spec]]] = {
    "encoder": ("register_encoders", EncoderSpec),
    "objective": ("register_objectives", ObjectiveSpec),
    "task": ("register_tasks", TaskSpec),
    "dataset": ("register_datasets", DatasetSpec),
    "modality": ("register_modalities", ModalitySpec),
}


def format_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: message; field: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(spec)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Entry(Generic[S]):
    """A registered spec and the plugin that registered it."""

    spec: S
    plugin: PluginInfo

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def origin(self) -> str:
        return self.plugin.origin


class Catalog(Generic[S]):
    """The entries of one kind, by name, in registration order."""

    def __init__(self, kind: str, entries: Mapping[str, Entry[S]]):
        self.kind = kind
        self._entries = dict(entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[S]:
        return (entry.spec for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> Entry[S]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._entries)) from None

    def get(self, name: str) -> S:
        """The spec named ``name``; an unknown name raises with a did-you-mean and the known names."""
        return self.entry(name).spec

    def entries(self, pattern: str | None = None) -> list[Entry[S]]:
        """Entries whose name matches ``pattern``: a glob if it has ``*?[``, else a substring."""
        if not pattern:
            return list(self._entries.values())
        if any(ch in pattern for ch in "*?["):
            return [e for n, e in self._entries.items() if fnmatch.fnmatchcase(n, pattern)]
        return [e for n, e in self._entries.items() if pattern in n]


class Registry:
    """Everything the loaded plugins registered. Build one with :meth:`load`."""

    def __init__(self, plugins: LoadedPlugins):
        self.plugins = plugins
        self._catalogs: dict[str, Catalog[Any]] = {}
        self._commands: dict[str, tuple[click.Command, PluginInfo]] | None = None

    @classmethod
    def load(cls, *, extra: Iterable[object] = (), environ: Mapping[str, str] | None = None) -> Registry:
        return cls(load_plugins(extra=extra, environ=environ))

    # -- catalogs ----------------------------------------------------------------------------------------------

    def catalog(self, kind: str) -> Catalog[Any]:
        if kind not in self._catalogs:
            hook_name, spec_type = KINDS[kind]
            entries: dict[str, Entry[Any]] = {}

            def add(spec: Any, info: PluginInfo) -> None:
                if not isinstance(spec, spec_type):
                    raise PluginError(
                        f"plugin {info.name!r} of {info.origin}: {hook_name} was given "
                        f"{type(spec).__name__}, expected {spec_type.__name__}"
                    )
                if spec.name in entries:
                    first = entries[spec.name].plugin
                    raise DuplicateNameError(
                        f"{kind} {spec.name!r} is registered twice: by {first.origin} and by {info.origin}; "
                        f"uninstall one, or block one with {ENV_BLOCK}={info.distribution}"
                    )
                entries[spec.name] = Entry(spec, info)

            self._call_registration(hook_name, add)
            self._catalogs[kind] = Catalog(kind, entries)
        return self._catalogs[kind]

    @property
    def encoders(self) -> Catalog[EncoderSpec]:
        return self.catalog("encoder")

    @property
    def objectives(self) -> Catalog[ObjectiveSpec]:
        return self.catalog("objective")

    @property
    def tasks(self) -> Catalog[TaskSpec]:
        return self.catalog("task")

    @property
    def datasets(self) -> Catalog[DatasetSpec]:
        return self.catalog("dataset")

    @property
    def modalities(self) -> Catalog[ModalitySpec]:
        return self.catalog("modality")

    def fingerprint(self, kind: str, name: str) -> str:
        """A hash of what a registered spec says (all but its description, citation and card) and of the
        distribution that registered it: what a cell key holds, so that another plugin's spec under the same
        name, or an edited contract, factory or option, is another cell and never a finished one."""
        entry = self.catalog(kind).entry(name)
        content = entry.spec.model_dump(mode="json", exclude={"description", "citation", "card"})
        return digest({"kind": kind, "spec": content, "distribution": entry.plugin.distribution})

    def modality_encoders_for(self, spec: ObjectiveSpec, options: Mapping[str, Any]) -> dict[str, str]:
        """Which registered modality encoder serves each paired modality of an objective: the suite's
        ``modality_encoders`` option, else the objective's declared default, else the first registered for that
        modality (a modality none is registered for is read raw, as CLEF reads metadata)."""
        chosen = dict(options.get("modality_encoders") or {})
        names: dict[str, str] = {}
        for modality in ("angiography", "text", "metadata"):
            if modality not in spec.modalities:
                continue
            name = chosen.get(modality) or spec.modality_encoders.get(modality)
            if name is None:
                candidates = [m.name for m in self.modalities if m.modality == modality]
                if not candidates:
                    continue
                name = candidates[0]
            if self.modalities.get(name).modality != modality:
                raise StenceBenchError(f"objective {spec.name!r}: modality encoder {name!r} does not encode {modality}")
            names[modality] = name
        return names

    def targets_for(self, spec: ObjectiveSpec, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The registered tasks whose labels make an objective's ``batch["targets"]``: the suite's option ``targets``,
        else the spec's own; none for an objective without the ``targets`` modality."""
        if "targets" not in spec.modalities:
            return ()
        chosen = options.get("targets")
        return tuple(str(t) for t in chosen) if isinstance(chosen, list) and chosen else spec.targets

    def clashes(self) -> list[tuple[str, str, list[PluginInfo]]]:
        """Every name registered by more than one plugin: ``(kind, name, plugins)``. Collects what the plugins
        register without stopping at the first duplicate, for ``stence-bench plugins`` to show them all."""
        found: list[tuple[str, str, list[PluginInfo]]] = []
        for kind, (hook_name, _) in [*KINDS.items(), ("command", ("register_commands", None))]:
            seen: dict[str, list[PluginInfo]] = {}

            def add(spec: Any, info: PluginInfo, _seen: dict[str, list[PluginInfo]] = seen) -> None:
                name = getattr(spec, "name", None)
                if isinstance(name, str):
                    _seen.setdefault(name, []).append(info)

            self._call_registration(hook_name, add)
            found += [(kind, name, infos) for name, infos in seen.items() if len(infos) > 1]
        return found

    def check(self) -> None:
        """Collect every kind, so an invalid spec or a duplicate name anywhere fails now."""
        for kind in KINDS:
            self.catalog(kind)
        self.commands()

    def commands(self) -> dict[str, tuple[click.Command, PluginInfo]]:
        """CLI commands added by plugins, by name."""
        if self._commands is None:
            commands: dict[str, tuple[click.Command, PluginInfo]] = {}

            def add(command: Any, info: PluginInfo) -> None:
                import click

                if not isinstance(command, click.Command) or not command.name:
                    raise PluginError(
                        f"plugin {info.name!r} of {info.origin}: register_commands was given "
                        f"{command!r}, expected a named click.Command"
                    )
                if command.name in commands:
                    raise DuplicateNameError(
                        f"command {command.name!r} is registered twice: by {commands[command.name][1].origin} "
                        f"and by {info.origin}"
                    )
                commands[command.name] = (command, info)

            self._call_registration("register_commands", add)
            self._commands = commands
        return self._commands

    def _call_registration(self, hook_name: str, add: Any) -> None:
        """Call each plugin's implementation of ``hook_name`` with a ``register`` bound to that plugin."""
        hook = getattr(self.plugins.manager.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: built-ins first
            info = self.plugins.info(impl.plugin)

            def register(spec: Any, _info: PluginInfo = info) -> None:
                add(spec, _info)

            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except StenceBenchError:
                raise
            except ValidationError as exc:
                raise PluginError(
                    f"plugin {info.name!r} of {info.origin}: invalid {exc.title} in {hook_name}: "
                    f"{format_validation_error(exc)}"
                ) from exc
            except Exception as exc:  # noqa: BLE001 - a failing plugin is named, never skipped
                raise PluginError(
                    f"plugin {info.name!r} of {info.origin}: {hook_name} failed: {type(exc).__name__}: {exc}"
                ) from exc
