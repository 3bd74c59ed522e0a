"""The data a run reads: sources materialised into ECG stores, splits, task labels and encoder inputs.

Everything lives in the run folder and is made once: the synthetic cohort (when the suite asks for it),
one store per dataset (``data/stores/<dataset>``, resumable ingest), one view per dataset and encoder contract
(``store/views/<contract>``). :class:`Windows` holds a view in memory as one tensor and cuts encoder inputs
from it: random crops for training, overlapping windows for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.ingest import ingest
from ..data.layouts.base import build_layout
from ..data.splits import (
    check_patient_disjoint,
    patient_split,
    patients_or_records,
    strat_fold_split,
)
from ..data.store import ECGStore
from ..data.view_cache import build_view
from ..data.views import contract_key
from ..errors import StenceBenchError
from ..registry import Registry
from ..specs import EncoderSpec, TaskSpec, import_object
from ..suite import DataSource, Suite
from ..task_data import TaskSource

Echo = Callable[[str], None]


class DataError(StenceBenchError):
    """A dataset a suite needs is missing or unreadable."""


@dataclass
class Dataset:
    """One dataset of a run: its store, its records (the store manifest) and the tables tasks read."""

    name: str
    store: ECGStore
    source: DataSource
    root: Path

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
        """Patient id per record (a record without one stands for its own patient), indexed by record id."""
        series = pd.Series(self.records["patient_id"].replace({"nan": ""}).to_numpy(), index=self.records["record_id"])
        return patients_or_records(series)

    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        tables = dict(self.store.tables())
        if self.source.tables:
            folder = Path(self.source.tables)
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
        """``strat_fold`` where every record has one (PTB-XL), else ``patient``."""
        has_folds = all("strat_fold" in meta for meta in self.records["meta"])
        return "strat_fold" if has_folds and len(self.records) else "patient"

    def split(self, policy: str, seed: int) -> np.ndarray:
        """``train`` / ``val`` / ``test`` per record: the dataset's ``strat_fold`` or the seeded patient split."""
        ids = self.records["record_id"]
        if policy == "strat_fold":
            folds = pd.Series([meta.get("strat_fold") for meta in self.records["meta"]], index=ids.to_numpy())
            if folds.isna().any():
                raise DataError(f"dataset {self.name!r}: records without a strat_fold (e.g. {folds.index[folds.isna()][0]!r}); "
                                "use a task with split = 'patient'")
            split = strat_fold_split(folds.astype(int))
        else:
            split = patient_split(self.patients, seed=seed)
        check_patient_disjoint(split, self.patients)
        return split.to_numpy(dtype=str)


