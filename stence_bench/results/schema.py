"""The result schema: what ``results/<cell key>.json`` holds (one pydantic model per file).

A file holds the cell (its resolved config), its status, scores on val and test, the main metric's value with its
confidence interval and per-resample values (for paired differences and the two-level bootstrap of the tables), the
training fraction's size and sampled-id hash, the dataset fingerprint, the versions of the package and of every
plugin, the git commit, the device and the wall time. A finished cell's file is written once, atomically; a failed
cell's file records the error and is retried on the next run. What is derived from several files (the paired
difference to the control, the tables) is never written back into them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue, model_validator

from ..cells import Cell

RESULT_DIR = "results"
#: 3: ``vs_control`` is no longer stored (it is derived where it is shown:
#: :func:`stence_bench.results.paired_differences`).
SCHEMA_VERSION = "3"
#: The file a run writes beside its results: the validated suite (name, description, protocol, comparisons).
SUITE_FILE = "suite.json"


class PairedDifference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    control: str
    control_key: str
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    excludes_zero: bool


class SubgroupScore(BaseModel):
    """The main metric on one prespecified subgroup of the test records (:mod:`stence_bench.protocol.subgroups`)."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    #: Percentile interval of ``values``: the cell's patient resamples restricted to the subgroup.
    ci: list[float | None]
    n: int
    n_patients: int
    #: At least ``protocol.subgroups.min_patients`` test patients: may be named the worst subgroup.
    counted: bool
    values: list[float | None] = []


class CellResult(BaseModel):
    """One cell's result file."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _derived_fields(cls, data: Any) -> Any:
        """Files of schema 2 and earlier stored ``vs_control`` (the paired difference to the control, filled in by
        rewriting the files after a run); it is derived from the files now, so a stored one is dropped."""
        if isinstance(data, dict) and "vs_control" in data:
            data = {k: v for k, v in data.items() if k != "vs_control"}
        return data

    schema_version: str = SCHEMA_VERSION
    key: str
    cell: Cell
    status: Literal["done", "failed"]
    started: str
    finished: str
    wall_s: float
    #: Main metric (the task's) on test, and its interval.
    metric: str | None = None
    value: float | None = None
    ci: dict[str, list[float | None]] = {}
    #: Every metric on val and test.
    scores: dict[str, dict[str, float | None]] = {}
    n: dict[str, int] = {}
    thresholds: list[float | None] = []
    bootstrap: dict[str, JsonValue] = {}
    #: The main metric on each prespecified subgroup of the test records (sex, age bands, the task's columns).
    subgroups: dict[str, SubgroupScore] = {}
    train: dict[str, JsonValue] = {}
    selected: dict[str, JsonValue] = {}
    #: Pretraining cells: losses, records, checkpoint.
    pretrain: dict[str, JsonValue] = {}
    dataset_fingerprint: str | None = None
    #: What the numbers were computed from (records, labels, pretraining, code versions:
    #: :mod:`stence_bench.protocol.inputs`); a finished cell whose inputs changed is stale.
    inputs: dict[str, JsonValue] = {}
    #: Set when a run kept this result although its inputs changed (``--reuse-stale``): what changed.
    stale: str | None = None
    #: Evaluation cells: the file of per-record predictions (ids, patients, labels, scores) the numbers come from.
    predictions: str | None = None
    #: Cells that loaded their encoder entry's given weights: the file, its sha256, how many tensors loaded and the
    #: first names that did not fit (a ``strict = false`` load).
    weights: dict[str, JsonValue] | None = None
    versions: dict[str, str] = {}
    git_commit: str | None = None
    device: str = ""
    error: str | None = None
