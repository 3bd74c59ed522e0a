"""The data a run reads: sources materialised into ECG stores, splits, task labels and encoder inputs.

Everything lives in the run folder and is made once: the synthetic cohort (when the suite asks for it),
one store per dataset (``data/stores/<dataset>``, resumable ingest), one view per dataset and encoder contract
(``store/views/<contract>``). :class:`Windows` cuts encoder inputs from a view where it lies on disk (memory-mapped):
random crops for training, overlapping windows inside each record for evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.ingest import ingest
from ..data.layouts.base import Layout, build_layout
from ..data.layouts.base import report_statements as statements_of
from ..data.splits import (
    NO_SPLIT,
    check_patient_disjoint,
    link_duplicates,
    official_split,
    patient_split,
    patients_or_records,
    strat_fold_split,
)
from ..data.store import ECGStore
from ..data.view_cache import build_view
from ..data.views import contract_key
from ..data.windows import Windows
from ..errors import StenceBenchError
from ..files import temporaries, write_atomic
from ..hashing import digest
from ..registry import Registry
from ..specs import EncoderSpec, TaskSpec, import_object
from ..suite_schema import DataSource, Suite, lead_names
from ..task_data import TaskSource

Echo = Callable[[str], None]


class DataError(StenceBenchError):
    """A dataset a suite needs is missing or unreadable."""


class HeldOutOverlapError(DataError):
    """Pretraining records that are validation or test records of a task, which the suite refuses."""


@dataclass
class Dataset:
    """One dataset of a run: its store, its records (the store manifest) and the tables tasks read."""

    name: str
    store: ECGStore
    source: DataSource
    root: Path
    #: The layout that read the source (its :meth:`~stence_bench.data.layouts.base.Layout.labels`).
    layout: Layout | None = None

    @cached_property
    def fingerprint(self) -> str:
        return self.store.fingerprint()

    @cached_property
    def records(self) -> pd.DataFrame:
        m = self.store.manifest
        meta = [json.loads(text) if text else {} for text in m["meta"]]
        return pd.DataFrame({"record_id": m["record_id"].astype(str), "patient_id": m["patient_id"].astype(str),
                             "time": m["time"].fillna("").astype(str), "meta": meta})

    @cached_property
    def patients(self) -> pd.Series:
        """Patient id per record, indexed by record id, for splitting, label fractions and bootstrap: a record
        without one stands for its own patient, and records with identical signals count as one patient
        (:func:`~stence_bench.data.splits.link_duplicates`), so a signal filed twice never lands on both sides
        of a split."""
        series = pd.Series(self.records["patient_id"].replace({"nan": ""}).to_numpy(), index=self.records["record_id"])
        return link_duplicates(patients_or_records(series), self.checksums)

    @cached_property
    def checksums(self) -> pd.Series:
        """The stored signal's checksum per record id (equal signals, equal checksums, whatever their ids)."""
        m = self.store.manifest
        return pd.Series(m["checksum"].astype(str).to_numpy(), index=m["record_id"].astype(str).to_numpy())

    @property
    def namespace(self) -> str:
        """Whose patient ids these are: datasets that share a namespace share patients (the synthetic cohort's
        exports; a hospital's ECG and echo sources), others never do."""
        return self.source.patient_namespace or self.name

    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        tables = dict(self.store.tables())
        if self.source.tables:
            folder = Path(self.source.tables).expanduser()
            if not folder.is_dir():
                raise DataError(f"data.sources.{self.name}.tables: {folder}: no such folder")
            for path in sorted(folder.glob("*.csv")):
                tables[path.stem] = pd.read_csv(path)
        return tables

    @cached_property
    def task_source(self) -> TaskSource:
        return TaskSource(self.name, self.records, self.tables)

    @cached_property
    def default_policy(self) -> str:
        """``strat_fold`` where every record has one (PTB-XL), ``official`` where every record has a publisher's
        ``split`` (EchoNext), else ``patient``."""
        if not len(self.records):
            return "patient"
        if all("strat_fold" in meta for meta in self.records["meta"]):
            return "strat_fold"
        return "official" if all("split" in meta for meta in self.records["meta"]) else "patient"

    def split(self, policy: str, seed: int) -> np.ndarray:
        """``train`` / ``val`` / ``test`` per record: the dataset's ``strat_fold``, the publisher's ``official``
        split (where a record may be in none: ``NO_SPLIT``), or the seeded patient split."""
        ids = self.records["record_id"]
        if policy == "official":
            split = official_split(pd.Series([meta.get("split") for meta in self.records["meta"]], index=ids.to_numpy()))
            used = split[split != NO_SPLIT]
            check_patient_disjoint(used, self.patients)  # records in no split are never trained or scored on
            return split.to_numpy(dtype=str)
        if policy == "strat_fold":
            folds = pd.Series([meta.get("strat_fold") for meta in self.records["meta"]], index=ids.to_numpy())
            if folds.isna().any():
                raise DataError(f"dataset {self.name!r}: records without a strat_fold (e.g. {folds.index[folds.isna()][0]!r}); "
                                "use a task with split = 'patient'")
            split = strat_fold_split(folds.astype(int))
            # a signal filed under two ids in two folds: both copies go to the more held-out split (test > val)
            held = {"train": 0, "val": 1, "test": 2}
            rank = split.map(held).groupby(self.patients.reindex(split.index).to_numpy()).transform("max")
            split = rank.map({v: k for k, v in held.items()}).astype("string")
        else:
            split = patient_split(self.patients, seed=seed)
        check_patient_disjoint(split, self.patients)
        return split.to_numpy(dtype=str)


