"""Pretraining: one encoder x objective x seed on the training patients of the suite's pretraining dataset.

Reads top to bottom: build the encoder, the modality encoders it is paired with (fitted on the training
records), the objective; assemble batches (random windows, a second window where the objective wants segment
positives, patient ids, paired modalities, labels, target tasks' labels, metadata and risk); train with AdamW; save the encoder's
weights with their resolved config as safetensors (loads without executing code).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..cells import Cell
from ..data.windows import Cut, Windows, loader
from ..errors import StenceBenchError
from ..files import write_atomic
from ..registry import Registry
from ..specs import RUNNER_OPTIONS, import_object
from ..suite_schema import lead_names
from . import distributed
from .data import (
    Workspace,
    angiogram_paths,
    lead_mask,
    metadata_frame,
    patient_codes,
    record_labels,
    report_labels,
    report_texts,
)

CHECKPOINT_DIR = "checkpoints"
#: A pretraining prints its epoch and loss when this long has passed since its last line.
PROGRESS_EVERY_S = 30.0


def checkpoint_path(root: Path, cell: Cell) -> Path:
    return Path(root) / CHECKPOINT_DIR / f"{cell.key}.safetensors"


def factory_options(cell: Cell) -> dict[str, Any]:
    """The cell's objective options that the objective's factory takes."""
    return {k: v for k, v in cell.objective_options.items() if k not in RUNNER_OPTIONS}


def target_values(registry: Registry, dataset: Any, tasks: tuple[str, ...]) -> tuple[pd.DataFrame, tuple[tuple[str, ...], ...]]:
    """The target tasks' labels on ``dataset``'s records (computed from its own tables, whatever dataset the task
    names), side by side, indexed by record id, NaN where a record has no label; and each task's columns."""
    frames, columns = [], []
    for name in tasks:
        task = registry.tasks.get(name)
        try:
            frame = import_object(task.labels, what=f"task {name!r}")(dataset.task_source, **task.options)
        except StenceBenchError as exc:  # a missing table or column: say which target needed it
            raise StenceBenchError(f"target task {name!r}: {exc}") from exc
        if not isinstance(frame, pd.DataFrame) or frame.shape[1] < 1:
            raise StenceBenchError(f"target task {name!r}: the label function returned {type(frame).__name__}, not a "
                                   "DataFrame with one column per class")
        frame = frame.astype(float)
        frame.index = frame.index.astype(str)
        columns.append(tuple(str(c) for c in frame.columns))
        frames.append(frame.set_axis([f"{name}:{c}" for c in frame.columns], axis=1))
    return pd.concat(frames, axis=1), tuple(columns)


def build_modality_encoder(cell: Cell, registry: Registry, modality: str, name: str) -> torch.nn.Module:
    """The registered modality encoder ``name``, sized by the cell's ``modality_options`` for ``modality``."""
    sizes = dict(cell.objective_options.get("modality_options") or {})
    return registry.modalities.get(name).build(**dict(sizes.get(modality) or {}))


def build_encoder(cell: Cell, registry: Registry, *, n_leads: int | None = None) -> torch.nn.Module:
    """The encoder of a cell at initialisation, seeded by the cell's seed."""
    spec = registry.encoders.get(cell.encoder)
    torch.manual_seed(cell.seed)
    return spec.build(cell.preset, n_leads=n_leads, **cell.encoder_options)


def loads_given_weights(cell: Cell, registry: Registry) -> bool:
    """Whether the cell's encoder starts from its entry's given weights (``weights =``): every objective but the
    random-init control does (:attr:`ObjectiveSpec.loads_weights`)."""
    return cell.weights is not None and registry.objectives.get(cell.objective).loads_weights


def load_given_weights(encoder: torch.nn.Module, cell: Cell, registry: Registry) -> dict[str, Any] | None:
    """Load the cell's given weights into ``encoder`` when its objective starts from them (the file checked
    against the hash the cell was planned with); returns what loaded (file, sha256, counts, the first names that
    did not fit), or ``None`` when nothing was given or the objective is the random-init control."""
    from ..weights import load_weights

    if not loads_given_weights(cell, registry):
        return None
    given = cell.weights
    assert given is not None
    fitted = load_weights(encoder, given.path, given.layout(), sha256=given.sha256, strict=given.strict)
    return {"file": given.file, "path": given.path, "sha256": given.sha256, **fitted.report()}


