"""Suite files: which tasks x encoders x objectives a leaderboard runs, under which protocol.

A suite is a TOML file (``leaderboards/*.toml``) validated by :class:`Suite`; every problem is reported as
``file: field: message``, with a did-you-mean for mistyped fields and names. :func:`plan` expands a suite into
:class:`Cell` s, each identified by the hash of its resolved config.
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

# The suite file's models and the cells live below the registry (the plugin contract names them); this module, which
# reads, checks and plans suites against the installed plugins, re-exports them: ``stence_bench.suite.Cell`` and
# ``stence_bench.suite.Suite`` stay importable (docs/plugins.md named them there).
from .cells import Cell, CellOutcome, CellWeights, LeadSet
from .errors import StenceBenchError, SuiteError, UnknownNameError, did_you_mean, unknown_name_message
from .hashing import digest
from .registry import Registry
from .suite_schema import (
    SUITE_PACKAGE,
    SYNTHETIC_DATASETS,
    Choice,
    Cluster,
    Comparison,
    DataConfig,
    DataSource,
    EncoderChoice,
    External,
    Finetuning,
    LinearProbe,
    MlflowTracker,
    Pretraining,
    Protocol,
    RowRef,
    Stage,
    Subgroups,
    Suite,
    SyntheticData,
    TensorboardTracker,
    Trackers,
    WeightsSource,
    lead_names,
)
from .synth.side import Knob, SideInformation

__all__ = [
    "SUITE_PACKAGE", "SYNTHETIC_DATASETS", "Cell", "CellOutcome", "CellWeights", "Choice", "Cluster", "Comparison",
    "DataConfig", "DataSource", "EncoderChoice", "External", "Finetuning", "LeadSet", "LinearProbe", "MlflowTracker",
    "Pretraining", "TensorboardTracker", "Trackers",
    "Protocol", "RowRef", "Stage", "Subgroups", "Suite", "SyntheticData", "WeightsSource", "check_code",
    "check_names", "check_sources", "find_suites", "lead_names", "left_out_controls", "left_out_notices",
    "load_suite", "parse_suite", "plan", "resolved_objectives", "suite_summary", "validate_suite",
    "with_weight_hashes",
]

#: Which model validates the table at a location (list indices left out), for did-you-mean on unknown fields.
_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): Suite,
    ("protocol",): Protocol,
    ("encoders",): EncoderChoice,
    ("encoders", "weights"): WeightsSource,
    ("objectives",): Choice,
    ("protocol", "pretrain"): Pretraining,
    ("protocol", "finetune"): Finetuning,
    ("protocol", "linear_probe"): LinearProbe,
    ("protocol", "subgroups"): Subgroups,
    ("protocol", "external"): External,
    ("data",): DataConfig,
    ("data", "synthetic"): SyntheticData,
    ("data", "synthetic", "side"): SideInformation,
    **{("data", "synthetic", "side", m): Knob for m in SideInformation.model_fields},
    ("cluster",): Cluster,
    ("comparisons",): Comparison,
    ("comparisons", "row"): RowRef,
    ("comparisons", "reference"): RowRef,
    ("trackers",): Trackers,
    ("trackers", "mlflow"): MlflowTracker,
    ("trackers", "tensorboard"): TensorboardTracker,
}


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_problems(source: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _format_loc(loc) or "(file)"
        if err["type"] == "extra_forbidden":
            parent = tuple(p for p in loc[:-1] if isinstance(p, str))
            in_source = len(parent) == 3 and parent[:2] == ("data", "sources")
            model = DataSource if in_source else _MODEL_AT.get(parent)
            known = model.model_fields if model is not None else {}
            hint = did_you_mean(str(loc[-1]), known)
            if in_source and not hint:  # a layout option written beside path
                hint = (f"; layout options go in options: options = {{ {loc[-1]} = ... }} (a source's fields: "
                        f"{', '.join(known)})")
            problems.append(f"{source}: {where}: unknown field{hint}")
        elif err["type"] == "missing":
            problems.append(f"{source}: {where}: required field missing")
        else:
            problems.append(f"{source}: {where}: {err['msg']}")
    return problems


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Parse and validate a suite's TOML text (names are checked against a registry by :func:`check_names`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{source}: invalid TOML: {exc}"]) from None
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(_pydantic_problems(source, exc)) from None


def suite_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """Where suites are looked up by name: ``extra``, ``./leaderboards``, then the suites shipped with the package."""
    dirs = [*extra, Path("leaderboards")]
    spec = importlib.util.find_spec(SUITE_PACKAGE)
    if spec is not None and spec.submodule_search_locations is not None:
        dirs += [Path(p) for p in spec.submodule_search_locations if Path(p).is_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and all(not d.resolve() == u.resolve() for u in unique):
            unique.append(d)
    return unique


def find_suites(dirs: Sequence[Path] | None = None) -> dict[str, Path]:
    """Suite name (file stem) -> path; the first directory that has a name wins."""
    found: dict[str, Path] = {}
    for d in suite_dirs() if dirs is None else dirs:
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def resolve_suite_path(arg: str) -> Path:
    """A suite given as a path, or as a name looked up in :func:`suite_dirs`."""
    path = Path(arg)
    if path.is_file():
        return path
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.toml"))
        listing = f" (it holds {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''})" if inside else ""
        raise SuiteError([f"{arg}: a folder, not a suite; give a suite file (.toml) or a suite's name{listing}"])
    if path.suffix == ".toml" or "/" in arg:
        raise SuiteError([f"{arg}: no such file"])
    suites = find_suites()
    if arg in suites:
        return suites[arg]
    raise SuiteError([f"{arg}: no such file or suite{did_you_mean(arg, suites)} (suites: {', '.join(suites) or 'none'})"])


def load_suite(arg: str | Path) -> tuple[Suite, Path]:
    """Read and validate a suite file (by path or name). Raises :class:`SuiteError`."""
    path = resolve_suite_path(str(arg))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError([f"{path}: cannot read: {exc}"]) from None
    return parse_suite(text, str(path)), path


def check_names(suite: Suite, registry: Registry, source: str = "<suite>") -> list[str]:
    """Problems with the suite's names against the registry: unknown names (with did-you-mean), bad presets,
    repeated entries, objectives needing a modality the task's dataset lacks."""
    problems: list[str] = []

    def check(field: str, index: int, kind: str, name: str) -> Any:
        try:
            return registry.catalog(kind).get(name)
        except UnknownNameError as exc:
            problems.append(f"{source}: {field}[{index}]{'.name' if field != 'tasks' else ''}: {exc}")
            return None

    for field, kind, values in (
        ("tasks", "task", suite.tasks),
        ("objectives", "objective", [c.name for c in suite.objectives]),
    ):
        seen: set[str] = set()
        for i, name in enumerate(values):
            if name in seen:
                problems.append(f"{source}: {field}[{i}]: {kind} {name!r} is listed twice")
            seen.add(name)
    entries: set[str] = set()  # one architecture may come twice: with other presets, options or weights
    for i, choice in enumerate(suite.encoders):
        entry = digest(choice.model_dump(mode="json"))
        if entry in entries:
            problems.append(f"{source}: encoders[{i}]: encoder {choice.label!r} is listed twice (the same preset, "
                            "options and weights)")
        entries.add(entry)
    for i, task in enumerate(suite.tasks):
        check("tasks", i, "task", task)
    for i, choice in enumerate(suite.encoders):
        spec = check("encoders", i, "encoder", choice.name)
        if spec is not None and choice.preset is not None:
            try:
                spec.preset(choice.preset)
            except UnknownNameError as exc:
                problems.append(f"{source}: encoders[{i}].preset: {exc}")
    missing_sources = _missing_sources(suite, registry, source)
    pretraining_known = not any(p.startswith(f"{source}: data.pretrain:") for p in missing_sources)
    for i, choice in enumerate(suite.objectives):
        spec = check("objectives", i, "objective", choice.name)
        if spec is not None and choice.preset is not None:
            problems.append(f"{source}: objectives[{i}].preset: objectives have no presets; use options")
        if spec is None or not pretraining_known:
            continue
        if spec.as_given and not any(c.weights is not None for c in suite.encoders):
            problems.append(f"{source}: objectives[{i}]: objective {spec.name!r} evaluates an encoder's given weights "
                            "as loaded, and no encoder of the suite has weights = \"...\"")
        why = cannot_pretrain(spec, suite, registry)
        if why:
            problems.append(f"{source}: objectives[{i}]: objective {spec.name!r} {why}")
        problems += _target_problems(spec, choice, registry, f"{source}: objectives[{i}].options.targets")
    problems += missing_sources
    problems += _contained_test_data(suite, registry, source)
    problems += _check_comparisons(suite, registry, source)
    problems += _check_lead_sets(suite, registry, source)
    problems += _check_external(suite, registry, source)
    return problems


