"""The specs plugins register: frozen pydantic models that describe, never import, the heavy code.

Heavy code (models, losses, label functions, readers) is named by a ``"module:attr"`` string and imported
on first use, so discovering and listing plugins stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from .errors import PluginError, UnknownNameError, unknown_name_message

#: The standard 12 leads, in the order every reader and encoder in stence-bench uses.
TWELVE_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_LEADS: tuple[str, ...] = TWELVE_LEADS[:6]
PRECORDIAL_LEADS: tuple[str, ...] = TWELVE_LEADS[6:]

#: A registered name: lower case, digits, ``_ . -``; dots group families (``stenosis.70``).
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", max_length=80)]
#: ``"package.module:attribute"``: imported on first use.
FactoryRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")]
#: What an objective needs from its dataset, and what a dataset provides. ``targets``: the labels of registered tasks
#: on the pretraining records (an auxiliary loss's or a supervised miner's own targets, never ``labels``).
Modality = Literal["ecg", "angiography", "text", "metadata", "patient_id", "labels", "targets"]
#: How an encoder's input is normalised by the harness before ``forward``: ``zscore_record`` standardises each
#: lead of a window over its own samples; ``zscore_all_leads`` standardises the window with one mean and one
#: standard deviation over all its leads and samples (ECGFounder, ST-MEM); ``zscore_dataset`` applies per-lead
#: statistics of the training records.
Normalization = Literal["none", "zscore_record", "zscore_all_leads", "zscore_dataset"]
TaskKind = Literal["binary", "multilabel", "multiclass", "regression"]
Metric = Literal["auroc", "auprc", "f1", "sensitivity", "mae", "rmse", "r2"]
REGRESSION_METRICS = frozenset({"mae", "rmse", "r2"})


def import_object(ref: str, *, what: str) -> Any:
    """Import ``"module:attr"``; a failure is a :class:`PluginError` naming ``what`` and the reference."""
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except Exception as exc:  # noqa: BLE001 - any failure here is the plugin's, reported as such
        raise PluginError(f"{what}: cannot import {ref!r}: {type(exc).__name__}: {exc}") from exc
    return obj


class OmitWhenDefault(BaseModel):
    """Fields added after keys were published are left out of every dump (``model_dump``, JSON) while they hold
    their default: a spec's fingerprint and a cell's key hash these dumps, so adding an optional field keeps every
    earlier key, and finished results stay finished. List such fields in ``_omit_when_default``."""

    _omit_when_default: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self._omit_when_default:
                if name in data and getattr(self, name) == type(self).model_fields[name].default:
                    del data[name]
        return data


class Spec(OmitWhenDefault):
    """Base of every spec: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Set by each spec class: the word used for it in messages and on the command line.
    kind: ClassVar[str] = "spec"

    name: Name
    description: str = ""
    #: Bump when anything that changes a number changes; recorded with every result.
    version: str = "1"
    citation: str = ""


class EncoderPreset(BaseModel):
    """A named size of an encoder: keyword arguments for its factory and the embedding size they give."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    options: dict[str, JsonValue] = {}
    embed_dim: Annotated[int, Field(gt=0)] | None = None
    description: str = ""


class WeightsLayout(BaseModel):
    """How a weights file's tensors map onto an encoder's own parameter names (its ``state_dict``).

    The file's tensors are flattened to dotted names (``{"model": {"a.b": t}}`` gives ``model.a.b``); the names
    under ``prefix`` are kept, the prefix stripped; names matching an ``ignore`` glob are left out (a released
    classification head, a pretraining decoder); then each ``rename`` regular expression is replaced, in order.
    An encoder spec declares the layout of its released checkpoint; a suite's ``weights`` may override each field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = ""
    ignore: tuple[str, ...] = ()
    rename: dict[str, str] = {}