def save_checkpoint(path: Path, encoder: torch.nn.Module, cell: Cell, info: dict[str, Any]) -> None:
    """The encoder's weights and, as safetensors metadata, the resolved config that made them."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"cell": cell.model_dump_json(), "info": json.dumps(info), "format": "stence-bench-encoder/1"}
    write_atomic(path, writer=lambda tmp: save_file(state, str(tmp), metadata=metadata))


def objective_path(root: Path, cell: Cell) -> Path:
    """The whole pretrained objective (projection heads, temperatures, paired modality encoders with what their
    ``fit`` learned): what zero-shot evaluation needs beyond the encoder."""
    return Path(root) / CHECKPOINT_DIR / f"{cell.key}.objective.safetensors"


def save_objective(path: Path, objective: torch.nn.Module) -> None:
    """Tensors as safetensors; the non-tensor extra state (a text vocabulary) as JSON metadata."""
    from safetensors.torch import save_file

    state = objective.state_dict()
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    extra = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    metadata = {"extra_state": json.dumps(extra), "format": "stence-bench-objective/1"}
    write_atomic(path, writer=lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_objective(path: Path, objective: torch.nn.Module) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise StenceBenchError(f"{path}: the pretrained objective was not saved (pretrained by an older version?)")
    state: dict[str, Any] = dict(load_file(str(path)))
    with safe_open(str(path), framework="pt") as fh:
        state.update(json.loads((fh.metadata() or {}).get("extra_state", "{}")))
    objective.load_state_dict(state)


def load_checkpoint(path: Path, encoder: torch.nn.Module) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` into ``encoder``; returns the stored config."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise StenceBenchError(f"{path}: checkpoint not found")
    encoder.load_state_dict(load_file(str(path)))
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    return {"cell": json.loads(meta.get("cell", "{}")), "info": json.loads(meta.get("info", "{}"))}


def pretrain(cell: Cell, ws: Workspace, registry: Registry, root: Path,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one pretraining cell; returns what its result records (losses, records used, checkpoint)."""
    started = time.perf_counter()
    settings = ws.suite.protocol.pretrain
    enc_spec = registry.encoders.get(cell.encoder)
    obj_spec = registry.objectives.get(cell.objective)
    dataset_name = ws.suite.data.pretrain
    dataset = ws.dataset(dataset_name)
    windows = ws.windows(dataset_name, enc_spec)
    lacking = set(obj_spec.modalities) - set(registry.datasets.get(dataset.source.layout or dataset_name).modalities)
    lacking -= {"metadata", "labels", "targets"}  # the run derives these from the tables and reports of any layout
    if lacking and not ("angiography" in lacking and angiogram_paths(dataset)):
        raise StenceBenchError(f"objective {cell.objective!r} needs {', '.join(sorted(lacking))}, which the "
                               f"pretraining dataset {dataset_name!r} does not provide")

    # the records: training patients, none a validation or test patient of any task, in the encoder's view
    chosen = ws.pretraining_records()
    allowed = set(chosen.record_ids)
    record_row = {rid: i for i, rid in enumerate(dataset.records["record_id"])}
    # ... that have every lead pretraining sees (protocol.pretrain.leads; all of the encoder's by default)
    leads = settings.leads
    has = windows.has_leads(lead_names(leads, enc_spec.leads))
    view_rows = np.array([i for i, rid in enumerate(windows.record_ids) if rid in allowed and has[i]], dtype=np.int64)
    data_rows = np.array([record_row[windows.record_ids[i]] for i in view_rows], dtype=np.int64)

    # per-record inputs of the paired modalities, labels, metadata
    options = factory_options(cell)
    names = registry.modality_encoders_for(obj_spec, cell.objective_options)

    def build_modality(modality: str) -> torch.nn.Module:
        return build_modality_encoder(cell, registry, modality, names[modality])

    torch.manual_seed(cell.seed)
    modality_encoders: dict[str, torch.nn.Module] = {}
    items: dict[str, list[Any]] = {}
    if "angiography" in names:
        module = build_modality("angiography")
        per_patient = _angiography_inputs(dataset, module)
        patients = dataset.records["patient_id"].to_numpy()
        keep = np.array([str(patients[r]) in per_patient for r in data_rows], dtype=bool)
        view_rows, data_rows = view_rows[keep], data_rows[keep]
        if not len(data_rows):
            raise StenceBenchError(f"objective {cell.objective!r}: no training record of {dataset_name!r} has an "
                                   "angiogram (or a precomputed angiography embedding)")
        items["angiography"] = [per_patient[str(patients[r])] for r in data_rows]
        modality_encoders["angiography"] = module
    targets, target_columns = None, None
    tasks = registry.targets_for(obj_spec, cell.objective_options)
    if tasks:  # the target tasks' labels of the records; a record without any is left out
        target_frame, target_columns = target_values(registry, dataset, tasks)
        per_row = target_frame.reindex(dataset.records["record_id"].iloc[data_rows].to_numpy()).to_numpy(np.float32)
        keep = np.isfinite(per_row).any(axis=1)
        if not keep.any():
            raise StenceBenchError(f"objective {cell.objective!r}: no training record of {dataset_name!r} has a label "
                                   f"of its target task(s) {', '.join(tasks)}")
        view_rows, data_rows = view_rows[keep], data_rows[keep]
        items = {key: [v for v, k in zip(values_, keep) if k] for key, values_ in items.items()}
        targets = torch.from_numpy(np.ascontiguousarray(per_row[keep]))
    if "text" in names:
        module = build_modality("text")
        texts = report_texts(dataset)
        items["text"] = [texts[r] or "" for r in data_rows]
        if hasattr(module, "fit"):
            module.fit(items["text"])
        modality_encoders["text"] = module
    labels, vocab, label_source = None, [], None
    if "labels" in obj_spec.modalities:
        said, label_source = record_labels(dataset)  # the dataset's own annotations, as its layout declares them
        # the label vocabulary is learned from the pretraining records only
        pretraining_labels, vocab = report_labels([said[r] for r in data_rows])
        if not vocab:
            raise StenceBenchError(f"objective {cell.objective!r} needs labels; no pretraining record of dataset "
                                   f"{dataset_name!r} has any (labels from {label_source.rstrip(': ')})")
        labels = torch.from_numpy(pretraining_labels)
    metadata = risk = None
    if "metadata" in obj_spec.modalities:
        frame = metadata_frame(dataset)
        if frame is None:
            raise StenceBenchError(f"objective {cell.objective!r} needs metadata: dataset {dataset_name!r} has no "
                                   "patients table (patients.csv keyed by subject_id in its tables folder)")
        values, risk_series = frame
        metadata = torch.from_numpy(values.to_numpy(dtype=np.float32)[data_rows])
        risk = torch.from_numpy(risk_series.to_numpy(dtype=np.float32)[data_rows])
    patient_ids = torch.from_numpy(patient_codes(dataset.records["patient_id"].iloc[data_rows]))

    encoder = build_encoder(cell, registry)
    given_weights = load_given_weights(encoder, cell, registry)  # continue pretraining from given weights
    torch.manual_seed(cell.seed)
    objective = obj_spec.build(encoder, leads=enc_spec.leads, modality_encoders=modality_encoders,
                               n_labels=None if labels is None else labels.shape[1], target_columns=target_columns,
                               **options)
    if leads != "all" and getattr(objective, "physical_units", False):
        raise StenceBenchError(f"objective {cell.objective!r} augments in the body's lead geometry (physical_units, "
                               f"such as a VCG rotation), which needs every lead: it cannot pretrain on leads {leads} "
                               "(protocol.pretrain.leads); turn that augmentation off (patient_contrastive: "
                               "options = {vcg = false})")
    mask = lead_mask(enc_spec, leads)
    ctx = distributed.current()
    objective.to(ctx.device)
    optimiser = torch.optim.AdamW(objective.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    grouped = "patient_id" in obj_spec.modalities
    batch_size = _global_batch(cell, settings.batch_size, len(data_rows), ctx.world)
    mine = ctx.part(batch_size)

    # resume from the last finished epoch of an interrupted run of this cell (any number of processes)
    state_path = training_state_path(root, cell)
    log = TrainingLog(log_path(root, cell)) if ctx.main else None
    start_epoch, losses = 0, []
    if state_path.is_file():
        state = load_training_state(state_path, cell)
        objective.load_state_dict(state["objective"])
        optimiser.load_state_dict(state["optimiser"])
        start_epoch, losses = int(state["epoch"]), [float(v) for v in state["losses"]]
        if progress:
            progress(f"{cell.label}: resuming from epoch {start_epoch}/{settings.epochs} ({state_path})")
    if log is not None:
        log.start(keep_epochs=start_epoch)

    model = ctx.wrap(objective)
    model.train()
    hook = registry.plugins.manager.hook
    said = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        # randomness per epoch (not carried over from the last one), so a resumed run repeats an uninterrupted one
        torch.manual_seed(_torch_seed(cell.seed, epoch, ctx.rank))  # augmentations: each rank its own
        plan = pretraining_plan(windows, view_rows, patient_ids.numpy(), grouped, cell.seed, epoch, batch_size, mine,
                                objective)
        epoch_losses = []
        for windows_batch in loader(windows, plan, lead_mask=mask, device=ctx.device):
            local = windows_batch["tag"][mine]
            batch: dict[str, Any] = {**ecg_inputs(windows_batch, objective), "patient_id": patient_ids[local]}
            if "angiography" in items:
                batch["angiography"] = torch.stack([items["angiography"][i] for i in local])
            if "text" in items:
                batch["text"] = modality_encoders["text"].collate([items["text"][i] for i in local])
            if labels is not None:
                batch["labels"] = labels[local]
            if targets is not None:
                batch["targets"] = targets[local]
            if metadata is not None:
                batch["metadata"], batch["risk"] = metadata[local], risk[local]
            with ctx.autocast():
                out = model(distributed.to_device(batch, ctx.device))
            (total,) = ctx.sum(float(out.loss.detach()))
            value = total / ctx.world  # the same on every rank: all stop together on a bad loss
            if not np.isfinite(value):
                raise StenceBenchError(f"pretraining {cell.label}: the loss became {value} at epoch {epoch + 1}")
            optimiser.zero_grad(set_to_none=True)
            out.loss.backward()
            optimiser.step()
            epoch_losses.append(value)
            if log is not None:
                log.step(epoch + 1, len(epoch_losses), value)
        losses.append(float(np.mean(epoch_losses)))
        if ctx.main:
            save_training_state(state_path, cell, objective, optimiser, epoch + 1, losses)
            steps = [{"step": epoch * len(epoch_losses) + i, "loss": v} for i, v in enumerate(epoch_losses, start=1)]
            hook.epoch_finished(cell=cell, epoch=epoch + 1, metrics={"loss": losses[-1]}, steps=steps)
        if progress and time.perf_counter() - said >= PROGRESS_EVERY_S:  # long epochs only: no flood of lines
            said = time.perf_counter()
            progress(f"{cell.label}: epoch {epoch + 1}/{settings.epochs} loss {losses[-1]:.4f}")

    info = {"dataset": dataset_name, "dataset_fingerprint": dataset.store.fingerprint(), "records": len(data_rows),
            **({"leads": leads} if leads != "all" else {}),
            "excluded_held_out_patients": chosen.excluded_held_out_patients,
            "test_overlap": dict(chosen.test_overlap), "test_overlap_kept": chosen.test_overlap_kept,
            "patients": len(np.unique(patient_ids.numpy())), "epochs": settings.epochs, "losses": losses,
            "batch_size": batch_size, "processes": ctx.world,
            "modality_encoders": names, "n_labels": None if labels is None else labels.shape[1],
            "label_vocabulary": vocab if labels is not None else None, "label_source": label_source,
            **({"weights": given_weights} if given_weights is not None else {}),
            **({"targets": list(tasks), "target_columns": [list(c) for c in target_columns or ()]} if tasks else {}),
            **(objective.run_info() if hasattr(objective, "run_info") else {}),
            "wall_s": time.perf_counter() - started}
    if ctx.main:
        save_checkpoint(checkpoint_path(root, cell), encoder, cell, info)
        if "text" in names:  # zero-shot evaluation needs the text side and the projections
            save_objective(objective_path(root, cell), objective)
        state_path.unlink(missing_ok=True)
    ctx.barrier()  # the other ranks load this checkpoint next (finetuning)
    return info


def pretraining_cut(windows: Windows, rows: np.ndarray, rng: np.random.Generator, part: slice,
                    objective: torch.nn.Module, tag: Any = None) -> Cut:
    """The ECG windows of one pretraining step: a random window of each record of the global batch ``rows`` (offsets
    drawn for all of them, so every rank's generator stays in step; this rank cuts its ``part``), and a second one
    where the objective wants segments, stacked after the first; millivolts where the objective augments in
    physical units."""
    segments = max(1, int(getattr(objective, "segments", 1)))
    offsets = [windows.random_offsets(rows, rng) for _ in range(segments)]
    return Cut(np.concatenate([rows[part]] * segments), np.concatenate([o[part] for o in offsets]),
               normalize=not getattr(objective, "physical_units", False), tag=tag)


def ecg_inputs(batch: dict[str, Any], objective: torch.nn.Module) -> dict[str, Any]:
    """The ECG part of a pretraining batch from the windows of a :func:`pretraining_cut`: ``ecg``, ``ecg_segment``
    where the objective wants it, and ``normalize`` (the contract's normalisation) where it takes millivolts."""
    segments = max(1, int(getattr(objective, "segments", 1)))
    x = batch["x"]
    k = len(x) // segments
    out: dict[str, Any] = {"ecg": x[:k]}
    if segments > 1:
        out["ecg_segment"] = x[k : 2 * k]
    if "normalize" in batch:  # every record's window has min(length, n) valid samples: one normaliser fits both
        whole = batch["normalize"]
        out["normalize"] = whole.part(slice(0, k))
    return out


def pretraining_plan(windows: Windows, view_rows: np.ndarray, patients: np.ndarray, grouped: bool, seed: int,
                     epoch: int, batch_size: int, part: slice, objective: torch.nn.Module) -> Iterator[Cut]:
    """One epoch's steps, drawn from the seed and the epoch number (a resumed run repeats an uninterrupted one):
    the global order (a patient's records together where ``grouped``), then each full global batch's windows.
    Each cut's tag is the batch's positions into ``view_rows``."""
    rng = np.random.default_rng([seed, epoch])
    order = _order(patients, rng, grouped)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]  # the global batch; this rank takes its slice
        yield pretraining_cut(windows, view_rows[idx], rng, part, objective, tag=idx)