def _check_external(suite: Suite, registry: Registry, source: str) -> list[str]:
    """Each external validation names a task of the suite and other datasets with a source."""
    problems = []
    provided = suite.data.provided()
    seen: set[tuple[str, str]] = set()
    for i, external in enumerate(suite.protocol.external):
        where = f"{source}: protocol.external[{i}]"
        if external.task not in suite.tasks:
            problems.append(f"{where}.task: {external.task!r} is not a task of the suite"
                            f"{did_you_mean(external.task, suite.tasks)} (tasks: {', '.join(suite.tasks)})")
            continue
        own = registry.tasks.get(external.task).dataset if external.task in registry.tasks else None
        for j, name in enumerate(external.datasets):
            if name == own:
                problems.append(f"{where}.datasets[{j}]: {name!r} is task {external.task!r}'s own dataset (its test "
                                "split is the internal result)")
            elif name not in provided:
                problems.append(f"{where}.datasets[{j}]: dataset {name!r} has no source{did_you_mean(name, provided)} "
                                f"(add [data.sources.{name}] path = \"...\"; sources: {', '.join(provided) or 'none'})")
            elif (external.task, name) in seen:
                problems.append(f"{where}.datasets[{j}]: task {external.task!r} is tested on {name!r} twice")
            seen.add((external.task, name))
    return problems