def lead_mask(spec: EncoderSpec, leads: str) -> torch.Tensor | None:
    """``all``: no mask; ``I``: lead I alone, every other lead zeroed (single-lead use of a 12-lead encoder);
    ``I+II``: those leads (reduced-lead use)."""
    if leads == "all":
        return None
    names = lead_names(leads, spec.leads)
    lacking = [name for name in names if name not in spec.leads]
    if lacking:
        raise DataError(f"encoder {spec.name!r} has no lead {', '.join(lacking)} (its leads: {', '.join(spec.leads)})")
    return torch.tensor([1.0 if lead in names else 0.0 for lead in spec.leads])


class Progress:
    """Progress of a long piece of work as occasional lines: the first after ``after_s`` seconds, then every
    ``every_s`` seconds, and the last when it is done (short work prints nothing)."""

    def __init__(self, echo: Echo, what: str, total: int, *, after_s: float = 10.0, every_s: float = 30.0):
        self.echo, self.what, self.total = echo, what, total
        self.done, self.started = 0, time.monotonic()
        self.said: float | None = None
        self.after_s, self.every_s = after_s, every_s

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        due = self.said is None and now - self.started >= self.after_s
        due = due or (self.said is not None and now - self.said >= self.every_s) or (
            self.said is not None and self.done >= self.total)
        if due:
            self.said = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            self.echo(f"{self.what}: {self.done}/{self.total} records ({now - self.started:.0f} s"
                      + (f", about {left:.0f} s left)" if self.done < self.total else ", done)"))


@dataclass
class HeldOut:
    """The validation and test records of a suite's tasks: their patients as ``(namespace, patient id)`` and their
    signals as checksum -> ``(task, dataset, record id)``."""

    patients: set[tuple[str, str]] = field(default_factory=set)
    signals: dict[str, tuple[str, str, str]] = field(default_factory=dict)


@dataclass
class PretrainingRecords:
    """What a suite's pretraining reads (:meth:`Workspace.pretraining_records`) and what it left out."""

    record_ids: list[str]
    #: training-split records left out because their patient is a validation or test patient of a task
    excluded_held_out_patients: int
    #: task -> pretraining records whose signal is one of that task's validation or test records (another dataset)
    test_overlap: dict[str, int]
    #: whether those records were kept (``test_overlap = "allow"``)
    test_overlap_kept: bool


