"""Evaluation cells: embed (cached), linear probe, finetune; scored on the task's test patients.

- ``embed``: the encoder (pretrained checkpoint, or its seeded initialisation for the random-init control)
  embeds every record of a dataset once: the mean embedding of its overlapping windows. Cached per checkpoint
  x dataset x lead set, so the whole probe grid (tasks x fractions x draws) reuses one forward pass.
- ``linear_probe``: features standardised on the training fraction; L2 logistic regression per class (ridge
  for regression), its strength chosen on the validation split by the task's metric (scikit-learn).
- ``finetune``: the whole network plus a linear head, AdamW, random windows, early stopping on the validation
  loss of each record's centred window (the best epoch's weights are kept); predictions average the record's
  windows.

Both use the task's train / val / test split by patient, the label fraction drawn from the training patients
(nested, stratified, :func:`stence_bench.data.splits.label_fractions`), thresholds chosen on validation, and
confidence intervals by bootstrap over test patients (:mod:`stence_bench.metrics`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..cells import Cell
from ..data.splits import label_fractions, sample_hash
from ..data.windows import Cut, Windows, loader
from ..errors import StenceBenchError
from ..files import write_atomic
from ..hashing import digest
from ..registry import Registry
from ..specs import TaskSpec
from ..suite_schema import lead_names
from . import distributed
from .data import Workspace, external_task, lead_mask
from .partial import finetuning_parameters, trainable_count
from .pretrain import (
    build_encoder,
    checkpoint_path,
    load_checkpoint,
    load_given_weights,
    loads_given_weights,
)
from .subgroups import membership as subgroup_membership

EMBEDDING_DIR = "embeddings"
CLASSIFICATION_METRICS = ("auroc", "auprc", "f1", "sensitivity")
REGRESSION_METRICS = ("mae", "rmse", "r2")


@dataclass
class TaskData:
    """One task's rows (records in the encoder's view that have a label), split, labels and patients."""

    task: TaskSpec
    rows: np.ndarray  # positions in the Windows
    record_ids: np.ndarray
    patients: np.ndarray
    y: np.ndarray  # [n, C]
    split: np.ndarray
    classes: list[str]
    #: Prespecified subgroups (:mod:`stence_bench.protocol.subgroups`): their names and ``[n, G]`` membership.
    subgroup_names: list[str] = dataclass_field(default_factory=list)
    subgroups: np.ndarray | None = None
    #: Subgroups with fewer test patients are never named the worst.
    subgroup_min_patients: int = 1

    def part(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def take(self, positions: np.ndarray) -> TaskData:
        """These records only."""
        return TaskData(task=self.task, rows=self.rows[positions], record_ids=self.record_ids[positions],
                        patients=self.patients[positions], y=self.y[positions], split=self.split[positions],
                        classes=self.classes, subgroup_names=self.subgroup_names,
                        subgroups=None if self.subgroups is None else self.subgroups[positions],
                        subgroup_min_patients=self.subgroup_min_patients)


def task_data(ws: Workspace, task: TaskSpec, windows: Windows, leads: str = "all", whole: bool = False) -> TaskData:
    """The task's labelled records in ``windows`` that have every lead of the lead set ``leads`` (a single-lead
    record is scored on ``I``, never on ``all``), with their split, labels, patients and subgroups. ``whole``: every
    record is a test record (an external test set)."""
    dataset = ws.dataset(task.dataset)
    labels = ws.labels(task)
    split_of = {} if whole else dict(zip(dataset.records["record_id"],
                                         dataset.split(task.split, ws.suite.protocol.split_seed)))
    patient_of = dict(zip(dataset.patients.index, dataset.patients.to_numpy()))
    has = windows.has_leads(lead_names(leads, windows.spec.leads))
    keep = [i for i, rid in enumerate(windows.record_ids) if rid in labels.index and has[i]]
    ids = np.array([windows.record_ids[i] for i in keep], dtype=object)
    if not len(ids):
        lacking = sum(rid in labels.index for rid in windows.record_ids) if not has.all() else 0
        why = f" and leads {leads}" if lacking else ""
        raise StenceBenchError(f"task {task.name!r}: no record of dataset {task.dataset!r} has a label{why}")
    y = labels.reindex(ids).to_numpy(dtype=np.float64)
    split = np.array(["test"] * len(ids)) if whole else np.array([split_of[rid] for rid in ids])
    for name in ("test",) if whole else ("train", "val", "test"):
        if not (split == name).any():
            raise StenceBenchError(f"task {task.name!r}: the {name} split is empty ({len(ids)} labelled records)")
    settings = ws.suite.protocol.subgroups
    names, members = subgroup_membership(dataset, task, ids, settings)
    return TaskData(task=task, rows=np.array(keep), record_ids=ids,
                    patients=np.array([str(patient_of[rid]) for rid in ids]), y=y, split=split,
                    classes=[str(c) for c in labels.columns], subgroup_names=names, subgroups=members,
                    subgroup_min_patients=settings.min_patients)


def training_subset(ws: Workspace, data: TaskData, cell: Cell) -> np.ndarray:
    """Positions (into ``data``) of the training records drawn for the cell's fraction and draw."""
    train = data.part("train")
    if cell.fraction is None or cell.fraction >= 1.0:
        return train
    y = data.y[train]
    labels = y[:, 0] if data.task.task_kind in ("binary", "regression") else y
    masks = label_fractions(data.patients[train], labels, ws.suite.protocol.fractions, draw=cell.draw or 0,
                            seed=ws.suite.protocol.split_seed)
    return train[np.asarray(masks[cell.fraction], dtype=bool)]