def _global_batch(cell: Cell, wanted: int, records: int, world: int) -> int:
    """The global batch: ``protocol.pretrain.batch_size``, or every record where there are fewer, in equal
    slices over the processes."""
    if wanted % world:
        raise StenceBenchError(f"pretraining {cell.label}: protocol.pretrain.batch_size = {wanted} does not divide "
                               f"among {world} processes; make it a multiple of {world}")
    size = min(wanted, records)
    size -= size % world
    if size < 2:
        raise StenceBenchError(f"pretraining {cell.label}: {records} training record(s), need at least "
                               f"{max(2, world)}")
    return size


def _torch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


# -- training state and log: what a killed pretraining resumes from ------------------------------------------


def training_state_path(root: Path, cell: Cell) -> Path:
    """The state after the last finished epoch (weights, optimiser, losses); removed once the cell is done."""
    return Path(root) / CHECKPOINT_DIR / f"{cell.key}.state.pt"


def save_training_state(path: Path, cell: Cell, objective: torch.nn.Module, optimiser: torch.optim.Optimizer,
                        epoch: int, losses: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": "stence-bench-training-state/1", "key": cell.key, "epoch": epoch, "losses": list(losses),
             "objective": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                           for k, v in objective.state_dict().items()},
             "optimiser": optimiser.state_dict()}
    write_atomic(path, writer=lambda tmp: torch.save(state, tmp))  # a kill while saving leaves the previous state whole


