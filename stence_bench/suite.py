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
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from .errors import StenceBenchError, SuiteError, UnknownNameError, did_you_mean
from .hashing import digest
from .registry import Registry
from .specs import Name

Stage = Literal["linear_probe", "finetune", "zero_shot"]
LeadSet = Literal["all", "I"]
SUITE_PACKAGE = "stence_bench_leaderboards"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Choice(_Model):
    """An encoder or objective in a suite: a name, optionally a preset and options. A bare string is a name."""

    name: str
    preset: str | None = None
    options: dict[str, JsonValue] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.name if self.preset is None else f"{self.name}[{self.preset}]"


class Pretraining(_Model):
    """How each encoder x objective x seed is pretrained (on the training patients of ``data.pretrain``)."""

    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=2)] = 64
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    #: A pretraining record whose signal is a validation or test record of a task on another dataset (CinC 2021
    #: holds PTB-XL's records): ``refuse`` the run, ``exclude`` such records from pretraining, or ``allow`` them
    #: (flagged as contamination on the leaderboard). Validation and test *patients* of every task are always
    #: kept out of pretraining.
    test_overlap: Literal["refuse", "exclude", "allow"] = "refuse"


class Finetuning(_Model):
    """How the whole network is finetuned per task x fraction x draw, with early stopping on validation loss."""

    max_epochs: Annotated[int, Field(ge=1)] = 30
    patience: Annotated[int, Field(ge=1)] = 3
    batch_size: Annotated[int, Field(ge=1)] = 64
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4


class LinearProbe(_Model):
    """The linear probe: L2-regularised logistic (classification) or ridge (regression) regression on the cached
    embeddings; the strength is chosen on the validation split by the task's metric."""

    c_grid: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (0.001, 0.01, 0.1, 1.0, 10.0)


