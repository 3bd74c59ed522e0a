"""Prespecified subgroups: which test records each evaluation cell also scores apart.

Every cell scores its task's main metric on each subgroup of its test records (Jeong et al. report consistency
across subgroups; reviewers ask for it): sex, age bands (the suite's ``protocol.subgroups``) and the values of the
metadata columns its task names (:attr:`~stence_bench.specs.TaskSpec.subgroups`). Where they come from:

- age and sex: the layout's :meth:`~stence_bench.data.layouts.base.Layout.demographics` of each record's meta
  (PTB-XL's ``age`` and coded ``sex``, CinC 2021's ``# Age`` / ``# Sex``, DICOM's patient module, CODE-15%'s
  ``is_male``), else its patient's row of a ``patients`` table (``sex`` or ``gender``, ``age`` or ``anchor_age``);
- a task's column: the record's meta field of that name, else its patient's column in the ``patients`` table.

A record whose value is unknown is in no subgroup of that attribute. Membership is computed once per task and
saved with each cell's predictions (``subgroup_names``, ``test_subgroups``), so ``stence-bench results rescore``
recomputes every subgroup number from the file alone (:func:`stence_bench.protocol.evaluate.score_predictions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.layouts.base import Layout, sex_of
from ..errors import StenceBenchError
from ..specs import TaskSpec
from ..suite_schema import Subgroups
from .data import Dataset, patients_table

#: The most distinct values a task's subgroup column may have (each value is a subgroup).
MAX_VALUES = 20


def demographics(dataset: Dataset) -> pd.DataFrame:
    """``age`` (years) and ``sex`` (``female`` / ``male`` / None) per record id: the layout's reading of the records'
    meta, filled from a ``patients`` table where the meta lacks them."""
    layout = dataset.layout if dataset.layout is not None else Layout()
    frame = layout.demographics(dataset.task_source).copy()
    table = patients_table(dataset)
    if table is not None:
        table = table.reindex(frame.index)
        sex_column = next((c for c in ("sex", "gender") if c in table.columns), None)
        age_column = next((c for c in ("age", "anchor_age") if c in table.columns), None)
        if sex_column is not None:
            filled = [sex_of(v) for v in table[sex_column]]
            frame["sex"] = [s if isinstance(s, str) else f for s, f in zip(frame["sex"], filled)]
        if age_column is not None:
            ages = pd.to_numeric(table[age_column], errors="coerce").to_numpy(dtype=np.float64)
            frame["age"] = np.where(np.isnan(frame["age"].to_numpy(dtype=np.float64)), ages, frame["age"])
    return frame


def band_names(edges: tuple[float, ...] | list[float]) -> list[str]:
    """Names of the age bands cut at ``edges``: ``(40, 60)`` gives ``age <40``, ``age 40-59``, ``age >=60``
    (a band holds its lower edge; whole-year edges are named by the last whole year below the upper one)."""
    def num(v: float) -> str:
        return f"{v:g}"

    if not edges:
        return []
    names = [f"age <{num(edges[0])}"]
    for low, high in zip(edges[:-1], edges[1:]):
        whole = float(low).is_integer() and float(high).is_integer()
        names.append(f"age {num(low)}-{num(high - 1)}" if whole else f"age [{num(low)}, {num(high)})")
    names.append(f"age >={num(edges[-1])}")
    return names


def column_values(dataset: Dataset, column: str, task: str) -> pd.Series:
    """A task's subgroup column per record id (as text; None where unknown): the records' meta field, else the
    ``patients`` table's column. A column found in neither is an error naming the task and what there is."""
    metas = dataset.records["meta"]
    index = pd.Index(dataset.records["record_id"].astype(str).to_numpy())
    if any(column in meta for meta in metas):
        values = [meta.get(column) for meta in metas]
    else:
        table = patients_table(dataset)
        if table is None or column not in table.columns:
            keys = sorted({k for meta in metas for k in meta if not isinstance(meta[k], dict | list)})
            have = ", ".join(keys[:12]) or "none"
            patients = ", ".join(map(str, table.columns)) if table is not None else "no patients table"
            raise StenceBenchError(f"task {task!r}: subgroup column {column!r} is neither a record meta field of "
                                   f"dataset {dataset.name!r} (it has: {have}) nor a column of its patients table "
                                   f"({patients})")
        values = table[column].tolist()
    return pd.Series([_text(v) for v in values], index=index, dtype=object)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def membership(dataset: Dataset, task: TaskSpec, record_ids: np.ndarray, settings: Subgroups
               ) -> tuple[list[str], np.ndarray]:
    """The subgroups of ``record_ids`` (records of ``dataset``): their names and a ``[len(record_ids), G]`` boolean
    matrix (record in subgroup). Sex (``sex: female``, ``sex: male``), the age bands, then each of the task's
    columns (``column: value``, values in sorted order)."""
    ids = pd.Index(np.asarray(record_ids).astype(str))
    names: list[str] = []
    columns: list[np.ndarray] = []
    needs_demographics = settings.sex or settings.age_bands
    frame = demographics(dataset).reindex(ids) if needs_demographics else None
    if settings.sex and frame is not None:
        for sex in ("female", "male"):
            names.append(f"sex: {sex}")
            columns.append((frame["sex"] == sex).to_numpy(dtype=bool))
    if settings.age_bands and frame is not None:
        age = frame["age"].to_numpy(dtype=np.float64)
        edges = [-np.inf, *settings.age_bands, np.inf]
        for name, low, high in zip(band_names(settings.age_bands), edges[:-1], edges[1:]):
            names.append(name)
            columns.append((age >= low) & (age < high))  # NaN (unknown age) is in no band
    for column in task.subgroups:
        values = column_values(dataset, column, task.name).reindex(ids)
        distinct = sorted({v for v in values if v is not None}, key=_sort_key)
        if len(distinct) > MAX_VALUES:
            raise StenceBenchError(f"task {task.name!r}: subgroup column {column!r} has {len(distinct)} distinct "
                                   f"values on dataset {dataset.name!r} (at most {MAX_VALUES}: name a categorical "
                                   "column)")
        for value in distinct:
            names.append(f"{column}: {value}")
            columns.append((values == value).to_numpy(dtype=bool))
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(ids), 0), dtype=bool)
    return names, matrix


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