class EncoderSpec(Spec):
    """An ECG encoder and its input contract.

    ``factory`` names a callable ``factory(*, n_leads: int, **options) -> torch.nn.Module``. The module has an
    ``embed_dim`` attribute and ``forward(x)`` maps float32 ``[batch, n_leads, n_samples]`` to
    ``[batch, embed_dim]``. The harness resamples to ``sampling_rate``, crops or pads to ``window_s``, selects
    and orders ``leads``, band-passes and normalises as declared, so no user ever guesses the contract.
    """

    kind: ClassVar[str] = "encoder"

    factory: FactoryRef
    sampling_rate: Annotated[float, Field(gt=0)]
    window_s: Annotated[float, Field(gt=0)]
    leads: Annotated[tuple[str, ...], Field(min_length=1)] = TWELVE_LEADS
    embed_dim: Annotated[int, Field(gt=0)]
    bandpass_hz: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]] | None = None
    normalization: Normalization = "zscore_record"
    presets: dict[str, EncoderPreset] = {}
    default_preset: str | None = None
    #: Datasets whose records the weights have seen (contamination flag on leaderboards).
    pretrained_on: tuple[str, ...] = ()
    #: Where the tensors of the released checkpoint lie (``weights = "..."`` in a suite reads it with no mapping).
    weights_layout: WeightsLayout = WeightsLayout()

    _omit_when_default: ClassVar[tuple[str, ...]] = ("weights_layout",)

    @model_validator(mode="after")
    def _check(self) -> EncoderSpec:
        if len(set(self.leads)) != len(self.leads):
            raise ValueError(f"leads: repeated lead name in {self.leads}")
        if self.n_samples < 1:
            raise ValueError("sampling_rate * window_s must give at least one sample")
        if not math.isclose(self.sampling_rate * self.window_s, self.n_samples, abs_tol=1e-6):
            raise ValueError(
                f"sampling_rate * window_s = {self.sampling_rate * self.window_s:g} is not a whole number of samples"
            )
        if self.bandpass_hz is not None:
            low, high = self.bandpass_hz
            if not low < high <= self.sampling_rate / 2:
                raise ValueError(f"bandpass_hz: need low < high <= sampling_rate / 2, got {self.bandpass_hz}")
        if self.default_preset is not None and self.default_preset not in self.presets:
            raise ValueError(f"default_preset {self.default_preset!r} is not one of presets {sorted(self.presets)}")
        return self

    @property
    def n_samples(self) -> int:
        """Samples per lead of one input window."""
        return round(self.sampling_rate * self.window_s)

    def preset(self, preset: str | None = None) -> EncoderPreset:
        """The named preset (``None``: the default preset, or the factory's own defaults when there is none)."""
        name = preset if preset is not None else self.default_preset
        if name is None:
            return EncoderPreset(embed_dim=self.embed_dim)
        if name not in self.presets:
            raise UnknownNameError(unknown_name_message("preset", name, self.presets, f" of encoder {self.name!r}"))
        chosen = self.presets[name]
        return chosen if chosen.embed_dim is not None else chosen.model_copy(update={"embed_dim": self.embed_dim})

    def build(self, preset: str | None = None, *, n_leads: int | None = None, **options: Any) -> Any:
        """Import the factory and build the module (imports torch). ``options`` override the preset's."""
        factory = import_object(self.factory, what=f"encoder {self.name!r}")
        kwargs = {**self.preset(preset).options, **options}
        return factory(n_leads=len(self.leads) if n_leads is None else n_leads, **kwargs)


#: Objective options the runner reads itself (which modality encoder, at which size, which target tasks); the rest go
#: to the factory.
RUNNER_OPTIONS = ("modality_encoders", "modality_options", "targets")