def external_task(task: TaskSpec, dataset: str) -> TaskSpec:
    """The task's labels read on another dataset (its own labels cache entry, ``task@dataset``)."""
    return task.model_copy(update={"dataset": dataset, "name": f"{task.name}@{dataset}"})



class Workspace:
    """The data side of one run folder: materialises what a suite needs, once, and caches it in memory."""

    def __init__(self, suite: Suite, registry: Registry, root: Path, echo: Echo = print):
        self.suite, self.registry, self.root, self.echo = suite, registry, Path(root), echo
        self._datasets: dict[str, Dataset] = {}
        self._windows: dict[tuple[str, str], Windows] = {}
        self._labels: dict[str, pd.DataFrame] = {}
        self._held_out: HeldOut | None = None
        self._pretraining: PretrainingRecords | None = None

    # -- sources -------------------------------------------------------------------------------------------

    @cached_property
    def cohort(self) -> Path | None:
        synthetic = self.suite.data.synthetic
        if synthetic is None:
            return None
        from ..synth.cohort import GENERATOR_VERSION, synthesize

        # a cohort with its paired modalities' knobs set is another cohort (its own folder, so its own stores)
        side = synthetic.side.key()
        folder = self.root / "data" / (f"synthetic-{synthetic.patients}p-seed{synthetic.seed}-v{GENERATOR_VERSION}"
                                       + (f"-{side}" if side else ""))
        if not (folder / "cohort.json").is_file():
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted generation: start again
            self.echo(f"generating the synthetic cohort ({synthetic.patients} patients, seed {synthetic.seed}"
                      + (f", side information {synthetic.side.summary()}" if side else "") + f") in {folder} ...")
            for leftover in temporaries(folder):  # of a generation killed outright
                shutil.rmtree(leftover, ignore_errors=True)
            write_atomic(folder, writer=lambda tmp: synthesize(tmp, patients=synthetic.patients, seed=synthetic.seed,
                                                               angiograms=synthetic.angiograms, side=synthetic.side))
        return folder

    @cached_property
    def sources(self) -> dict[str, DataSource]:
        sources: dict[str, DataSource] = {}
        if self.cohort is not None:
            # the two exports of one cohort hold the same patients under the same ids
            namespace = f"synthetic-cohort-{self.cohort.name}"
            sources["mimic-iv-ecg"] = DataSource(path=str(self.cohort / "mimic-iv-ecg"), layout="mimic-iv-ecg",
                                                 tables=str(self.cohort / "tables"), patient_namespace=namespace)
            sources["ptbxl"] = DataSource(path=str(self.cohort / "ptbxl"), layout="ptbxl", options={"rate": 100},
                                          patient_namespace=namespace)
        sources.update(self.suite.data.sources)
        return sources

    def loaded(self, name: str) -> Dataset | None:
        """The dataset if this run has opened it already (no ingest)."""
        return self._datasets.get(name)

    def dataset(self, name: str) -> Dataset:
        if name in self._datasets:
            return self._datasets[name]
        if name not in self.sources:
            have = ", ".join(sorted(self.sources)) or "none"
            raise DataError(f"dataset {name!r} has no source: add [data.sources.{name}] path = \"...\" to the suite "
                            f"(sources: {have})")
        source = self.sources[name]
        path = Path(source.path).expanduser()
        if not path.exists():
            raise DataError(f"data.sources.{name}.path: {path}: no such file or folder")
        layout = build_layout(self.registry, source.layout or name, dict(source.options),
                              name_prefix=f"data.sources.{name}.layout: ")
        # one store per source (path, layout and its spec, options): a changed source or a new version of its
        # layout (which may read other values or metadata) gets its own store, never a mixed or stale one
        layout_name = source.layout or name
        identity = [str(path.resolve()), layout_name, source.options, self.registry.fingerprint("dataset", layout_name)]
        store_root = self.root / "data" / "stores" / f"{name}-{digest(identity, 8)}"
        report = ingest(path, layout, store_root)
        if report.ingested:
            self.echo(f"dataset {name}: {report.lines()[0]}")
        store = ECGStore(store_root)
        if len(store) == 0:
            raise DataError(f"dataset {name!r}: no readable record in {path} (report: {report.report})")
        dataset = Dataset(name=name, store=store, source=source, root=store_root, layout=layout)
        self._datasets[name] = dataset
        return dataset

    # -- labels and splits ---------------------------------------------------------------------------------

    def labels(self, task: TaskSpec) -> pd.DataFrame:
        """The task's labels per record id (rows without any label dropped)."""
        if task.name not in self._labels:
            dataset = self.dataset(task.dataset)
            fn = import_object(task.labels, what=f"task {task.name!r}")
            frame = fn(dataset.task_source, **task.options)
            if not isinstance(frame, pd.DataFrame) or frame.shape[1] < 1:
                raise StenceBenchError(f"task {task.name!r}: the label function returned {type(frame).__name__}, "
                                       "not a DataFrame with one column per class")
            if task.task_kind == "binary" and frame.shape[1] != 1:
                raise StenceBenchError(f"task {task.name!r}: a binary task needs one label column, got {frame.shape[1]}")
            frame.index = frame.index.astype(str)
            frame = frame.astype(float).dropna(how="all")
            if task.task_kind != "regression":
                frame = frame.fillna(0.0)
            self._labels[task.name] = frame
        return self._labels[task.name]

    def held_out(self) -> HeldOut:
        """Every validation and test record of every task of the suite (and every record of an external test set),
        by (namespace, patient) and by signal."""
        if self._held_out is None:
            seed = self.suite.protocol.split_seed
            held = HeldOut()
            for name in self.suite.tasks:
                task = self.registry.tasks.get(name)
                dataset = self.dataset(task.dataset)
                split = pd.Series(dataset.split(task.split, seed), index=dataset.records["record_id"].to_numpy())
                ids = split.index[split.to_numpy() != "train"]
                held.patients.update((dataset.namespace, p) for p in dataset.patients.reindex(ids).to_numpy())
                for checksum, rid in zip(dataset.checksums.reindex(ids).to_numpy(), ids):
                    held.signals.setdefault(str(checksum), (task.name, dataset.name, str(rid)))
            for external in self.suite.protocol.external:  # an external test set: every record of it
                for name in external.datasets:
                    dataset = self.dataset(name)
                    ids = dataset.records["record_id"].to_numpy()
                    held.patients.update((dataset.namespace, p) for p in dataset.patients.reindex(ids).to_numpy())
                    for checksum, rid in zip(dataset.checksums.reindex(ids).to_numpy(), ids):
                        held.signals.setdefault(str(checksum), (external.task, dataset.name, str(rid)))
            self._held_out = held
        return self._held_out

    def pretraining_records(self) -> PretrainingRecords:
        """The records every pretraining of the suite reads: the training patients of the pretraining dataset
        (its seeded patient split), less every validation and test patient of every task of the suite (whatever
        the task's split policy; datasets sharing a patient namespace share patients), less or plus (by
        ``protocol.pretrain.test_overlap``) records whose signal is a held-out record of a task on another
        dataset. Raises :class:`DataError` for an overlap the suite refuses."""
        if self._pretraining is not None:
            return self._pretraining
        name = self.suite.data.pretrain
        dataset = self.dataset(name)
        held = self.held_out()
        ids = dataset.records["record_id"].to_numpy()
        split = dataset.split("patient", self.suite.protocol.split_seed)
        patients = dataset.patients.reindex(ids).to_numpy()
        held_patient = np.array([(dataset.namespace, p) in held.patients for p in patients], dtype=bool)
        keep = (split == "train") & ~held_patient
        overlap: dict[str, list[str]] = {}  # task -> pretraining records whose signal it holds out
        first: tuple[str, str, str, str] | None = None
        for i in np.flatnonzero(keep):
            found = held.signals.get(str(dataset.checksums.iloc[i]))
            if found is not None and found[1] != name:
                overlap.setdefault(found[0], []).append(str(ids[i]))
                first = first or (str(ids[i]), *found)
        policy = self.suite.protocol.pretrain.test_overlap
        if overlap and policy == "refuse":
            assert first is not None
            n = sum(len(v) for v in overlap.values())
            raise HeldOutOverlapError(f"{n} pretraining record(s) of {name!r} are validation or test records of "
                            f"{', '.join(sorted(overlap))} (same signal: {first[0]!r} is {first[2]}'s {first[3]!r}); "
                            "set protocol.pretrain.test_overlap = \"exclude\" to leave them out of pretraining, or "
                            "\"allow\" to keep them (flagged as contamination)")
        if overlap and policy == "exclude":
            dropped = {rid for rids in overlap.values() for rid in rids}
            keep &= ~np.isin(ids, list(dropped))
        self._pretraining = PretrainingRecords(
            record_ids=[str(r) for r in ids[keep]],
            excluded_held_out_patients=int(((split == "train") & held_patient).sum()),
            test_overlap={task: len(rids) for task, rids in sorted(overlap.items())},
            test_overlap_kept=policy == "allow")
        return self._pretraining

    # -- encoder inputs ------------------------------------------------------------------------------------

    def windows(self, dataset_name: str, spec: EncoderSpec) -> Windows:
        """The dataset's records in ``spec``'s contract, read from the memory-mapped view cache (built once)."""
        key = (dataset_name, contract_key(spec))
        if key in self._windows:
            return self._windows[key]
        dataset = self.dataset(dataset_name)
        view = build_view(dataset.store, spec, workers=min(4, os.cpu_count() or 1),
                          progress=Progress(self.echo, f"dataset {dataset_name}: view for encoder {spec.name!r}",
                                            len(dataset.store)))
        if not len(view):
            reasons = "; ".join(view.excluded["reason"].head(3))
            raise DataError(f"dataset {dataset_name!r}: no record fits encoder {spec.name!r}'s contract ({reasons})")
        scaler = None
        if spec.normalization == "zscore_dataset":
            split = dict(zip(dataset.records["record_id"],
                             dataset.split(dataset.default_policy, self.suite.protocol.split_seed)))
            train = [rid for rid in view.record_ids if split.get(rid) == "train"] or view.record_ids
            scaler = view.fit_standardizer(train)
        windows = Windows(spec, list(view.record_ids), view.at, view.lengths, scaler, excluded=view.excluded,
                          units=dataset.store.info.units, present=view.present)
        self._windows[key] = windows
        return windows


