"""The suite file's schema: the pydantic models a ``leaderboards/*.toml`` file validates against (:class:`Suite` and
its parts). Reading, checking and planning a suite against the installed plugins is :mod:`stence_bench.suite`,
which re-exports these models; this module needs no registry, so the plugin contract can name :class:`Suite`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, JsonValue, model_validator

from .cells import LeadSet
from .specs import Name, OmitWhenDefault, WeightsLayout
from .synth.side import SideInformation

Stage = Literal["linear_probe", "finetune", "zero_shot"]


def lead_names(leads: str, own: Sequence[str]) -> tuple[str, ...]:
    """The leads a lead set names: ``own`` (the encoder's) for ``all``, else the ``+``-joined names."""
    return tuple(own) if leads == "all" else tuple(leads.split("+"))


SUITE_PACKAGE = "stence_bench_leaderboards"


class _Model(OmitWhenDefault):
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


class WeightsSource(_Model):
    """An encoder's given weights: a file the user downloaded or trained (safetensors, or a PyTorch file read with
    ``weights_only``). ``prefix``, ``ignore`` and ``rename`` override the encoder's declared layout of its released
    checkpoint (:class:`~stence_bench.specs.WeightsLayout`). A bare string is the path."""

    #: The file: ``~`` expanded, relative to the current folder.
    path: str
    #: The sha256 the file must have (pins it); without it the file's hash is recorded, never checked.
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    prefix: str | None = None
    ignore: tuple[str, ...] | None = None
    rename: dict[str, str] | None = None
    #: Missing, unexpected or other-shaped tensors are an error (listing the first of each); ``false`` loads the
    #: tensors that fit and records what did not.
    strict: bool = True
    #: Datasets whose records these weights have seen, besides the encoder spec's (contamination flag).
    pretrained_on: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    def layout(self, declared: WeightsLayout) -> WeightsLayout:
        """The encoder's declared layout with this entry's overrides."""
        return WeightsLayout(prefix=declared.prefix if self.prefix is None else self.prefix,
                             ignore=declared.ignore if self.ignore is None else self.ignore,
                             rename=declared.rename if self.rename is None else self.rename)


class EncoderChoice(Choice):
    """An encoder in a suite: a name, optionally a preset, options and given weights."""

    weights: WeightsSource | None = None

    @property
    def label(self) -> str:
        base = super().label
        return base if self.weights is None else f"{base} @ {Path(self.weights.path).name}"


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
    #: The leads pretraining sees (a lead set, as ``protocol.leads``): ``I`` pretrains on lead I alone, the other
    #: leads zero, on the records that have it (CLEF's lead-I pretraining).
    leads: LeadSet = "all"

    _omit_when_default: ClassVar[tuple[str, ...]] = ("leads",)


class Finetuning(_Model):
    """How the whole network is finetuned per task x fraction x draw, with early stopping on validation loss."""

    max_epochs: Annotated[int, Field(ge=1)] = 30
    patience: Annotated[int, Field(ge=1)] = 3
    batch_size: Annotated[int, Field(ge=1)] = 64
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    #: Partial finetuning: train only the encoder's last ``train_blocks`` blocks (its ``blocks()``) and the head;
    #: the earlier blocks stay frozen (weights and normalisation statistics). Default: the whole network.
    train_blocks: Annotated[int, Field(ge=0)] | None = None
    #: Layer-wise learning-rate decay: block ``i`` of ``n`` learns at ``lr * layer_decay ** (n - i)``, the head at
    #: ``lr``. Default: one learning rate.
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = None

    _omit_when_default: ClassVar[tuple[str, ...]] = ("train_blocks", "layer_decay")


class LinearProbe(_Model):
    """The linear probe: L2-regularised logistic (classification) or ridge (regression) regression on the cached
    embeddings; the strength is chosen on the validation split by the task's metric."""

    c_grid: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (0.001, 0.01, 0.1, 1.0, 10.0)


class Subgroups(_Model):
    """The prespecified subgroups every evaluation cell also scores on its test records (besides the task's own,
    :attr:`~stence_bench.specs.TaskSpec.subgroups`): sex, and age bands cut at ``age_bands`` (each band holds its
    lower edge: ``[40, 60)`` is ``age 40-59``)."""

    sex: bool = True
    #: Edges of the age bands, in years, increasing: ``(40, 60, 80)`` gives ``<40``, ``40-59``, ``60-79``, ``>=80``;
    #: empty: no age bands.
    age_bands: tuple[Annotated[float, Field(gt=0, lt=150)], ...] = (40.0, 60.0, 80.0)
    #: A subgroup with fewer test patients is scored and shown but never named the worst (too few to say).
    min_patients: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _check(self) -> Subgroups:
        if list(self.age_bands) != sorted(set(self.age_bands)):
            raise ValueError(f"age_bands: edges must increase, got {list(self.age_bands)}")
        return self


class External(_Model):
    """External validation of a task: trained (and tuned) on its own dataset's training and validation patients,
    tested on every labelled record of each of ``datasets`` (other sources the task's labels are defined on: the same
    layout and tables, or a layout giving the same classes)."""

    task: str
    datasets: Annotated[tuple[str, ...], Field(min_length=1)]


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
    #: Lead sets every cell is evaluated on: ``all`` (the encoder's own leads), ``I`` (lead I alone: single-lead
    #: use), or names joined by ``+`` (``I+II``: reduced-lead use); the other leads are zero. A record is scored on a
    #: lead set only when it has every lead of it (a single-lead record on ``I``, never on ``all``).
    leads: Annotated[tuple[LeadSet, ...], Field(min_length=1)] = ("all",)
    #: Bootstrap resamples over test patients for confidence intervals.
    bootstrap: Annotated[int, Field(ge=1)] = 1000
    #: Seed of the patient split (train / val / test by a hash of the patient id) where a task has no folds.
    split_seed: int = 0
    pretrain: Pretraining = Pretraining()
    finetune: Finetuning = Finetuning()
    linear_probe: LinearProbe = LinearProbe()
    subgroups: Subgroups = Subgroups()
    #: External validation: a task's linear probes and finetunes also tested on other datasets (cells of their own,
    #: their key naming the test dataset), beside the internal ones on the leaderboard.
    external: tuple[External, ...] = ()

    _omit_when_default: ClassVar[tuple[str, ...]] = ("subgroups", "external")

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
    #: Noise and dropout of each paired modality (report, angiography, angiography_embeddings, metadata, risk):
    #: ``side = { report = { dropout = 0.5 } }`` (docs/synthetic.md, "Side information"); default: as generated.
    side: SideInformation = SideInformation()

    _omit_when_default: ClassVar[tuple[str, ...]] = ("side",)


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
    """The data a suite runs on: the synthetic cohort, named sources, or both (a source overrides the cohort's).

    The cohort is on when ``[data]`` names no source and says nothing of ``synthetic`` (a suite without ``[data]``
    or with only ``pretrain``); a suite with sources runs on them alone unless it asks for the cohort too
    (``synthetic = {}`` for its defaults)."""

    synthetic: SyntheticData | None = None
    sources: dict[str, DataSource] = {}
    #: The dataset whose training patients pretrain every encoder x objective.
    pretrain: str = "mimic-iv-ecg"

    @model_validator(mode="before")
    @classmethod
    def _cohort_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "synthetic" not in value and not value.get("sources"):
            return {**value, "synthetic": {}}
        return value

    def provided(self) -> list[str]:
        """The datasets that have a source: the cohort's two exports (when it is on) and the named sources."""
        cohort = list(SYNTHETIC_DATASETS) if self.synthetic is not None else []
        return sorted({*cohort, *self.sources})


#: The datasets the synthetic cohort provides (its MIMIC-IV-ECG and PTB-XL exports).
SYNTHETIC_DATASETS = ("mimic-iv-ecg", "ptbxl")


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


class MlflowTracker(_Model):
    """``[trackers.mlflow]``: log the run to MLflow (the ``trackers`` extra; docs/suites.md)."""

    #: An MLflow tracking URI (``file:/path``, ``sqlite:///path.db``, ``http://host:5000``); default: the local file
    #: store ``file:<run folder>/mlruns``. A bare path is a file store; a relative one lies in the run folder.
    tracking_uri: str | None = None
    #: The MLflow experiment; default: the suite's name.
    experiment: str | None = None


class TensorboardTracker(_Model):
    """``[trackers.tensorboard]``: write TensorBoard event files (the ``trackers`` extra; docs/suites.md)."""

    #: The folder of the event files; default ``<run folder>/tensorboard``; a relative path lies in the run folder.
    log_dir: str | None = None


#: Each tracker's settings model, by its name in ``[trackers]`` and ``run --tracker``.
TRACKER_SETTINGS: dict[str, type[_Model]] = {"mlflow": MlflowTracker, "tensorboard": TensorboardTracker}


class Trackers(_Model):
    """``[trackers]``: experiment trackers the run logs to (per-step pretraining losses, each cell's scores and
    config, the results table). Not part of any cell's config: turning one on or off runs nothing again."""

    mlflow: MlflowTracker | None = None
    tensorboard: TensorboardTracker | None = None

    def names(self) -> list[str]:
        """The trackers turned on."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    def turn_on(self, names: Iterable[str]) -> Trackers:
        """These trackers on as well (``run --tracker NAME``), with their defaults where the suite has no table."""
        update = {name: TRACKER_SETTINGS[name]() for name in names if getattr(self, name) is None}
        return self.model_copy(update=update)


class RowRef(_Model):
    """A row of a suite's tables in a comparison: an encoder (its name, or ``name[preset]``) and an objective; a
    field left out means any row's (as the compared row) or the compared row's own (as the reference). A bare
    string is an objective."""

    encoder: str | None = None
    objective: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"objective": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return " ".join(x for x in (self.encoder, self.objective) if x) or "every row"


class Comparison(_Model):
    """Paired differences of rows against a reference row on the shared resamples, per task and across the suite's
    tasks (:func:`stence_bench.results.aggregate.compare`): ``row = "clip", reference = "clip_text"``, or
    ``reference = "supervised"`` (every row against the supervised control of its encoder)."""

    #: A name for the comparison; default: ``"<row> vs <reference>"``.
    name: str | None = None
    row: RowRef = RowRef()
    reference: RowRef

    @property
    def label(self) -> str:
        return self.name or f"{self.row.label} vs {self.reference.label}"


class Suite(_Model):
    """A suite file."""

    name: Name
    description: str = ""
    tasks: Annotated[tuple[str, ...], Field(min_length=1)]
    encoders: Annotated[tuple[EncoderChoice, ...], Field(min_length=1)]
    objectives: Annotated[tuple[Choice, ...], Field(min_length=1)]
    protocol: Protocol = Protocol()
    data: DataConfig = DataConfig(synthetic=SyntheticData())
    #: Add the registered control objectives (random init, ...) that the suite does not list.
    controls: bool = True
    #: Where SLURM jobs go (``--launcher slurm``); not part of any cell's config.
    cluster: Cluster = Cluster()
    #: Paired differences against reference rows, per task and across tasks (tables and leaderboard only: not part
    #: of any cell's config).
    comparisons: tuple[Comparison, ...] = ()
    #: Experiment trackers the run logs to (``[trackers.mlflow]``, ``[trackers.tensorboard]``); not part of any
    #: cell's config.
    trackers: Trackers = Trackers()

    _omit_when_default: ClassVar[tuple[str, ...]] = ("comparisons", "trackers")