def _check_lead_sets(suite: Suite, registry: Registry, source: str) -> list[str]:
    """Every lead set names leads of every encoder of the suite, each once."""
    problems = []
    sets = [(f"protocol.leads[{i}]", leads) for i, leads in enumerate(suite.protocol.leads)]
    sets.append(("protocol.pretrain.leads", suite.protocol.pretrain.leads))
    for where, leads in sets:
        if leads == "all":
            continue
        names = lead_names(leads, ())
        if len(set(names)) != len(names):
            problems.append(f"{source}: {where}: {leads!r} names a lead twice")
            continue
        for i, choice in enumerate(suite.encoders):
            if choice.name not in registry.encoders:
                continue
            own = registry.encoders.get(choice.name).leads
            lacking = [n for n in names if n not in own]
            if lacking:
                problems.append(f"{source}: {where}: encoder {choice.label!r} (encoders[{i}]) has no lead "
                                f"{', '.join(lacking)}{did_you_mean(lacking[0], own)} (its leads: {', '.join(own)})")
    return problems


def _check_comparisons(suite: Suite, registry: Registry, source: str) -> list[str]:
    """Each comparison names encoders and objectives of the suite (its controls included), and a reference that is
    another row."""
    objectives = [c.name for c in resolved_objectives(suite, registry)[0]] if all(
        c.name in registry.objectives for c in suite.objectives) else [c.name for c in suite.objectives]
    encoders = sorted({c.name for c in suite.encoders} | {c.label for c in suite.encoders})
    problems = []
    for i, comparison in enumerate(suite.comparisons):
        for part in ("row", "reference"):
            ref: RowRef = getattr(comparison, part)
            if ref.encoder is not None and ref.encoder not in encoders:
                problems.append(f"{source}: comparisons[{i}].{part}.encoder: {ref.encoder!r} is not an encoder of the "
                                f"suite{did_you_mean(ref.encoder, encoders)} (encoders: {', '.join(encoders)})")
            if ref.objective is not None and ref.objective not in objectives:
                problems.append(f"{source}: comparisons[{i}].{part}.objective: {ref.objective!r} is not an objective "
                                f"of the suite{did_you_mean(ref.objective, objectives)} (objectives: "
                                f"{', '.join(objectives)})")
        if comparison.reference == RowRef():
            problems.append(f"{source}: comparisons[{i}].reference: name an encoder or an objective to compare with")
        elif comparison.row == comparison.reference:
            problems.append(f"{source}: comparisons[{i}]: the row and its reference are the same")
    return problems


def _target_problems(spec: Any, choice: Choice, registry: Registry, where: str) -> list[str]:
    """The option ``targets`` (registered tasks whose labels make ``batch["targets"]``) is a list of task names, for
    an objective with the ``targets`` modality only."""
    given = choice.options.get("targets")
    if given is not None and "targets" not in spec.modalities:
        return [f"{where}: objective {spec.name!r} takes no targets (it does not declare the 'targets' modality)"]
    if given is not None and (not isinstance(given, list) or not given or not all(isinstance(t, str) for t in given)):
        return [f"{where}: a non-empty list of task names, not {given!r}"]
    problems = []
    for j, name in enumerate(registry.targets_for(spec, choice.options)):  # the suite's, else the spec's own
        try:
            registry.tasks.get(name)
        except UnknownNameError as exc:
            at = f"{where}[{j}]" if given is not None else where.rsplit(".options", 1)[0]
            problems.append(f"{at}: objective {spec.name!r} trains on the labels of {exc}")
    return problems