# -- external validation ---------------------------------------------------------------------------------------


@dataclass
class External:
    """An external test set: the task's labelled records of another dataset that have the cell's leads, less any
    whose patient (same patient namespace) or signal is one of the internal training or validation records."""

    task: TaskSpec
    windows: Windows
    data: TaskData
    #: records left out for their overlap with the internal training and validation records
    dropped: int


def external_data(ws: Workspace, task: TaskSpec, internal: TaskData, cell: Cell, spec: Any) -> External:
    """The cell's external test set (``cell.test_dataset``), checked to have the task's classes."""
    name = str(cell.test_dataset)
    ext_task = external_task(task, name)
    windows = ws.windows(name, spec)
    data = task_data(ws, ext_task, windows, cell.leads, whole=True)
    if data.classes != internal.classes:
        raise StenceBenchError(f"task {task.name!r} on dataset {name!r} gives classes {data.classes}, not the "
                               f"{internal.classes} of {task.dataset!r}: it cannot be tested there")
    own, other = ws.dataset(task.dataset), ws.dataset(name)
    seen = np.concatenate([internal.part("train"), internal.part("val")])
    checksums = set(own.checksums.reindex(internal.record_ids[seen]).astype(str))
    overlap = np.array([str(c) in checksums for c in other.checksums.reindex(data.record_ids).to_numpy()], dtype=bool)
    if own.namespace == other.namespace:
        patients = set(internal.patients[seen])
        overlap |= np.isin(data.patients, list(patients))
    keep = np.flatnonzero(~overlap)
    if not len(keep):
        raise StenceBenchError(f"task {task.name!r}: every labelled record of dataset {name!r} is a training or "
                               f"validation record (or patient) of {task.dataset!r}: nothing external to test on")
    return External(task=ext_task, windows=windows, data=data.take(keep), dropped=int(overlap.sum()))


def scoring_data(internal: TaskData, external: External) -> TaskData:
    """What an externally tested cell is scored on: the internal validation records (thresholds) and the external
    records as its test split (their subgroups)."""
    val, ext = internal.part("val"), external.data
    groups = ext.subgroups if ext.subgroups is not None else np.zeros((len(ext.record_ids), 0), dtype=bool)
    return TaskData(task=internal.task, rows=np.zeros(len(val) + len(ext.rows), dtype=np.int64),
                    record_ids=np.concatenate([internal.record_ids[val], ext.record_ids]),
                    patients=np.concatenate([internal.patients[val], ext.patients]),
                    y=np.concatenate([internal.y[val], ext.y]),
                    split=np.array(["val"] * len(val) + ["test"] * len(ext.record_ids)), classes=internal.classes,
                    subgroup_names=ext.subgroup_names,
                    subgroups=np.concatenate([np.zeros((len(val), groups.shape[1]), dtype=bool), groups]),
                    subgroup_min_patients=ext.subgroup_min_patients)