class ObjectiveSpec(Spec):
    """A pretraining objective.

    ``factory`` names a callable ``factory(**options)`` returning the objective (a ``torch.nn.Module`` whose
    loss the pretraining loop minimises); ``None`` means no pretraining at all, as for the random-init control.
    """

    kind: ClassVar[str] = "objective"

    factory: FactoryRef | None = None
    #: What each training example must carry; the runner refuses a dataset that lacks one, naming it.
    modalities: Annotated[tuple[Modality, ...], Field(min_length=1)] = ("ecg",)
    #: True when negatives are all-gathered across ranks (with gradients) under torch.distributed.
    gathers_across_ranks: bool = False
    options: dict[str, JsonValue] = {}
    #: A control row that every matrix includes automatically (random init, supervised from scratch).
    control: bool = False
    #: The registered modality encoder used for each paired modality (``{"angiography": "angio_cnn"}``).
    modality_encoders: dict[Literal["angiography", "text", "metadata"], Name] = {}
    #: Evaluates an encoder's given weights as loaded (``weights =`` in a suite), with no pretraining: planned for
    #: every encoder entry that has weights, never for one without (the built-in ``pretrained``).
    as_given: bool = False
    #: With the ``targets`` modality: the registered tasks whose labels, computed on the pretraining records from the
    #: pretraining dataset's tables, make ``batch["targets"]`` (their columns side by side, NaN where a record has no
    #: label); a suite may name others with the objective option ``targets``.
    targets: tuple[Name, ...] = ()

    _omit_when_default: ClassVar[tuple[str, ...]] = ("as_given", "targets")

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSpec:
        if "ecg" not in self.modalities:
            raise ValueError("modalities must include 'ecg'")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: repeated entry in {self.modalities}")
        stray = sorted(set(self.modality_encoders) - set(self.modalities))
        if stray:
            raise ValueError(f"modality_encoders: {', '.join(stray)} not among modalities {self.modalities}")
        if self.as_given and self.factory is not None:
            raise ValueError("as_given: an objective that evaluates given weights as loaded does not pretrain; "
                             "it has no factory")
        if bool(self.targets) != ("targets" in self.modalities):
            raise ValueError("targets: name the tasks whose labels make batch['targets'] exactly when modalities "
                             f"include 'targets' (modalities {self.modalities}, targets {self.targets})")
        return self

    @property
    def pretrains(self) -> bool:
        return self.factory is not None

    @property
    def loads_weights(self) -> bool:
        """Whether its cells start from an encoder entry's given weights: every objective but a random-init one
        (no factory, not ``as_given``: the ``none`` control), which is the architecture's random initialisation."""
        return self.pretrains or self.as_given

    def build(
        self,
        encoder: Any,
        *,
        leads: tuple[str, ...],
        modality_encoders: dict[str, Any] | None = None,
        n_labels: int | None = None,
        target_columns: Sequence[Sequence[str]] | None = None,
        **options: Any,
    ) -> Any:
        """Import the factory and build the objective around ``encoder`` (see :mod:`stence_bench.pretraining`).

        ``options`` override the spec's own. ``target_columns`` (one tuple of label columns per target task) is
        passed to the factory of an objective with the ``targets`` modality only."""
        if self.factory is None:
            raise PluginError(f"objective {self.name!r} does not pretrain: it has no factory to build")
        factory = import_object(self.factory, what=f"objective {self.name!r}")
        kwargs = {"name": self.name, **self.options, **options}
        if "targets" in self.modalities:
            kwargs["target_columns"] = tuple(tuple(c) for c in (target_columns or ()))
        return factory(encoder=encoder, leads=tuple(leads), modality_encoders=dict(modality_encoders or {}),
                       n_labels=n_labels, **kwargs)


class TaskSpec(Spec):
    """A downstream task: which dataset layout it reads, how labels are made, how it is scored.

    ``labels`` names the label function the dataset's reader calls with its tables and ``options``.
    """

    kind: ClassVar[str] = "task"

    dataset: Name
    task_kind: TaskKind
    labels: FactoryRef
    options: dict[str, JsonValue] = {}
    metric: Metric
    #: ``strat_fold``: the dataset's own folds (PTB-XL 1-8 / 9 / 10); ``official``: the publisher's split of each
    #: record (its meta ``split``: train / val / test, anything else in no split, as EchoNext's ``no_split``);
    #: ``patient``: a seeded split by patient.
    split: Literal["strat_fold", "official", "patient"] = "patient"
    #: Columns of the source tables the label function needs; a source lacking one is named in the error.
    source_columns: tuple[str, ...] = ()
    #: The task card, ``"package:file.md"``.
    card: str | None = None
    #: Class descriptions for zero-shot evaluation of ECG-text models: one per label column for multi-label
    #: tasks; ``positive`` and ``negative`` for a binary task. Tasks without prompts have no zero-shot cells.
    prompts: dict[str, str] = {}
    #: Metadata columns whose values are prespecified subgroups of this task (its card says why): each record's
    #: meta field, else its patient's column in a ``patients`` table; every value is a subgroup (at most 20). Sex
    #: and age bands are scored for every task (the suite's ``protocol.subgroups``).
    subgroups: tuple[Annotated[str, StringConstraints(min_length=1)], ...] = ()

    _omit_when_default: ClassVar[tuple[str, ...]] = ("subgroups",)

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        regression = self.task_kind == "regression"
        if regression != (self.metric in REGRESSION_METRICS):
            raise ValueError(f"metric {self.metric!r} does not fit a {self.task_kind} task")
        if self.prompts and regression:
            raise ValueError("prompts: a regression task has no classes to describe")
        if self.prompts and self.task_kind == "binary" and set(self.prompts) != {"positive", "negative"}:
            raise ValueError(f"prompts: a binary task needs exactly 'positive' and 'negative', got {sorted(self.prompts)}")
        return self