def _missing_sources(suite: Suite, registry: Registry, source: str) -> list[str]:
    """Every dataset the suite reads has a source (the cohort's or its own), and every source a known layout."""
    problems: list[str] = []
    data = suite.data
    provided = data.provided()
    datasets = registry.datasets
    for name, src in data.sources.items():
        layout = src.layout or name
        if layout in datasets:
            continue
        if src.layout is not None:
            problems.append(f"{source}: data.sources.{name}.layout: "
                            f"{unknown_name_message('dataset', layout, datasets.names())}")
        else:
            problems.append(f"{source}: data.sources.{name}: no layout is registered as {name!r}; name one with "
                            f"layout = \"...\"{did_you_mean(name, datasets.names())} (known: "
                            f"{', '.join(sorted(datasets.names()))})")

    def remedy(name: str) -> str:
        cohort = (" or synthetic = {} for the built-in cohort's" if name in SYNTHETIC_DATASETS and data.synthetic is None
                  else "")
        return (f"add [data.sources.{name}] path = \"...\"{cohort} (sources: {', '.join(provided) or 'none'})")

    for i, task in enumerate(suite.tasks):
        if task not in registry.tasks:
            continue
        needed = registry.tasks.get(task).dataset
        if needed not in provided:
            problems.append(f"{source}: tasks[{i}]: task {task!r} reads dataset {needed!r}, which has no source: "
                            f"{remedy(needed)}")
    pretrains = [c.name for c in suite.objectives if c.name in registry.objectives
                 and registry.objectives.get(c.name).pretrains]
    if suite.controls:
        pretrains += [s.name for s in registry.objectives if s.control and s.pretrains
                      and s.name not in {c.name for c in suite.objectives}]
    if pretrains and data.pretrain not in provided:
        default = "" if "pretrain" in data.model_fields_set else " (the default)"
        others = f"; or set pretrain to one of: {', '.join(provided)}" if provided else ""
        controls = "; or controls = false" if suite.controls and not any(
            c.name in registry.objectives and registry.objectives.get(c.name).pretrains for c in suite.objectives) else ""
        problems.append(f"{source}: data.pretrain: the pretraining dataset {data.pretrain!r}{default} has no source "
                        f"(objectives that pretrain there: {', '.join(pretrains)}): {remedy(data.pretrain)}{others}{controls}")
    return problems


def _layout_of(suite: Suite, name: str) -> str:
    source = suite.data.sources.get(name)
    return (source.layout or name) if source is not None else name


def _contained_test_data(suite: Suite, registry: Registry, source: str) -> list[str]:
    """A suite that pretrains on a dataset republishing a task's dataset (CinC 2021 holds PTB-XL) must say what
    to do with the records they share: ``run`` checks each record by its signal, and refuses by default."""
    if suite.protocol.pretrain.test_overlap != "refuse":
        return []
    layout = _layout_of(suite, suite.data.pretrain)
    if layout not in registry.datasets:
        return []
    contains = set(registry.datasets.get(layout).contains)
    tasks = [t for t in suite.tasks if t in registry.tasks
             and _layout_of(suite, registry.tasks.get(t).dataset) in contains]
    if not tasks or not any(c.name in registry.objectives and registry.objectives.get(c.name).pretrains
                            for c in resolved_objectives(suite, registry)[0]):
        return []
    return [f"{source}: protocol.pretrain.test_overlap: the pretraining dataset {suite.data.pretrain!r} ({layout}) "
            f"republishes records of {', '.join(sorted(contains))}, which task(s) {', '.join(tasks)} test on; set "
            "test_overlap = \"exclude\" (leave the shared records out of pretraining) or \"allow\" (keep them, "
            "flagged as contamination)"]