# -- embeddings ----------------------------------------------------------------------------------------------


def weights_name(cell: Cell, registry: Registry | None = None) -> str:
    """What names the cell's encoder weights in caches: the pretraining cell's key, the given weights evaluated as
    loaded (their hash and layout; the seed too where a non-strict load leaves parameters at initialisation), or the
    initialisation."""
    source = cell.pretrain_cell()
    if source is not None:
        return source.key
    if registry is not None and loads_given_weights(cell, registry):
        assert cell.weights is not None
        seed = None if cell.weights.strict else cell.seed
        return f"given-{cell.encoder}-{digest([cell.preset, cell.encoder_options, cell.weights.identity(), seed])}"
    return f"init-{cell.encoder}-{cell.preset}-{cell.seed}-{digest(cell.encoder_options, 8)}"


def encoder_for(cell: Cell, registry: Registry, root: Path) -> tuple[torch.nn.Module, str]:
    """The cell's encoder (pretrained weights, or its entry's given weights, loaded) and the name of its weights
    (for caches). What the given weights loaded is kept as the module's ``given_weights``."""
    encoder = build_encoder(cell, registry)
    source = cell.pretrain_cell()
    if source is not None:
        load_checkpoint(checkpoint_path(root, source), encoder)
    elif loads_given_weights(cell, registry):  # evaluated as given (the `pretrained` objective)
        encoder.given_weights = load_given_weights(encoder, cell, registry)
    return encoder, weights_name(cell, registry)


@torch.no_grad()
def window_mean(module: torch.nn.Module, windows: Windows, rows: np.ndarray, mask: torch.Tensor | None,
                max_windows: int = 512, out: np.ndarray | None = None) -> np.ndarray:
    """The module's output averaged over each record's own windows (:meth:`Windows.sliding_starts`; eval mode, on
    the module's device), about ``max_windows`` windows a forward pass: ``[len(rows), out]``, float64 or written
    into ``out`` (a memory-mapped file: nothing of size ``len(rows)`` is held in memory)."""
    module.eval()
    device = next(module.parameters()).device
    for batch in loader(windows, windows.sliding_chunks(rows, max_windows), lead_mask=mask, device=device):
        with distributed.current().autocast():
            z = module(batch["x"].to(device, non_blocking=True)).float().cpu().double()
        counts = torch.from_numpy(batch["counts"])
        owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
        sums = torch.zeros(len(counts), z.shape[-1], dtype=torch.float64).index_add_(0, owner, z)
        if out is None:
            out = np.zeros((len(rows), z.shape[-1]))
        start, end = batch["tag"]
        out[start:end] = (sums / counts[:, None]).numpy()
    return out if out is not None else np.zeros((0, 1))


def embed(encoder: torch.nn.Module, windows: Windows, rows: np.ndarray, mask: torch.Tensor | None) -> np.ndarray:
    """Mean embedding over each record's windows: ``[len(rows), embed_dim]`` float32."""
    return window_mean(encoder, windows, rows, mask).astype(np.float32)


def embedding_key(cell: Cell, ws: Workspace, registry: Registry, task: TaskSpec) -> str:
    """What a cached embedding depends on: the weights (the pretraining cell and the inputs it pretrained on, or
    the seeded initialisation of this encoder spec), the encoder's content and contract, the dataset's records
    and signals, the lead set and the code that cuts windows."""
    from ..data.views import contract_key
    from .inputs import Inputs, code_versions

    spec = registry.encoders.get(cell.encoder)
    source = cell.pretrain_cell()
    weights: dict[str, Any] = {"weights": weights_name(cell, registry), "encoder": cell.specs.get("encoder")}
    if source is not None:
        weights["pretraining"] = Inputs.of_workspace(ws, registry).of(source)
    return digest({**weights, "contract": contract_key(spec), "dataset": ws.dataset(task.dataset).fingerprint,
                   "leads": cell.leads, "code": code_versions("embed")})