class Protocol(_Model):
    """How every task x encoder x objective is evaluated."""

    stages: Annotated[tuple[Stage, ...], Field(min_length=1)] = ("linear_probe", "finetune")
    #: Label fractions of the training split, nested and drawn by patient.
    fractions: Annotated[tuple[Annotated[float, Field(gt=0, le=1)], ...], Field(min_length=1)] = (
        0.01, 0.05, 0.1, 0.5, 1.0,
    )
    #: Draws per fraction below 1 (a fraction of 1 is the whole split: one draw).
    draws: Annotated[int, Field(ge=1)] = 3
    seeds: Annotated[tuple[int, ...], Field(min_length=1)] = (0,)
    #: ``all``: the encoder's own leads; ``I``: lead I alone (single-lead use).
    leads: Annotated[tuple[LeadSet, ...], Field(min_length=1)] = ("all",)
    #: Bootstrap resamples over test patients for confidence intervals.
    bootstrap: Annotated[int, Field(ge=0)] = 1000
    #: Seed of the patient split (train / val / test by a hash of the patient id) where a task has no folds.
    split_seed: int = 0
    pretrain: Pretraining = Pretraining()
    finetune: Finetuning = Finetuning()
    linear_probe: LinearProbe = LinearProbe()

    @model_validator(mode="after")
    def _check(self) -> Protocol:
        for field in ("stages", "fractions", "seeds", "leads"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                raise ValueError(f"{field}: repeated value in {list(values)}")
        return self


class SyntheticData(_Model):
    """The built-in synthetic cohort (``stence-bench data synth``), generated on first use inside the run folder.
    It provides the ``mimic-iv-ecg`` (with the clinical tables and angiograms) and ``ptbxl`` datasets."""

    patients: Annotated[int, Field(ge=20)] = 400
    seed: int = 0
    angiograms: bool = True


class DataSource(_Model):
    """Where a dataset's files are: a folder read by a registered layout, and a folder of label tables (CSV)."""

    path: str
    #: A registered dataset (layout) name; default: the name the source is given under ``[data.sources]``.
    layout: str | None = None
    #: Layout options (``rate = 500`` for PTB-XL).
    options: dict[str, JsonValue] = {}
    #: A folder of label CSVs (``stenosis.csv``, ``echo.csv``, ...) that tasks read by file stem.
    tables: str | None = None
    #: Sources with the same namespace share patient ids (one hospital's ECG and echo exports): a validation or
    #: test patient of a task on one is kept out of pretraining on the other. Default: the source's own name.
    patient_namespace: str | None = None


class DataConfig(_Model):
    """The data a suite runs on: the synthetic cohort, named sources, or both (a source overrides the cohort's)."""

    synthetic: SyntheticData | None = None
    sources: dict[str, DataSource] = {}
    #: The dataset whose training patients pretrain every encoder x objective.
    pretrain: str = "mimic-iv-ecg"


class Cluster(_Model):
    """Where the SLURM launcher (``stence-bench run --launcher slurm``) sends the jobs; the command line's
    ``--partition``, ``--time-min``, ``--gpus-per-job`` and ``--cells-per-job`` override these."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: Wall-time limit of each job, in minutes.
    time_min: Annotated[int, Field(ge=1)] = 240
    #: GPUs of a pretraining job: one process per GPU, DDP over them. Evaluation jobs take one (none with 0).
    gpus_per_job: Annotated[int, Field(ge=0)] = 1
    #: Processes (SLURM tasks) of a pretraining job, DDP over them: one per GPU (leave it out), or with
    #: ``gpus_per_job = 0`` that many CPU processes (gloo). Default: ``gpus_per_job``, at least 1.
    tasks_per_job: Annotated[int, Field(ge=1)] | None = None
    cpus_per_task: Annotated[int, Field(ge=1)] = 8
    mem_gb: Annotated[int, Field(ge=1)] | None = None
    #: Evaluation cells per job (cells that share a pretraining checkpoint share a job, and its embeddings).
    cells_per_job: Annotated[int, Field(ge=1)] = 64
    #: Any other ``sbatch`` option, e.g. ``{constraint = "a100"}``.
    sbatch: dict[str, JsonValue] = {}


class Suite(_Model):
    """A suite file."""

    name: Name
    description: str = ""
    tasks: Annotated[tuple[str, ...], Field(min_length=1)]
    encoders: Annotated[tuple[Choice, ...], Field(min_length=1)]
    objectives: Annotated[tuple[Choice, ...], Field(min_length=1)]
    protocol: Protocol = Protocol()
    data: DataConfig = DataConfig(synthetic=SyntheticData())
    #: Add the registered control objectives (random init, ...) that the suite does not list.
    controls: bool = True
    #: Where SLURM jobs go (``--launcher slurm``); not part of any cell's config.
    cluster: Cluster = Cluster()


#: Which model validates the table at a location (list indices left out), for did-you-mean on unknown fields.
_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): Suite,
    ("protocol",): Protocol,
    ("encoders",): Choice,
    ("objectives",): Choice,
    ("protocol", "pretrain"): Pretraining,
    ("protocol", "finetune"): Finetuning,
    ("protocol", "linear_probe"): LinearProbe,
    ("data",): DataConfig,
    ("data", "synthetic"): SyntheticData,
    ("cluster",): Cluster,
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
            known = _MODEL_AT[parent].model_fields if parent in _MODEL_AT else {}
            problems.append(f"{source}: {where}: unknown field{did_you_mean(str(loc[-1]), known)}")
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
        ("encoders", "encoder", [c.name for c in suite.encoders]),
        ("objectives", "objective", [c.name for c in suite.objectives]),
    ):
        seen: set[str] = set()
        for i, name in enumerate(values):
            if name in seen:
                problems.append(f"{source}: {field}[{i}]: {kind} {name!r} is listed twice")
            seen.add(name)
    for i, task in enumerate(suite.tasks):
        check("tasks", i, "task", task)
    for i, choice in enumerate(suite.encoders):
        spec = check("encoders", i, "encoder", choice.name)
        if spec is not None and choice.preset is not None:
            try:
                spec.preset(choice.preset)
            except UnknownNameError as exc:
                problems.append(f"{source}: encoders[{i}].preset: {exc}")
    for i, choice in enumerate(suite.objectives):
        spec = check("objectives", i, "objective", choice.name)
        if spec is not None and choice.preset is not None:
            problems.append(f"{source}: objectives[{i}].preset: objectives have no presets; use options")
        if spec is None:
            continue
        lacking = set(spec.modalities) - pretraining_modalities(suite, registry)
        if lacking:
            problems.append(
                f"{source}: objectives[{i}]: objective {spec.name!r} needs {', '.join(sorted(lacking))}, which the "
                f"pretraining dataset {suite.data.pretrain!r} does not provide"
            )
        problems += _target_problems(spec, choice, registry, f"{source}: objectives[{i}].options.targets")
    problems += _contained_test_data(suite, registry, source)
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
    """What the suite's pretraining dataset can give objectives: its layout's modalities, plus what a tables
    folder can add (clinical metadata and risk, angiograms linked from the stenosis table, report labels, the labels
    of target tasks)."""
    name = suite.data.pretrain
    source = suite.data.sources.get(name)
    synthetic = suite.data.synthetic is not None and name in ("mimic-iv-ecg", "ptbxl") and source is None
    layout = (source.layout or name) if source is not None else name
    provided = set(registry.datasets.get(layout).modalities) if layout in registry.datasets else {"ecg"}
    if synthetic and name == "mimic-iv-ecg":  # tables, reports, angiograms or precomputed angiography embeddings
        provided |= {"metadata", "labels", "angiography", "targets"}
    if source is not None and source.tables:
        provided |= {"metadata", "labels", "angiography", "targets"}
    if "text" in provided:
        provided.add("labels")  # report statements
    return provided


def validate_suite(arg: str | Path, registry: Registry) -> tuple[Suite, Path]:
    """Load a suite and check its names, then the code they name (:func:`check_code`); any problem raises
    :class:`SuiteError` listing all of them."""
    suite, path = load_suite(arg)
    problems = check_names(suite, registry, str(path))
    if problems:
        raise SuiteError(problems)
    problems = check_code(suite, registry, str(path))
    if problems:
        raise SuiteError(problems)
    return suite, path


#: What the harness passes an objective's factory itself: not options a suite may set.
_OBJECTIVE_ARGUMENTS = frozenset({"encoder", "leads", "modality_encoders", "n_labels", "target_columns", "name"})


def check_code(suite: Suite, registry: Registry, source: str = "<suite>") -> list[str]:
    """What a run would fail on in every cell, found before it starts: a factory or label function that does not
    import, and an encoder's or objective's ``options`` that its factory does not take (with a did-you-mean).
    Imports the factories (and so torch); names must have passed :func:`check_names`."""
    from .errors import PluginError
    from .protocol.pretrain import RUNNER_OPTIONS
    from .specs import import_object

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
            options(f"encoders[{i}].options", f"encoder {choice.name!r} ({spec.factory})", factory, choice.options,
                    provided=("n_leads",))
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


# --- cells --------------------------------------------------------------------------------------------------


class Cell(_Model):
    """One unit of work. ``pretrain`` cells make checkpoints; the others evaluate one on one task."""

    stage: Literal["pretrain", "linear_probe", "finetune", "zero_shot"]
    task: str | None = None
    encoder: str
    preset: str | None = None
    encoder_options: dict[str, JsonValue] = {}
    objective: str
    objective_options: dict[str, JsonValue] = {}
    seed: int
    fraction: float | None = None
    draw: int | None = None
    leads: LeadSet = "all"
    #: Versions of the specs involved (encoder, objective, task): a new version is a new cell.
    versions: dict[str, str] = {}
    #: Fingerprints of the specs' content and origin (:meth:`Registry.fingerprint`): the encoder, the objective
    #: and the modality encoders it pairs with, the task. Another plugin's spec under the same name is another cell.
    specs: dict[str, str] = {}
    #: The protocol settings the cell's numbers depend on (training, probe, bootstrap, split seed).
    settings: dict[str, JsonValue] = {}
    #: The suite's data section (which cohort or sources).
    data: dict[str, JsonValue] = {}

    def pretrain_cell(self) -> Cell | None:
        """The pretraining cell whose checkpoint this evaluation starts from (``None`` without pretraining)."""
        if self.stage == "pretrain" or "pretrain" not in self.settings:
            return None
        return Cell(stage="pretrain", encoder=self.encoder, preset=self.preset, encoder_options=self.encoder_options,
                    objective=self.objective, objective_options=self.objective_options, seed=self.seed,
                    versions={k: v for k, v in self.versions.items() if k in ("encoder", "objective")},
                    specs={k: v for k, v in self.specs.items() if k != "task"},
                    settings={k: v for k, v in self.settings.items() if k in ("pretrain", "split_seed")},
                    data=self.data)

    @property
    def label(self) -> str:
        """A short human description: ``stage task encoder[preset] objective f=0.1 d=0 seed 0``."""
        enc = self.encoder if self.preset is None else f"{self.encoder}[{self.preset}]"
        parts = [self.stage, *([self.task] if self.task else []), enc, self.objective]
        if self.fraction is not None:
            parts.append(f"f={self.fraction:g} d={self.draw}")
        parts.append(f"seed {self.seed}" + ("" if self.leads == "all" else f" lead {self.leads}"))
        return " ".join(parts)

    @property
    def key(self) -> str:
        """The hash of the resolved config: equal configs, equal keys."""
        return digest(self.model_dump(mode="json"))


class CellOutcome(_Model):
    """How a cell ended, as reported to the ``cell_finished`` and ``run_finished`` observers."""

    key: str
    status: Literal["done", "cached", "failed"]
    wall_s: float = 0.0
    result_path: str | None = None
    error: str | None = None


def resolved_objectives(suite: Suite, registry: Registry) -> tuple[list[Choice], list[str]]:
    """The suite's objectives plus the registered controls it does not list; also the names that were added."""
    objectives = list(suite.objectives)
    added: list[str] = []
    if suite.controls:
        listed = {c.name for c in objectives}
        for spec in registry.objectives:
            if spec.control and spec.name not in listed:
                objectives.append(Choice(name=spec.name))
                added.append(spec.name)
    return objectives, added


def plan(suite: Suite, registry: Registry) -> list[Cell]:
    """Expand a validated suite into its cells: pretraining first, then every evaluation."""
    objectives, _ = resolved_objectives(suite, registry)
    proto = suite.protocol
    data = suite.data.model_dump(mode="json")
    pretrain_settings = {"pretrain": proto.pretrain.model_dump(mode="json"), "split_seed": proto.split_seed}

    def settings(obj_spec: Any, stage: str) -> dict[str, Any]:
        out: dict[str, Any] = dict(pretrain_settings) if obj_spec.pretrains else {"split_seed": proto.split_seed}
        if stage == "pretrain":
            return out
        out["bootstrap"] = proto.bootstrap
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

    cells: list[Cell] = []
    for seed in proto.seeds:
        for enc in suite.encoders:
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
                        )
                    )
    for task in suite.tasks:
        task_spec = registry.tasks.get(task)
        for enc in suite.encoders:
            enc_spec = registry.encoders.get(enc.name)
            for obj in objectives:
                obj_spec = registry.objectives.get(obj.name)
                versions = {"encoder": enc_spec.version, "objective": obj_spec.version, "task": task_spec.version}
                common = dict(
                    task=task, encoder=enc.name, preset=enc.preset, encoder_options=enc.options,
                    objective=obj.name, objective_options=obj.options, versions=versions,
                    specs={**specs(enc, obj), "task": registry.fingerprint("task", task)},
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
                                    cells.append(
                                        Cell(stage=stage, seed=seed, leads=leads, fraction=fraction, draw=draw,
                                             **common, **extra)
                                    )
    return cells