def patient_codes(patients: pd.Series) -> np.ndarray:
    """Integer codes of patient ids (equal ids, equal codes)."""
    return np.array(pd.factorize(patients.astype(str))[0], dtype=np.int64)  # a writable copy


def patients_table(dataset: Dataset) -> pd.DataFrame | None:
    """The dataset's ``patients`` table (keyed by ``subject_id``, the MIMIC-IV convention, or ``patient_id``) as one
    row per record of the dataset (indexed by record id, NaN for a record whose patient it lacks); ``None`` without
    one."""
    tables = dataset.tables
    if "patients" not in tables:
        return None
    table = tables["patients"].copy()
    key = "subject_id" if "subject_id" in table.columns else "patient_id"
    if key not in table.columns:
        return None
    table[key] = table[key].astype(str)
    table = table.drop_duplicates(key).set_index(key)
    values = table.reindex(dataset.records["patient_id"].astype(str).to_numpy())
    values.index = pd.Index(dataset.records["record_id"].to_numpy(), name="record_id")
    return values


def metadata_frame(dataset: Dataset) -> tuple[pd.DataFrame, pd.Series] | None:
    """Clinical metadata per record (numeric fields, NaN where missing) and the SCORE2-style risk in [0, 1],
    from a ``patients`` table (:func:`patients_table`); ``None`` without one."""
    table = patients_table(dataset)
    if table is None:
        return None
    if "sex" in table.columns:
        table["sex"] = table["sex"].map({"F": 1.0, "M": 0.0, "female": 1.0, "male": 0.0})
    risk_column = next((c for c in ("score2", "risk") if c in table.columns), None)
    risk = table[risk_column].astype(float) if risk_column else pd.Series(np.nan, index=table.index)
    if risk_column == "score2":
        risk = risk / 100.0
    values = table.drop(columns=[c for c in (risk_column,) if c]).select_dtypes("number")
    values.index = values.index.rename(None)
    return values, pd.Series(risk.to_numpy(), index=values.index)