def pretraining_modalities(suite: Suite, registry: Registry) -> set[str]:
    """What the suite's pretraining dataset can give objectives, as the runner reads it: its layout's modalities
    (``labels`` from the layout's own annotations, :meth:`~stence_bench.data.layouts.base.Layout.labels`; a report
    text gives statement labels too), but clinical ``metadata`` and ``angiography``, which come from a tables
    folder (``patients.csv``; ``stenosis.csv`` linking angiograms, or ``angiography_embeddings.csv``), and the
    ``targets`` of objectives that train on registered tasks' labels (read from the same tables), as the
    synthetic cohort's MIMIC-IV-ECG export has one. Depends on the suite and the registry only (no file is read),
    so that the controls left out (:func:`left_out_controls`) are the same wherever it is asked."""
    name = suite.data.pretrain
    source = suite.data.sources.get(name)
    synthetic = suite.data.synthetic is not None and name in SYNTHETIC_DATASETS and source is None
    layout = (source.layout or name) if source is not None else name
    provided = set(registry.datasets.get(layout).modalities) if layout in registry.datasets else {"ecg"}
    provided -= TABLE_MODALITIES
    if (synthetic and name == "mimic-iv-ecg") or (source is not None and source.tables):
        provided |= TABLE_MODALITIES
    if "text" in provided:
        provided.add("labels")  # report statements
    return provided


#: What pretraining reads from a source's tables folder, whatever its layout declares.
TABLE_MODALITIES = frozenset({"metadata", "angiography", "targets"})


def cannot_pretrain(spec: Any, suite: Suite, registry: Registry) -> str | None:
    """Why objective ``spec`` cannot pretrain on the suite's pretraining dataset (the modalities it lacks), or
    ``None`` when it can (or does not pretrain)."""
    if not spec.pretrains:
        return None
    lacking = set(spec.modalities) - pretraining_modalities(suite, registry)
    if not lacking:
        return None
    which = "metadata, angiography and targets" if "targets" in lacking else "metadata and angiography"
    hint = (f" ({which} come from a tables folder: tables = \"...\" beside the source's path)"
            if lacking & TABLE_MODALITIES else "")
    return (f"needs {', '.join(sorted(lacking))}, which the pretraining dataset {suite.data.pretrain!r} does not "
            f"provide{hint}")


def validate_suite(arg: str | Path, registry: Registry) -> tuple[Suite, Path]:
    """Load a suite and check its names, then its sources (:func:`check_sources`) and the code the names point to
    (:func:`check_code`); any problem raises :class:`SuiteError` listing all of them."""
    suite, path = load_suite(arg)
    problems = check_names(suite, registry, str(path))
    if problems:
        raise SuiteError(problems)
    problems = check_sources(suite, registry, str(path)) + check_code(suite, registry, str(path))
    if problems:
        raise SuiteError(problems)
    return suite, path


def check_sources(suite: Suite, registry: Registry, source: str = "<suite>") -> list[str]:
    """What a run would fail on when it reads its data: a source's folder (or tables folder) that does not exist,
    and layout ``options`` the layout does not take or whose value it refuses (with a did-you-mean). Relative
    paths are read from the current directory, as ``run`` reads them. Imports the layouts; names must have passed
    :func:`check_names`."""
    from pydantic import ValidationError

    from .errors import PluginError
    from .specs import import_object

    problems: list[str] = []
    here = Path.cwd()
    for name, src in suite.data.sources.items():
        where = f"{source}: data.sources.{name}"
        for field, value, what in (("path", src.path, "file or folder"), ("tables", src.tables, "folder")):
            if value is None:
                continue
            path = Path(value).expanduser()
            exists = path.is_dir() if field == "tables" else path.exists()
            if not exists:
                relative = "" if path.is_absolute() else f" (a relative path is read from the current directory, {here})"
                problems.append(f"{where}.{field}: {value}: no such {what}{relative}")
        layout_name = src.layout or name
        try:
            layout = import_object(registry.datasets.get(layout_name).reader, what=f"dataset {layout_name!r}")
        except PluginError as exc:
            problems.append(f"{where}.layout: {exc}")
            continue
        known = sorted(getattr(layout, "model_fields", {}))
        unknown = [key for key in src.options if key not in known]
        for key in unknown:
            problems.append(f"{where}.options.{key}: layout {layout_name!r} takes no option {key!r}"
                            f"{did_you_mean(key, known)} (options: {', '.join(known) or 'none'})")
        if unknown:
            continue
        try:
            layout(**src.options)
        except ValidationError as exc:
            for err in exc.errors():
                at = ".".join(map(str, err["loc"]))
                problems.append(f"{where}.options{'.' + at if at else ''}: layout {layout_name!r}: {err['msg']}")
    return problems


#: What the harness passes an objective's factory itself: not options a suite may set.
_OBJECTIVE_ARGUMENTS = frozenset({"encoder", "leads", "modality_encoders", "n_labels", "target_columns", "name"})