def cached_embeddings(cell: Cell, ws: Workspace, registry: Registry, root: Path, task: TaskSpec) -> np.ndarray:
    """Every record of the task's dataset embedded by the cell's encoder, cached on disk and returned memory-mapped
    (read-only): ``[records, dim]`` float32, named by :func:`embedding_key` (never reused for other weights,
    contract, data or code). Written as it is computed, so memory does not grow with the dataset."""
    spec = registry.encoders.get(cell.encoder)
    windows = ws.windows(task.dataset, spec)
    folder = Path(root) / EMBEDDING_DIR / weights_name(cell, registry)
    name = f"{task.dataset}-{cell.leads}-{embedding_key(cell, ws, registry, task)}"
    path = folder / f"{name}.npy"
    ids_path = folder / f"{name}.ids"
    if path.is_file() and ids_path.is_file() and ids_path.read_text().split("\n") == windows.record_ids:
        return np.load(path, mmap_mode="r")
    encoder, _ = encoder_for(cell, registry, root)
    encoder.to(distributed.current().device)
    folder.mkdir(parents=True, exist_ok=True)

    def embed(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(windows.record_ids),
                                                                              int(encoder.embed_dim)))
        window_mean(encoder, windows, np.arange(len(windows.record_ids)), lead_mask(spec, cell.leads), out=out)
        out.flush()
        del out

    # the embeddings first, then the record ids they are of: a kill in between leaves ids that no longer match
    write_atomic(path, writer=embed)
    if getattr(encoder, "given_weights", None) is not None:  # what the given weights loaded, for the results
        write_atomic(folder / GIVEN_WEIGHTS_FILE, json.dumps(encoder.given_weights))
    write_atomic(ids_path, "\n".join(windows.record_ids))
    return np.load(path, mmap_mode="r")


#: Beside the embeddings of given weights: what loaded (:func:`~stence_bench.protocol.pretrain.load_given_weights`).
GIVEN_WEIGHTS_FILE = "given_weights.json"


def given_weights_report(cell: Cell, registry: Registry, root: Path) -> dict[str, Any] | None:
    """What the cell's given weights loaded, as its cached embeddings recorded it (``None``: not evaluated as
    given)."""
    path = Path(root) / EMBEDDING_DIR / weights_name(cell, registry) / GIVEN_WEIGHTS_FILE
    if cell.pretrain_cell() is not None or not loads_given_weights(cell, registry) or not path.is_file():
        return None
    return json.loads(path.read_text())


# -- scoring -------------------------------------------------------------------------------------------------


def score_cell(task: TaskSpec, data: TaskData, val_pred: np.ndarray, test_pred: np.ndarray,
               n_resamples: int, seed: int) -> dict[str, Any]:
    """Scores on val and test, test CIs by patient bootstrap, thresholds chosen on val; and, under
    ``predictions``, the per-record predictions they were computed from (written beside the result)."""
    val, test = data.part("val"), data.part("test")
    predictions = {
        "task_kind": np.array(task.task_kind), "metric": np.array(task.metric), "classes": np.array(data.classes),
        "val_ids": data.record_ids[val].astype(str), "val_patients": data.patients[val].astype(str),
        "val_y": data.y[val], "val_pred": np.asarray(val_pred, dtype=np.float64).reshape(len(val), -1),
        "test_ids": data.record_ids[test].astype(str), "test_patients": data.patients[test].astype(str),
        "test_y": data.y[test], "test_pred": np.asarray(test_pred, dtype=np.float64).reshape(len(test), -1),
    }
    if data.subgroups is not None:
        predictions.update(subgroup_names=np.array(data.subgroup_names, dtype=str),
                           test_subgroups=data.subgroups[test].reshape(len(test), len(data.subgroup_names)),
                           subgroup_min_patients=np.array(data.subgroup_min_patients))
    return {**score_predictions(predictions, n_resamples, seed), "predictions": predictions}