@dataclass
class Windows:
    """A dataset's records in one encoder's contract, in memory: ``[records, leads, samples]`` float32.

    Dataset z-scoring (the contract's ``zscore_dataset``) uses per-lead statistics of the training records,
    applied once; record z-scoring is applied to each window as it is cut.
    """

    spec: EncoderSpec
    record_ids: list[str]
    data: torch.Tensor
    lengths: torch.Tensor
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)

    @cached_property
    def position(self) -> dict[str, int]:
        return {rid: i for i, rid in enumerate(self.record_ids)}

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.normalization == "zscore_record":
            std, mean = torch.std_mean(x, dim=-1, keepdim=True, unbiased=False)
            x = (x - mean) / (std + 1e-6)
        return x

    @staticmethod
    def _mask(x: torch.Tensor, lead_mask: torch.Tensor | None) -> torch.Tensor:
        return x if lead_mask is None else x * lead_mask[None, :, None]

    def crops(self, rows: np.ndarray, generator: np.random.Generator, lead_mask: torch.Tensor | None = None,
              part: slice = slice(None)) -> torch.Tensor:
        """A random window of each record (training). ``part``: cut only these of ``rows`` (a rank's slice of a
        global batch) after drawing the offsets of all of them, so every rank's generator stays in step."""
        n = self.spec.n_samples
        spare = np.maximum(self.lengths[rows].numpy() - n, 0)
        offsets = (generator.random(len(rows)) * (spare + 1)).astype(np.int64)
        rows, offsets = rows[part], offsets[part]
        # every window of every record as a view ([records, leads, starts, n]); index only the chosen ones
        x = self.data.unfold(2, n, 1)[torch.as_tensor(rows), :, torch.as_tensor(offsets)]
        return self._mask(self._normalise(x), lead_mask)

    def centre(self, rows: np.ndarray, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The centred window of each record (validation during training: one window, not all)."""
        n = self.spec.n_samples
        x = self.data[torch.as_tensor(rows)]
        length = int(self.data.shape[-1])
        if length < n:
            x = torch.nn.functional.pad(x, (0, n - length))
        else:
            start = (self.lengths[torch.as_tensor(rows)] - n).clamp(min=0) // 2
            idx = start[:, None] + torch.arange(n)[None, :]
            x = torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))
        return self._mask(self._normalise(x), lead_mask)

    def sliding(self, rows: np.ndarray, lead_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Every window of each record with a stride of half a window (the PTB-XL benchmark's test-time
        windows): ``[len(rows) * k, leads, n]`` and ``k``. Records shorter than a window are zero-padded."""
        n = self.spec.n_samples
        length = int(self.data.shape[-1])
        stride = max(n // 2, 1)
        starts = list(range(0, max(length - n, 0) + 1, stride)) or [0]
        x = self.data[torch.as_tensor(rows)]
        if length < n:
            x = torch.nn.functional.pad(x, (0, n - length))
        parts = torch.stack([x[..., s : s + n] for s in starts], dim=1)  # [B, k, L, n]
        flat = parts.reshape(-1, *parts.shape[2:])
        return self._mask(self._normalise(flat), lead_mask), len(starts)


def lead_mask(spec: EncoderSpec, leads: str) -> torch.Tensor | None:
    """``all``: no mask; ``I``: lead I alone, every other lead zeroed (single-lead use of a 12-lead encoder)."""
    if leads == "all":
        return None
    if leads not in spec.leads:
        raise DataError(f"encoder {spec.name!r} has no lead {leads!r} (its leads: {', '.join(spec.leads)})")
    return torch.tensor([1.0 if lead == leads else 0.0 for lead in spec.leads])


class Workspace:
    """The data side of one run folder: materialises what a suite needs, once, and caches it in memory."""

    def __init__(self, suite: Suite, registry: Registry, root: Path, echo: Echo = print):
        self.suite, self.registry, self.root, self.echo = suite, registry, Path(root), echo
        self._datasets: dict[str, Dataset] = {}
        self._windows: dict[tuple[str, str], Windows] = {}
        self._labels: dict[str, pd.DataFrame] = {}

    # -- sources -------------------------------------------------------------------------------------------

    @cached_property
    def cohort(self) -> Path | None:
        synthetic = self.suite.data.synthetic
        if synthetic is None:
            return None
        from ..synth.cohort import GENERATOR_VERSION, synthesize

        folder = self.root / "data" / f"synthetic-{synthetic.patients}p-seed{synthetic.seed}-v{GENERATOR_VERSION}"
        if not (folder / "cohort.json").is_file():
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted generation: start again
            self.echo(f"generating the synthetic cohort ({synthetic.patients} patients, seed {synthetic.seed}) "
                      f"in {folder} ...")
            tmp = folder.with_name(folder.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            synthesize(tmp, patients=synthetic.patients, seed=synthetic.seed, angiograms=synthetic.angiograms)
            tmp.rename(folder)
        return folder

    @cached_property
    def sources(self) -> dict[str, DataSource]:
        sources: dict[str, DataSource] = {}
        if self.cohort is not None:
            sources["mimic-iv-ecg"] = DataSource(path=str(self.cohort / "mimic-iv-ecg"), layout="mimic-iv-ecg",
                                                 tables=str(self.cohort / "tables"))
            sources["ptbxl"] = DataSource(path=str(self.cohort / "ptbxl"), layout="ptbxl", options={"rate": 100})
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
        # one store per source (path, layout, options): a changed source gets its own store, never a mixed one
        identity = json.dumps([str(path.resolve()), source.layout or name, source.options], sort_keys=True)
        store_root = self.root / "data" / "stores" / f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"
        report = ingest(path, layout, store_root)
        if report.ingested:
            self.echo(f"dataset {name}: {report.lines()[0]}")
        store = ECGStore(store_root)
        if len(store) == 0:
            raise DataError(f"dataset {name!r}: no readable record in {path} (report: {report.report})")
        dataset = Dataset(name=name, store=store, source=source, root=store_root)
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

    # -- encoder inputs ------------------------------------------------------------------------------------

    def windows(self, dataset_name: str, spec: EncoderSpec) -> Windows:
        key = (dataset_name, contract_key(spec))
        if key in self._windows:
            return self._windows[key]
        dataset = self.dataset(dataset_name)
        view = build_view(dataset.store, spec)
        if not len(view):
            reasons = "; ".join(view.excluded["reason"].head(3))
            raise DataError(f"dataset {dataset_name!r}: no record fits encoder {spec.name!r}'s contract ({reasons})")
        lengths = np.array([view.prepared(rid).shape[1] for rid in view.record_ids])
        width = max(int(lengths.max()), spec.n_samples)
        data = np.zeros((len(view), len(spec.leads), width), dtype=np.float32)
        for i, rid in enumerate(view.record_ids):
            data[i, :, : lengths[i]] = view.prepared(rid)
        if spec.normalization == "zscore_dataset":
            split = dict(zip(dataset.records["record_id"],
                             dataset.split(dataset.default_policy, self.suite.protocol.split_seed)))
            train = [rid for rid in view.record_ids if split.get(rid) == "train"] or view.record_ids
            scaler = view.fit_standardizer(train)
            data = ((data - scaler.mean[None, :, None]) / (scaler.std[None, :, None] + scaler.eps)).astype(np.float32)
            for i, n in enumerate(lengths):
                data[i, :, n:] = 0.0
        windows = Windows(spec=spec, record_ids=list(view.record_ids), data=torch.from_numpy(data),
                          lengths=torch.from_numpy(lengths), excluded=view.excluded)
        self._windows[key] = windows
        return windows


def patient_codes(patients: pd.Series) -> np.ndarray:
    """Integer codes of patient ids (equal ids, equal codes)."""
    return np.array(pd.factorize(patients.astype(str))[0], dtype=np.int64)  # a writable copy


def metadata_frame(dataset: Dataset) -> tuple[pd.DataFrame, pd.Series] | None:
    """Clinical metadata per record (numeric fields, NaN where missing) and the SCORE2-style risk in [0, 1],
    from a ``patients`` table keyed by ``subject_id`` (the MIMIC-IV convention); ``None`` without one."""
    tables = dataset.tables
    if "patients" not in tables:
        return None
    table = tables["patients"].copy()
    key = "subject_id" if "subject_id" in table.columns else "patient_id"
    if key not in table.columns:
        return None
    table[key] = table[key].astype(str)
    table = table.drop_duplicates(key).set_index(key)
    if "sex" in table.columns:
        table["sex"] = table["sex"].map({"F": 1.0, "M": 0.0, "female": 1.0, "male": 0.0})
    risk_column = next((c for c in ("score2", "risk") if c in table.columns), None)
    risk = table[risk_column].astype(float) if risk_column else pd.Series(np.nan, index=table.index)
    if risk_column == "score2":
        risk = risk / 100.0
    fields = table.drop(columns=[c for c in (risk_column,) if c]).select_dtypes("number")
    patients = dataset.records["patient_id"].astype(str)
    values = fields.reindex(patients.to_numpy())
    values.index = dataset.records["record_id"].to_numpy()
    risk_per_record = pd.Series(risk.reindex(patients.to_numpy()).to_numpy(), index=values.index)
    return values, risk_per_record


def report_texts(dataset: Dataset) -> list[str | None]:
    """The machine report of each record (MIMIC-IV-ECG meta ``report``, PTB-XL ``report``), ``None`` without."""
    return [meta.get("report") or None for meta in dataset.records["meta"]]


def report_labels(texts: list[str | None], *, top: int = 32) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels of the most frequent report statements (a report's sentences), for supervised
    pretraining and soft targets."""
    sentences = [[s.strip().lower() for s in text.replace(";", ".").split(".") if s.strip()] if text else []
                 for text in texts]
    counts = pd.Series([s for row in sentences for s in set(row)]).value_counts()
    vocab = list(counts.index[:top])
    position = {s: i for i, s in enumerate(vocab)}
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for i, row in enumerate(sentences):
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
    base = Path(dataset.source.tables).parent
    table = tables["stenosis"].dropna(subset=["angiogram"])
    key = "subject_id" if "subject_id" in table.columns else "patient_id"
    return {str(p): base / str(path) for p, path in zip(table[key], table["angiogram"])}