def report_texts(dataset: Dataset) -> list[str | None]:
    """The machine report of each record (MIMIC-IV-ECG meta ``report``, PTB-XL ``report``), ``None`` without."""
    return [meta.get("report") or None for meta in dataset.records["meta"]]


def report_statements(dataset: Dataset) -> list[list[str]]:
    """The statements of each record's report (:func:`stence_bench.data.layouts.base.report_statements`)."""
    return [statements_of(meta) for meta in dataset.records["meta"]]


def record_labels(dataset: Dataset) -> tuple[list[list[str]], str]:
    """Each record's labels for supervised pretraining, as the dataset's layout declares them
    (:meth:`~stence_bench.data.layouts.base.Layout.labels`: CinC 2021's SNOMED-CT codes, PTB-XL's scp_codes,
    MIMIC-IV-ECG's machine statements), one list per record in ``dataset.records``' order; and what they are,
    ``"<layout>: <label_source>"`` (empty after the colon for a layout without labels)."""
    layout = dataset.layout if dataset.layout is not None else Layout()
    name = layout.name or type(layout).__name__
    labels = layout.labels(dataset.task_source)
    if len(labels) != len(dataset.records):
        raise StenceBenchError(f"layout {name!r}: labels() gave {len(labels)} lists for {len(dataset.records)} records")
    return [[str(label) for label in row] for row in labels], f"{name}: {layout.label_source}"