def score_predictions(p: Any, n_resamples: int, seed: int) -> dict[str, Any]:
    """Every number of an evaluation result from its predictions (:func:`score_cell`'s ``predictions``, or the
    ``.npz`` file saved beside the result): what ``stence-bench results rescore`` recomputes."""
    kind, metric = str(p["task_kind"]), str(p["metric"])
    y_val, y_test = _shape(kind, p["val_y"]), _shape(kind, p["test_y"])
    p_val, p_test = _shape(kind, p["val_pred"]), _shape(kind, p["test_pred"])
    patients = np.asarray(p["test_patients"]).astype(str)
    thresholds = metrics.choose_thresholds(kind, y_val, p_val)
    threshold = thresholds if len(thresholds) else None
    names = REGRESSION_METRICS if kind == "regression" else CLASSIFICATION_METRICS
    scores = {"val": metrics.score(kind, y_val, p_val, threshold=threshold),
              "test": metrics.score(kind, y_test, p_test, threshold=threshold)}
    ci: dict[str, list[float]] = {}
    main = None
    weights = metrics.bootstrap_indices(patients, n_resamples=n_resamples, seed=seed) if n_resamples else None
    for name in names:
        summary = metrics.summarise(kind, name, y_test, p_test, patients, n_resamples=n_resamples,
                                    seed=seed, threshold=threshold, weights=weights)
        ci[name] = [summary["ci_low"], summary["ci_high"]]
        if name == metric:
            main = summary
    assert main is not None
    subgroups = {}
    if "subgroup_names" in p:
        subgroups = subgroup_scores(kind, metric, y_test, p_test, patients, [str(n) for n in p["subgroup_names"]],
                                    np.asarray(p["test_subgroups"], dtype=bool), weights, threshold,
                                    int(p["subgroup_min_patients"]))
    return {
        "metric": metric, "value": main["value"], "ci": ci, "scores": scores, "subgroups": subgroups,
        "n": {"test": len(y_test), "test_patients": len(set(patients)), "val": len(y_val)},
        "thresholds": [_float(t) for t in thresholds],
        "bootstrap": {"n_resamples": n_resamples, "seed": seed,
                      "values": [round(float(v), 6) for v in np.asarray(main["values"])]},
    }


def subgroup_scores(kind: str, metric: str, y: np.ndarray, pred: np.ndarray, patients: np.ndarray, names: list[str],
                    members: np.ndarray, weights: np.ndarray | None, threshold: Any, min_patients: int
                    ) -> dict[str, dict[str, Any]]:
    """The main metric on each subgroup of the test records (``members[:, g]``), with the val-chosen thresholds,
    and its interval from the cell's own patient resamples (``weights``, :func:`metrics.bootstrap_indices`)
    restricted to the subgroup's records: on resample ``b`` the subgroup is the drawn patients who are in it, so
    every cell of a task, and every subgroup, shares the resamples (paired differences stay possible). A subgroup
    whose metric is undefined (one class only) has ``value`` None; ``counted`` is False below ``min_patients``
    test patients (never named the worst)."""
    out: dict[str, dict[str, Any]] = {}
    for g, name in enumerate(names):
        idx = np.flatnonzero(members[:, g])
        n_patients = len(set(patients[idx].tolist()))
        entry: dict[str, Any] = {"value": None, "ci": [None, None], "n": int(len(idx)), "n_patients": n_patients,
                                 "counted": n_patients >= min_patients, "values": []}
        if len(idx):
            entry["value"] = _float(metrics.score(kind, y[idx], pred[idx], threshold=threshold,
                                                  metrics=[metric])[metric])  # type: ignore[list-item]
            if weights is not None:
                values = metrics.bootstrap(kind, metric, y[idx], pred[idx], weights[:, idx],  # type: ignore[arg-type]
                                           threshold=threshold)
                low, high = metrics.interval(values)
                entry["ci"] = [_float(low), _float(high)]
                entry["values"] = [None if not np.isfinite(v) else round(float(v), 6) for v in values]
        out[name] = entry
    return out