def load_training_state(path: Path, cell: Cell) -> dict[str, Any]:
    """A saved training state, loaded without executing code (``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: say which and what to do
        raise StenceBenchError(f"{path}: unreadable training state ({type(exc).__name__}: {exc}); delete it to "
                               "start this pretraining again") from exc
    if state.get("format") != "stence-bench-training-state/1" or state.get("key") != cell.key:
        raise StenceBenchError(f"{path}: not the training state of cell {cell.key}; delete it to start again")
    return state


def saved_epoch(root: Path, cell: Cell) -> int | None:
    """The last finished epoch an interrupted pretraining of ``cell`` saved (None: no state, or unreadable),
    read without loading the weights into memory."""
    path = training_state_path(root, cell)
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # noqa: BLE001 - the pretraining itself says what is wrong with the file
        return None


def log_path(root: Path, cell: Cell) -> Path:
    """The training log of a pretraining cell: one JSON line per step (epoch, step, loss, seconds)."""
    return Path(root) / "logs" / f"{cell.key}.jsonl"


class TrainingLog:
    """Rank 0's step log. A resumed run keeps the lines of the epochs it resumes after and drops the rest, so
    the log of a killed-and-resumed run reads as the log of an uninterrupted one."""

    def __init__(self, path: Path):
        self.path = path
        self.started = time.perf_counter()

    def start(self, keep_epochs: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_epochs and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line)["epoch"] <= keep_epochs:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by the kill
        write_atomic(self.path, "".join(line + "\n" for line in kept))

    def step(self, epoch: int, step: int, loss: float) -> None:
        line = json.dumps({"epoch": epoch, "step": step, "loss": loss,
                           "time_s": round(time.perf_counter() - self.started, 3)})
        with self.path.open("a") as fh:
            fh.write(line + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The steps of a training log."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rebuild_objective(cell: Cell, registry: Registry, root: Path) -> torch.nn.Module:
    """The objective of a pretraining cell as it was saved (for zero-shot evaluation), in eval mode."""
    encoder = build_encoder(cell, registry)
    stored = load_checkpoint(checkpoint_path(root, cell), encoder)
    names = stored["info"].get("modality_encoders", {})
    modality_encoders = {m: build_modality_encoder(cell, registry, m, n) for m, n in names.items()}
    objective = registry.objectives.get(cell.objective).build(
        encoder, leads=registry.encoders.get(cell.encoder).leads, modality_encoders=modality_encoders,
        n_labels=stored["info"].get("n_labels"), target_columns=stored["info"].get("target_columns"),
        **factory_options(cell))
    load_objective(objective_path(root, cell), objective)
    return objective.eval()


def _angiography_inputs(dataset: Any, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Patient id -> the angiography encoder's input, collated once: precomputed embeddings (an encoder with
    ``input_dim``, from the ``angiography_embeddings`` table: a key column and one column per dimension), or the
    frames of the angiogram the ``stenosis`` table links."""
    if hasattr(module, "input_dim"):
        tables = dataset.tables
        if "angiography_embeddings" not in tables:
            raise StenceBenchError(f"dataset {dataset.name!r}: the angiography encoder reads precomputed embeddings; "
                                   "add angiography_embeddings.csv (subject_id, then one column per dimension) to its tables")
        table = tables["angiography_embeddings"]
        key = "subject_id" if "subject_id" in table.columns else "patient_id"
        values = table.drop(columns=[key]).to_numpy(dtype=np.float32)
        if values.shape[1] != module.input_dim:
            raise StenceBenchError(f"angiography_embeddings.csv has {values.shape[1]} dimensions; the encoder expects "
                                   f"input_dim = {module.input_dim} (set modality_options.angiography.input_dim)")
        return {str(k): module.collate([v])[0] for k, v in zip(table[key], values)}
    from ..data.dicom import read_angiography

    return {patient: module.collate([read_angiography(path)])[0] for patient, path in angiogram_paths(dataset).items()}


def _order(patients: np.ndarray, rng: np.random.Generator, grouped: bool) -> np.ndarray:
    """A shuffled order of the records; ``grouped`` keeps each patient's records together (patient positives
    then meet in one batch)."""
    if not grouped:
        return rng.permutation(len(patients))
    frame = pd.DataFrame({"patient": patients, "row": np.arange(len(patients)), "u": rng.random(len(patients))})
    rank = {p: i for i, p in enumerate(rng.permutation(np.unique(patients)))}
    frame["rank"] = frame["patient"].map(rank)
    return np.array(frame.sort_values(["rank", "u"])["row"], dtype=np.int64)  # writable: torch indexes with it