def check_code(suite: Suite, registry: Registry, source: str = "<suite>") -> list[str]:
    """What a run would fail on in every cell, found before it starts: a factory or label function that does not
    import, and an encoder's or objective's ``options`` that its factory does not take (with a did-you-mean).
    Imports the factories (and so torch); names must have passed :func:`check_names`."""
    from .errors import PluginError
    from .specs import RUNNER_OPTIONS, import_object

    problems: list[str] = []

    def load(where: str, ref: str, what: str) -> Any:
        try:
            return import_object(ref, what=what)
        except PluginError as exc:
            problems.append(f"{source}: {where}: {exc}")
            return None

    def options(where: str, what: str, factory: Any, given: Iterable[str], provided: Iterable[str],
                extra: Iterable[str] = ()) -> None:
        takes = _keyword_parameters(factory)
        if takes is None:  # **kwargs, or no signature to read: the factory decides at run time
            return
        known = sorted((set(takes) - set(provided)) | set(extra))
        for key in given:
            if key not in known:
                problems.append(f"{source}: {where}.{key}: {what} takes no option {key!r}{did_you_mean(key, known)} "
                                f"(options: {', '.join(known) or 'none'})")

    for i, task in enumerate(suite.tasks):
        spec = registry.tasks.get(task)
        load(f"tasks[{i}]", spec.labels, f"task {task!r}: label function")
    for i, choice in enumerate(suite.encoders):
        spec = registry.encoders.get(choice.name)
        factory = load(f"encoders[{i}].name", spec.factory, f"encoder {choice.name!r}")
        if factory is not None:
            before = len(problems)
            options(f"encoders[{i}].options", f"encoder {choice.name!r} ({spec.factory})", factory, choice.options,
                    provided=("n_leads",))
            if len(problems) == before:
                problems += _check_encoder_build(suite, registry, i, choice, source)
    for i, choice in enumerate(suite.objectives):
        spec = registry.objectives.get(choice.name)
        if spec.factory is None:
            if choice.options:
                problems.append(f"{source}: objectives[{i}].options: objective {choice.name!r} does not pretrain; "
                                "it takes no options")
            continue
        factory = load(f"objectives[{i}].name", spec.factory, f"objective {choice.name!r}")
        if factory is not None:
            runner = [o for o in RUNNER_OPTIONS if o != "targets" or "targets" in spec.modalities]
            options(f"objectives[{i}].options", f"objective {choice.name!r} ({spec.factory})", factory,
                    choice.options, provided=_OBJECTIVE_ARGUMENTS, extra=runner)
        try:
            chosen = registry.modality_encoders_for(spec, choice.options)
        except StenceBenchError as exc:
            problems.append(f"{source}: objectives[{i}].options.modality_encoders: {exc}")
            continue
        sizes = choice.options.get("modality_options") or {}
        for modality, given in (sizes.items() if isinstance(sizes, dict) else ()):
            if modality not in chosen:
                problems.append(f"{source}: objectives[{i}].options.modality_options.{modality}: objective "
                                f"{choice.name!r} pairs no {modality} encoder (it pairs: {', '.join(chosen) or 'none'})")
                continue
            modality_spec = registry.modalities.get(chosen[modality])
            built = load(f"objectives[{i}].options.modality_options.{modality}", modality_spec.factory,
                         f"modality encoder {modality_spec.name!r}")
            if built is not None and isinstance(given, dict):
                options(f"objectives[{i}].options.modality_options.{modality}",
                        f"modality encoder {modality_spec.name!r} ({modality_spec.factory})", built, given, provided=())
    return problems


def _check_encoder_build(suite: Suite, registry: Registry, i: int, choice: EncoderChoice, source: str) -> list[str]:
    """What building encoder entry ``i`` would meet in a run: its weights file (found, its hash as pinned, its
    tensors fitting the encoder's names and shapes) and, for partial finetuning, the encoder's blocks. The encoder
    is built on the meta device (nothing allocated)."""
    from .protocol.partial import encoder_blocks, uses_partial_finetuning
    from .weights import build_for_checking, check_layout, read_file, select

    partial = "finetune" in suite.protocol.stages and uses_partial_finetuning(suite.protocol.finetune)
    if choice.weights is None and not partial:
        return []
    spec = registry.encoders.get(choice.name)
    where = f"encoders[{i}]"
    try:
        module = build_for_checking(spec, choice.preset, choice.options)
    except StenceBenchError as exc:
        return [f"{source}: {where}: {exc}"]
    except Exception as exc:  # noqa: BLE001 - the run would fail the same way: say so now
        return [f"{source}: {where}: encoder {choice.label!r} does not build: {type(exc).__name__}: {exc}"]
    problems = []
    if choice.weights is not None:
        try:
            given = cell_weights(choice, registry, f"{where}.weights")
            assert given is not None
            what = f"{where}.weights: {given.path}"
            tensors, _ = read_file(given.path)
            check_layout(module, select(tensors, given.layout(), what), strict=given.strict,
                         what=f"{what} (encoder {choice.label!r})")
        except StenceBenchError as exc:
            problems.append(f"{source}: {exc}")
    if partial:
        try:
            encoder_blocks(module, choice.name)
        except StenceBenchError as exc:
            problems.append(f"{source}: {where}: protocol.finetune: {exc}")
    return problems