#: What a store's samples are: millivolts, or values the publisher standardised (z-scored per lead) so that
#: millivolts cannot be recovered (EchoNext).
Units = Literal["mV", "z-score"]
#: Who may read a dataset: anyone (``open``), PhysioNet-credentialed users who signed its agreement
#: (``credentialed``), users granted access one by one under a data-use agreement (``restricted``), or whoever holds
#: the files (``local``: the generic layouts read the user's own data).
Access = Literal["open", "credentialed", "restricted", "local"]


class DatasetCard(BaseModel):
    """What a user must know about a dataset before using it: the dataset card of a :class:`DatasetSpec`.

    Documentation, not behaviour: left out of the spec's fingerprint (a corrected licence never invalidates a
    store). ``units`` must agree with the layout's own ``units`` (what ingest records in the store); a test checks
    every registered layout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The dataset's full name.
    title: str
    #: Licence of the data (an SPDX identifier where there is one, else the licence's name).
    licence: str
    access: Access
    #: The dataset's home page; ``doi`` its DOI (``10.13026/...``) where it has one.
    url: str = ""
    doi: str = ""
    #: Sampling rates of the records as published (Hz); empty: whatever each record says (generic layouts).
    sampling_rates: tuple[Annotated[float, Field(gt=0)], ...] = ()
    units: Units = "mV"
    #: The leads and their order as published (canonical names); empty: as each record names them.
    leads: tuple[str, ...] = ()
    #: What a record's ``patient_id`` is, and what it is when the source has none.
    patient_id: str
    #: The publisher's official splits, and how tasks use them; "none" when there are none.
    splits: str
    #: How many records and patients, as published.
    size: str = ""
    #: Anything else a user must know (preprocessing already applied by the publisher, known issues).
    notes: str = ""


class DatasetSpec(Spec):
    """A reader for one source layout (WFDB folder, PTB-XL, DICOM, ...).

    ``reader`` names a :class:`stence_bench.data.layouts.base.Layout` subclass: ``scan(source)`` lists the records,
    ``read(ref)`` reads one; ``stence-bench data ingest SOURCE --layout NAME`` runs it into an ECG store.
    """

    kind: ClassVar[str] = "dataset"

    reader: FactoryRef
    formats: tuple[str, ...] = ()
    #: What the layout can provide to objectives and tasks.
    modalities: tuple[Modality, ...] = ("ecg",)
    #: Datasets whose records this one republishes (CinC 2021 holds PTB-XL's): ``validate`` refuses a suite that
    #: pretrains on it and evaluates on them unless ``protocol.pretrain.test_overlap`` says what to do.
    contains: tuple[Name, ...] = ()
    #: The dataset card: licence, access, sampling rate, units, leads, patient ids, official splits.
    card: DatasetCard | None = None


class ModalitySpec(Spec):
    """An encoder for a paired modality (angiography, report text, clinical metadata).

    ``factory`` names ``factory(**options) -> torch.nn.Module`` mapping a batch of that modality to
    ``[batch, embed_dim]``.
    """

    kind: ClassVar[str] = "modality"

    modality: Literal["angiography", "text", "metadata"]
    factory: FactoryRef
    embed_dim: Annotated[int, Field(gt=0)]
    options: dict[str, JsonValue] = {}

    def build(self, **options: Any) -> Any:
        """Import the factory and build the module (imports torch). ``options`` override the spec's."""
        factory = import_object(self.factory, what=f"modality encoder {self.name!r}")
        return factory(**{**self.options, **options})