def report_labels(statements: list[list[str]], *, top: int = 32) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels of the ``top`` most frequent statements (by the number of records that have them; ties by
    the statement's text), for supervised pretraining and soft targets. ``statements``: each record's, as
    :func:`record_labels` gives them; pass the pretraining records' only (the vocabulary is learned from them)."""
    counts = pd.Series([s for row in statements for s in set(row)], dtype=object).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = [s for s, _ in ranked[:top]]
    position = {s: i for i, s in enumerate(vocab)}
    out = np.zeros((len(statements), len(vocab)), dtype=np.float32)
    for i, row in enumerate(statements):
        for s in row:
            if s in position:
                out[i, position[s]] = 1.0
    return out, vocab


def angiogram_paths(dataset: Dataset) -> dict[str, Path]:
    """Patient id -> angiogram file, from a ``stenosis`` table's ``angiogram`` column (paths relative to the
    tables folder's parent, as the synthetic cohort writes them)."""
    tables = dataset.tables
    if "stenosis" not in tables or "angiogram" not in tables["stenosis"].columns or not dataset.source.tables:
        return {}
    base = Path(dataset.source.tables).expanduser().parent
    table = tables["stenosis"].dropna(subset=["angiogram"])
    key = "subject_id" if "subject_id" in table.columns else "patient_id"
    return {str(p): base / str(path) for p, path in zip(table[key], table["angiogram"])}