def _keyword_parameters(factory: Any) -> list[str] | None:
    """The keyword arguments ``factory`` (a function or a class) takes; None if it takes any (``**kwargs``)."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def resolved_objectives(suite: Suite, registry: Registry) -> tuple[list[Choice], list[str]]:
    """The suite's objectives plus the registered controls it does not list and that can run on its pretraining
    data (:func:`left_out_controls` says which cannot, and why; one that evaluates given weights only when an
    encoder has some); also the names that were added."""
    objectives = list(suite.objectives)
    added: list[str] = []
    if suite.controls:
        listed = {c.name for c in objectives}
        given = any(c.weights is not None for c in suite.encoders)
        left_out = left_out_controls(suite, registry)
        for spec in registry.objectives:
            if spec.control and spec.name not in listed and spec.name not in left_out and (given or not spec.as_given):
                objectives.append(Choice(name=spec.name))
                added.append(spec.name)
    return objectives, added


def suite_summary(suite: Suite, registry: Registry) -> str:
    """One line: tasks x encoders x objectives (controls added), seeds and fractions."""
    objectives, added = resolved_objectives(suite, registry)
    text = (f"{len(suite.tasks)} task(s) x {len(suite.encoders)} encoder(s) x {len(objectives)} objective(s)"
            f", seeds {list(suite.protocol.seeds)}, fractions {list(suite.protocol.fractions)}")
    if added:
        text += f" (controls added: {', '.join(added)})"
    return text


def cell_weights(choice: EncoderChoice, registry: Registry, where: str = "weights") -> CellWeights | None:
    """The weights an encoder entry gives its cells: the file found and hashed (refused when the suite pins another
    hash), and the encoder's declared layout with the entry's overrides."""
    from .weights import WeightsError, file_sha256, resolve_path

    if choice.weights is None:
        return None
    path = resolve_path(choice.weights.path)
    if not path.is_file():
        raise WeightsError(f"{where}: {path}: no such file")
    sha256 = file_sha256(path)
    if choice.weights.sha256 is not None and choice.weights.sha256 != sha256:
        raise WeightsError(f"{where}: {path} has sha256 {sha256}, the suite pins {choice.weights.sha256}")
    layout = choice.weights.layout(registry.encoders.get(choice.name).weights_layout)
    return CellWeights(path=str(path), sha256=sha256, prefix=layout.prefix, ignore=layout.ignore,
                       rename=layout.rename, strict=choice.weights.strict)


def with_weight_hashes(suite: Suite, registry: Registry) -> Suite:
    """The suite with each weights file's sha256 filled in (what a run writes as ``suite.json``: the leaderboard
    names rows by it)."""
    encoders = []
    for i, choice in enumerate(suite.encoders):
        weights = cell_weights(choice, registry, f"encoders[{i}].weights")
        if weights is not None:
            choice = choice.model_copy(update={"weights": choice.weights.model_copy(  # type: ignore[union-attr]
                update={"sha256": weights.sha256})})
        encoders.append(choice)
    return suite.model_copy(update={"encoders": tuple(encoders)})


def left_out_controls(suite: Suite, registry: Registry) -> dict[str, str]:
    """The registered controls a suite would add but that cannot run on its pretraining dataset (``supervised``
    on a layout without labels), each with the reason: they are left out of the plan, said by ``validate`` and
    ``run`` in one line, and shown as absent (not failed) on the leaderboard."""
    if not suite.controls:
        return {}
    listed = {c.name for c in suite.objectives}
    out = {}
    for spec in registry.objectives:
        if spec.control and spec.name not in listed:
            why = cannot_pretrain(spec, suite, registry)
            if why:
                out[spec.name] = why
    return out


def left_out_notices(suite: Suite, registry: Registry) -> list[str]:
    """One line per control left out of the suite's plan (:func:`left_out_controls`)."""
    return [f"control {name!r} left out: it {why}" for name, why in left_out_controls(suite, registry).items()]


