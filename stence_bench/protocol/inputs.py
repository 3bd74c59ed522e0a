"""What a cell's numbers were computed from, so that a finished cell is reused only while that is unchanged.

A cell's key names its config (specs' content and origin, protocol settings, data section). What its values also
depend on is the data as it is now and the code that computed them:

- ``records``: the records it read (ids, signal checksums, patients, and for evaluation their split);
- ``labels``: the task's labels of those records (evaluation cells);
- ``external``: the same of an external test set (``test_dataset``);
- ``subgroups``: which of those records are in each prespecified subgroup (their age, sex, the task's columns);
- ``tables``, ``reports``, ``labels``: what a pretraining objective reads beside the ECGs (metadata, angiography,
  report text, the layout's labels and their source, the target tasks' tables);
- ``pretraining``: the inputs of the pretraining it starts from (a changed pretraining makes its evaluations stale);
- ``weights``: the sha256 of the given weights file its encoder starts from (``weights =`` in the suite; the hash is
  in the cell's key too, so a changed file is another cell, never a finished one);
- ``code``: :data:`CODE_VERSIONS`, bumped when windows, pretraining or scoring change numbers.

:func:`cell_inputs` computes them; results keep them (``CellResult.inputs``); the runner recomputes a finished
cell whose inputs differ from today's (``--reuse-stale`` keeps it, marked stale) and says which changed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..cells import Cell
from ..data.views import VIEW_VERSION
from ..hashing import digest
from ..registry import Registry
from .data import Workspace, external_task, record_labels
from .subgroups import membership as subgroup_membership

#: The code that turns data into numbers, by part: bump a part when it changes numbers for unchanged inputs.
CODE_VERSIONS: dict[str, str] = {
    "view": str(VIEW_VERSION),  # resampling, filtering (stence_bench.data.views)
    "windows": "2",  # cutting and normalising windows (protocol.data.Windows): 2 = windows inside each record
    "pretraining": "2",  # the pretraining loop and its data: 2 = no held-out patient, VCG in millivolts
    "scoring": "3",  # probes, finetuning, metrics and intervals: 2 = per-record window means, 3 = subgroups
}
#: The parts each stage depends on.
STAGE_CODE = {"pretrain": ("view", "windows", "pretraining"), "embed": ("view", "windows")}
EVALUATION_CODE = ("view", "windows", "scoring")


def code_versions(stage: str) -> dict[str, str]:
    return {part: CODE_VERSIONS[part] for part in STAGE_CODE.get(stage, EVALUATION_CODE)}


class Inputs:
    """Today's inputs of cells, computed once per task and pretraining (a run asks for every finished cell)."""

    def __init__(self, ws: Workspace, registry: Registry):
        self.ws, self.registry = ws, registry
        self._cache: dict[tuple[str, ...], dict[str, Any]] = {}

    @classmethod
    def of_workspace(cls, ws: Workspace, registry: Registry) -> Inputs:
        """The workspace's one instance (its caches are the workspace's data, computed once)."""
        found = getattr(ws, "_cell_inputs", None)
        if found is None or found.registry is not registry:
            found = cls(ws, registry)
            ws._cell_inputs = found  # type: ignore[attr-defined]
        return found

    def of(self, cell: Cell) -> dict[str, Any]:
        if cell.stage == "pretrain":
            return self._pretraining(cell)
        weights = self._weights(cell)
        pretraining = cell.pretrain_cell()
        key = ("task", str(cell.task), pretraining.key if pretraining else "", weights or "",
               cell.test_dataset or "")
        if key not in self._cache:
            out = {**self._task(str(cell.task)), "code": code_versions(cell.stage)}
            if cell.test_dataset is not None:  # an external test set: its records, labels and subgroups too
                out["external"] = digest(self._task(str(cell.task), cell.test_dataset))
            source = cell.pretrain_cell()
            if source is not None:
                out["pretraining"] = digest(self._pretraining(source))
            elif weights is not None:
                out["weights"] = weights
            self._cache[key] = out
        return self._cache[key]

    def _weights(self, cell: Cell) -> str | None:
        """The sha256 of the given weights the cell's encoder starts from, if it does."""
        from .pretrain import loads_given_weights

        return cell.weights.sha256 if cell.weights is not None and loads_given_weights(cell, self.registry) else None

    def _task(self, name: str, dataset_name: str | None = None) -> dict[str, str]:
        key = ("labels", name, dataset_name or "")
        if key not in self._cache:
            task = self.registry.tasks.get(name)
            if dataset_name is not None:
                task = external_task(task, dataset_name)
            dataset = self.ws.dataset(task.dataset)
            labels = self.ws.labels(task).sort_index()
            ids = labels.index.to_numpy()
            split = pd.Series(dataset.split(task.split, self.ws.suite.protocol.split_seed),
                              index=dataset.records["record_id"].to_numpy()).reindex(ids)
            records = pd.DataFrame({"checksum": dataset.checksums.reindex(ids).to_numpy(),
                                    "patient": dataset.patients.reindex(ids).to_numpy(),
                                    "split": split.to_numpy()}, index=ids)
            names, members = subgroup_membership(dataset, task, ids, self.ws.suite.protocol.subgroups)
            self._cache[key] = {"records": _frame_digest(records), "labels": _frame_digest(labels),
                                "subgroups": digest([names, np.packbits(members, axis=0).tolist()])}
        return self._cache[key]

    def _pretraining(self, cell: Cell) -> dict[str, Any]:
        weights = self._weights(cell)
        key = ("pretrain", cell.objective, json.dumps(cell.objective_options, sort_keys=True), weights or "")
        if key not in self._cache:
            dataset = self.ws.dataset(self.ws.suite.data.pretrain)
            ids = np.array(sorted(self.ws.pretraining_records().record_ids), dtype=object)
            records = pd.DataFrame({"checksum": dataset.checksums.reindex(ids).to_numpy(),
                                    "patient": dataset.patients.reindex(ids).to_numpy()}, index=ids)
            out: dict[str, Any] = {"records": _frame_digest(records), "code": code_versions("pretrain")}
            if weights is not None:
                out["weights"] = weights
            modalities = set(self.registry.objectives.get(cell.objective).modalities)
            if modalities & {"text", "labels"}:  # reports
                out["reports"] = digest([[str(m.get("report", "")), m.get("statements")] for m in dataset.records["meta"]])
            if "labels" in modalities:  # the layout's labels (PTB-XL's come from a table, CinC 2021's from headers)
                out["labels"] = digest(record_labels(dataset))
            if modalities & {"metadata", "angiography", "targets"}:
                out["tables"] = digest({name: _frame_digest(table) for name, table in sorted(dataset.tables.items())})
            self._cache[key] = out
        return self._cache[key]


def _frame_digest(frame: pd.DataFrame) -> str:
    """A hash of a table's index and values (as text: stable across dtypes that print alike)."""
    return digest(frame.to_csv(lineterminator="\n"))


def changes(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a result's inputs and today's, in words (empty: nothing)."""
    if not stored:
        return ["its inputs were not recorded (an older result)"]
    out = []
    for part in sorted(set(stored) | set(now)):
        if stored.get(part) == now.get(part):
            continue
        if part == "code":
            old, new = stored.get("code") or {}, now.get("code") or {}
            parts = [f"{p} v{old.get(p, '?')} -> v{new.get(p, '?')}" for p in sorted(set(old) | set(new))
                     if old.get(p) != new.get(p)]
            out.append("code changed (" + ", ".join(parts) + ")")
        else:
            out.append(f"{part} changed")
    return out