def _shape(kind: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if kind in ("binary", "regression"):
        return a.reshape(len(a), -1)[:, 0]
    return a.reshape(len(a), -1)


def bootstrap_seed(task: TaskSpec, suite_seed: int) -> int:
    """The same resamples for every cell of a task (paired differences need them)."""
    import xxhash

    return xxhash.xxh3_64_intdigest(f"{task.name}:{suite_seed}".encode()) % (2**31)


# -- linear probe ----------------------------------------------------------------------------------------------


def linear_probe(cell: Cell, ws: Workspace, registry: Registry, root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    task = registry.tasks.get(cell.task)
    spec = registry.encoders.get(cell.encoder)
    windows = ws.windows(task.dataset, spec)
    data = task_data(ws, task, windows, cell.leads)
    cached = cached_embeddings(cell, ws, registry, root, task)  # memory-mapped: only the rows read are loaded
    train = training_subset(ws, data, cell)
    val, test = data.part("val"), data.part("test")
    x_train, x_val, x_test = (np.asarray(cached[data.rows[part]]) for part in (train, val, test))
    external = scored = None
    if cell.test_dataset is not None:  # external validation: the same probe, tested on the other dataset
        external = external_data(ws, task, data, cell, spec)
        x_test = np.asarray(cached_embeddings(cell, ws, registry, root, external.task)[external.data.rows])
        scored = scoring_data(data, external)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    grid = sorted(ws.suite.protocol.linear_probe.c_grid)
    selection = _selection_metric(task)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for c, (val_pred, test_pred) in zip(grid, _fit_predict_path(task.task_kind, x_train, data.y[train], x_val,
                                                                x_test, grid)):
        value = metrics.score(task.task_kind, _shape(task.task_kind, data.y[val]), _shape(task.task_kind, val_pred),
                              metrics=[selection])[selection]
        better = best is None or (np.isfinite(value) and (not np.isfinite(best[1]) or
                                  (value < best[1] if selection in ("mae", "rmse") else value > best[1])))
        if better:
            best = (c, value, val_pred, test_pred)
    assert best is not None
    result = score_cell(task, scored if scored is not None else data, best[2], best[3], ws.suite.protocol.bootstrap,
                        bootstrap_seed(external.task if external else task, ws.suite.protocol.split_seed))
    result["train"] = {**_train_info(data, train), **_external_info(external)}
    result["selected"] = {"c": best[0], "val_" + _selection_metric(task): _float(best[1])}
    result["weights"] = given_weights_report(cell, registry, root)
    result["wall_s"] = time.perf_counter() - started
    return result


def _external_info(external: External | None) -> dict[str, Any]:
    if external is None:
        return {}
    return {"tested_on": {"dataset": external.task.dataset, "records": len(external.data.record_ids),
                          "patients": len(set(external.data.patients)), "dropped_overlap": external.dropped}}


def _selection_metric(task: TaskSpec) -> str:
    return task.metric if task.metric in ("auroc", "auprc", "mae", "rmse", "r2") else "auroc"


def _fit_predict_path(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, x_test: np.ndarray,
                     grid: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation and test predictions for each regularisation strength of ``grid`` (increasing): L2 logistic
    regression per class, warm-started along the path, or ridge regression."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if kind == "regression":
        out = []
        for c in grid:
            model = Ridge(alpha=1.0 / c).fit(x_train, y_train[:, 0])
            out.append((model.predict(x_val)[:, None], model.predict(x_test)[:, None]))
        return out
    n_classes = y_train.shape[1]
    val_out = [np.zeros((len(x_val), n_classes)) for _ in grid]
    test_out = [np.zeros((len(x_test), n_classes)) for _ in grid]
    for k in range(n_classes):
        target = y_train[:, k]
        if target.min() == target.max():  # one class only in this fraction: predict its prior
            for v, t in zip(val_out, test_out):
                v[:, k] = t[:, k] = float(target[0])
            continue
        model = LogisticRegression(max_iter=2000, warm_start=True)
        for i, c in enumerate(grid):
            model.set_params(C=c).fit(x_train, target)
            val_out[i][:, k] = model.predict_proba(x_val)[:, 1]
            test_out[i][:, k] = model.predict_proba(x_test)[:, 1]
    return list(zip(val_out, test_out))


def _train_info(data: TaskData, train: np.ndarray) -> dict[str, Any]:
    patients = sorted(set(data.patients[train]))
    return {"records": len(train), "patients": len(patients), "sampled_ids_hash": sample_hash(patients),
            "sampled_patients": patients if len(patients) <= 2000 else None}


def _float(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


# -- finetune --------------------------------------------------------------------------------------------------


def finetune(cell: Cell, ws: Workspace, registry: Registry, root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    settings = ws.suite.protocol.finetune
    task = registry.tasks.get(cell.task)
    spec = registry.encoders.get(cell.encoder)
    windows = ws.windows(task.dataset, spec)
    data = task_data(ws, task, windows, cell.leads)
    train = training_subset(ws, data, cell)
    val, test = data.part("val"), data.part("test")
    # external validation: the finetuned model is tested on the other dataset (checked before any training)
    external = external_data(ws, task, data, cell, spec) if cell.test_dataset is not None else None
    mask = lead_mask(spec, cell.leads)
    encoder, _ = encoder_for(cell, registry, root)
    regression = task.task_kind == "regression"
    y = torch.from_numpy(data.y.astype(np.float32))
    if regression:
        centre, scale = float(data.y[train, 0].mean()), float(data.y[train, 0].std() + 1e-6)
        y = (y - centre) / scale
    torch.manual_seed(cell.seed)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(encoder.embed_dim, y.shape[1]))
    ctx = distributed.current()
    model.to(ctx.device)
    loss_fn = torch.nn.MSELoss() if regression else torch.nn.BCEWithLogitsLoss()
    groups = finetuning_parameters(encoder, model[1], settings, settings.lr, cell.encoder)  # partial finetuning
    optimiser = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(cell.seed)
    batch_size = max(1, min(settings.batch_size, len(train)))
    trained = ctx.wrap(model)  # DDP under torchrun; validation and prediction use the plain module
    hook = registry.plugins.manager.hook

    best_loss, best_state, best_epoch, since = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    epochs_run = 0
    for epoch in range(settings.max_epochs):
        train_epoch(trained, optimiser, loss_fn, windows, data.rows, y, rng.permutation(train), batch_size, rng, mask)
        epochs_run = epoch + 1
        val_loss = _centre_loss(model, windows, data.rows[val], mask, loss_fn, y[val])
        if ctx.main:
            hook.epoch_finished(cell=cell, epoch=epoch + 1, metrics={"val_loss": val_loss}, steps=[])
        if val_loss < best_loss - 1e-6:
            best_loss, best_state, best_epoch, since = val_loss, copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            since += 1
            if since >= settings.patience:
                break
    if not ctx.main:
        return {}  # rank 0 predicts, scores and writes the result
    model.load_state_dict(best_state)
    val_out = window_mean(model, windows, data.rows[val], mask)
    if external is not None:  # external validation: the same finetuned model, tested on the other dataset
        test_out = window_mean(model, external.windows, external.data.rows, mask)
    else:
        test_out = window_mean(model, windows, data.rows[test], mask)
    if regression:
        val_out, test_out = val_out * scale + centre, test_out * scale + centre
    else:
        val_out, test_out = 1 / (1 + np.exp(-val_out)), 1 / (1 + np.exp(-test_out))
    result = score_cell(task, scoring_data(data, external) if external else data, val_out, test_out,
                        ws.suite.protocol.bootstrap,
                        bootstrap_seed(external.task if external else task, ws.suite.protocol.split_seed))
    result["train"] = {**_train_info(data, train), "trained_weights": trainable_count(groups),
                       **_external_info(external)}
    result["selected"] = {"epoch": best_epoch, "epochs_run": epochs_run, "val_loss": best_loss}
    result["weights"] = getattr(encoder, "given_weights", None)
    result["wall_s"] = time.perf_counter() - started
    return result


def train_epoch(model: torch.nn.Module, optimiser: torch.optim.Optimizer, loss_fn: torch.nn.Module, windows: Windows,
                rows: np.ndarray, targets: torch.Tensor, order: np.ndarray, batch_size: int,
                rng: np.random.Generator, mask: torch.Tensor | None = None) -> None:
    """One pass over ``order`` (positions into ``rows`` and ``targets``): a random window per record per step.
    Under torchrun each rank takes its slice of every global batch and weighs its mean loss by the slice's share,
    so DDP's average of the gradients is the gradient of the global batch's mean loss."""
    ctx = distributed.current()
    device = next(model.parameters()).device
    model.train()
    for batch in loader(windows, finetune_plan(windows, rows, order, batch_size, rng), lead_mask=mask, device=device):
        idx, mine = batch["tag"]
        with ctx.autocast():
            out = model(batch["x"].to(device, non_blocking=True))
        loss = loss_fn(out.float(), targets[idx[mine]].to(device))
        if ctx.distributed:
            loss = loss * (len(idx[mine]) * ctx.world / len(idx))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def finetune_plan(windows: Windows, rows: np.ndarray, order: np.ndarray, batch_size: int,
                  rng: np.random.Generator) -> Iterator[Cut]:
    """An epoch's batches for finetuning: each global batch of ``order`` (skipping one too small for batch norm on
    every rank), a random window per record, this rank's slice cut. Tag: the batch's positions and the slice."""
    ctx = distributed.current()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 * ctx.world and len(order) >= 2:
            continue  # batch norm needs two samples (on every rank)
        mine = ctx.part(len(idx))
        offsets = windows.random_offsets(rows[idx], rng)
        yield Cut(rows[idx][mine], offsets[mine], tag=(idx, mine))


# -- zero-shot -------------------------------------------------------------------------------------------------


@torch.no_grad()
def zero_shot(cell: Cell, ws: Workspace, registry: Registry, root: Path) -> dict[str, Any]:
    """Score each class by the similarity of the ECG's projected embedding to the projected description of the
    class (the task's ``prompts``), no label used (MERL, FG-CLEP). A binary task scores positive minus negative."""
    from .pretrain import rebuild_objective

    started = time.perf_counter()
    task = registry.tasks.get(cell.task)
    if not task.prompts:
        raise StenceBenchError(f"task {task.name!r} has no prompts for zero-shot evaluation")
    source = cell.pretrain_cell()
    if source is None:
        raise StenceBenchError(f"objective {cell.objective!r} does not pretrain: nothing to evaluate zero-shot")
    objective = rebuild_objective(source, registry, root)
    text = getattr(objective, "paired_encoder", None)
    if getattr(objective, "paired", None) != "text" or text is None:
        raise StenceBenchError(f"objective {cell.objective!r} has no text side for zero-shot evaluation")
    spec = registry.encoders.get(cell.encoder)
    windows = ws.windows(task.dataset, spec)
    data = task_data(ws, task, windows, cell.leads)
    names = ["positive", "negative"] if task.task_kind == "binary" else data.classes
    missing = [n for n in names if n not in task.prompts]
    if missing:
        raise StenceBenchError(f"task {task.name!r}: no prompt for class(es) {', '.join(missing)}")
    prompts = torch.nn.functional.normalize(objective.paired_proj(text(text.collate([task.prompts[n] for n in names]))), dim=-1)
    mask = lead_mask(spec, cell.leads)
    rows = np.concatenate([data.part("val"), data.part("test")])
    ecg = torch.from_numpy(embed(objective.encoder, windows, data.rows[rows], mask))
    ecg = torch.nn.functional.normalize(objective.ecg_proj(ecg), dim=-1)
    sims = (ecg @ prompts.T).numpy().astype(np.float64)
    scores = sims[:, :1] - sims[:, 1:2] if task.task_kind == "binary" else sims
    n_val = len(data.part("val"))
    result = score_cell(task, data, scores[:n_val], scores[n_val:], ws.suite.protocol.bootstrap,
                        bootstrap_seed(task, ws.suite.protocol.split_seed))
    result["train"] = {"records": 0, "patients": 0}
    result["selected"] = {"prompts": {n: task.prompts[n] for n in names}}
    result["wall_s"] = time.perf_counter() - started
    return result


@torch.no_grad()
def _centre_loss(model: torch.nn.Module, windows: Windows, rows: np.ndarray, mask: torch.Tensor | None,
                 loss_fn: torch.nn.Module, target: torch.Tensor, chunk: int = 512) -> float:
    """Validation loss on each record's centred window (early stopping; the final scores use every window). Under
    torchrun each rank takes a part of the rows and the sums are added up: every rank gets the same value."""
    ctx = distributed.current()
    device = next(model.parameters()).device
    model.eval()
    mine = np.arange(len(rows))[ctx.part(len(rows))]
    plan = (Cut(rows[part], windows.centre_offsets(rows[part]), tag=part)
            for part in (mine[start : start + chunk] for start in range(0, len(mine), chunk)))
    total = 0.0
    for batch in loader(windows, plan, lead_mask=mask, device=device):
        part = batch["tag"]
        with ctx.autocast():
            out = model(batch["x"].to(device, non_blocking=True))
        total += float(loss_fn(out.float(), target[part].to(device))) * len(part)
    total, count = ctx.sum(total, float(len(mine)))
    return total / max(count, 1.0)