def plan(suite: Suite, registry: Registry) -> list[Cell]:
    """Expand a validated suite into its cells: pretraining first, then every evaluation. An encoder entry with
    weights gives every cell its weights (:class:`CellWeights`, hashed here); an objective that evaluates weights
    as given (``pretrained``) is planned only for such entries."""
    objectives, _ = resolved_objectives(suite, registry)
    weights = [cell_weights(enc, registry, f"encoders[{i}].weights") for i, enc in enumerate(suite.encoders)]
    proto = suite.protocol
    data = suite.data.model_dump(mode="json")
    pretrain_settings = {"pretrain": proto.pretrain.model_dump(mode="json"), "split_seed": proto.split_seed}

    def settings(obj_spec: Any, stage: str) -> dict[str, Any]:
        out: dict[str, Any] = dict(pretrain_settings) if obj_spec.pretrains else {"split_seed": proto.split_seed}
        if stage == "pretrain":
            return out
        out["bootstrap"] = proto.bootstrap
        if proto.subgroups != Subgroups():  # the default subgroups are the scoring code's (keys kept)
            out["subgroups"] = proto.subgroups.model_dump(mode="json")
        if stage in ("linear_probe", "finetune"):
            out[stage] = getattr(proto, stage).model_dump(mode="json")
        return out

    def specs(enc: Choice, obj: Choice) -> dict[str, str]:
        out = {"encoder": registry.fingerprint("encoder", enc.name), "objective": registry.fingerprint("objective", obj.name)}
        obj_spec = registry.objectives.get(obj.name)
        if obj_spec.pretrains:
            for modality, name in registry.modality_encoders_for(obj_spec, obj.options).items():
                out[f"modality.{modality}"] = registry.fingerprint("modality", name)
            for name in registry.targets_for(obj_spec, obj.options):  # the tasks whose labels it trains on
                out[f"target.{name}"] = registry.fingerprint("task", name)
        return out

    external: dict[str, list[str]] = {}
    for item in proto.external:
        external.setdefault(item.task, []).extend(d for d in item.datasets if d not in external.get(item.task, []))
    cells: list[Cell] = []
    for seed in proto.seeds:
        for enc, given in zip(suite.encoders, weights):
            enc_spec = registry.encoders.get(enc.name)
            for obj in objectives:
                obj_spec = registry.objectives.get(obj.name)
                if obj_spec.pretrains:
                    cells.append(
                        Cell(
                            stage="pretrain", encoder=enc.name, preset=enc.preset, encoder_options=enc.options,
                            objective=obj.name, objective_options=obj.options, seed=seed,
                            versions={"encoder": enc_spec.version, "objective": obj_spec.version},
                            specs=specs(enc, obj), settings=settings(obj_spec, "pretrain"), data=data,
                            weights=given,
                        )
                    )
    for task in suite.tasks:
        task_spec = registry.tasks.get(task)
        for enc, given in zip(suite.encoders, weights):
            enc_spec = registry.encoders.get(enc.name)
            for obj in objectives:
                obj_spec = registry.objectives.get(obj.name)
                if obj_spec.as_given and given is None:
                    continue  # nothing given to evaluate
                versions = {"encoder": enc_spec.version, "objective": obj_spec.version, "task": task_spec.version}
                common = dict(
                    task=task, encoder=enc.name, preset=enc.preset, encoder_options=enc.options,
                    objective=obj.name, objective_options=obj.options, versions=versions,
                    specs={**specs(enc, obj), "task": registry.fingerprint("task", task)}, weights=given,
                )
                for seed in proto.seeds:
                    for leads in proto.leads:
                        for stage in proto.stages:
                            extra = {"settings": settings(obj_spec, stage), "data": data}
                            if stage == "zero_shot":
                                if "text" in obj_spec.modalities and task_spec.prompts:
                                    cells.append(Cell(stage=stage, seed=seed, leads=leads, **common, **extra))
                                continue
                            for fraction in proto.fractions:
                                for draw in range(1 if fraction == 1.0 else proto.draws):
                                    for test in (None, *external.get(task, ())):
                                        cells.append(
                                            Cell(stage=stage, seed=seed, leads=leads, fraction=fraction, draw=draw,
                                                 test_dataset=test, **common, **extra)
                                        )
    return cells
