"""PTB-XL label sets, aggregated as the PTB-XL benchmark does (Strodthoff et al., IEEE JBHI 2021).

A record's labels at a level are the statements of its ``scp_codes`` (any likelihood) mapped through
``scp_statements.csv``: ``all`` keeps every statement, ``diagnostic`` the diagnostic ones, ``subdiagnostic`` and
``superdiagnostic`` their ``diagnostic_subclass`` / ``diagnostic_class``, ``form`` and ``rhythm`` the statements
flagged so. Records with no label at a level are dropped for that level. The class vocabulary of a level is
fixed by the statement table (71 / 44 / 23 / 5 / 19 / 12), not by which classes a data subset happens to hold.

The tasks' label function is :func:`ptbxl_labels` (a :class:`~stence_bench.task_data.TaskSource` in, a multi-hot
frame out); :func:`label_sets` is the same aggregation on the two tables as frames, one tuple per record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from stence_bench import TaskSpec, hookimpl

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

Level = Literal["all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"]
LEVELS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
_FLAG = {"diagnostic": "diagnostic", "subdiagnostic": "diagnostic", "superdiagnostic": "diagnostic",
         "form": "form", "rhythm": "rhythm"}
_TARGET = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}
STATEMENT_COLUMNS = ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
RECORD_COLUMNS = ("scp_codes", "strat_fold", "patient_id")
#: What the tasks read, as ``table.column``.
SOURCE_COLUMNS = (*(f"ptbxl_database.{c}" for c in ("ecg_id", *RECORD_COLUMNS)),
                  *(f"scp_statements.{c}" for c in ("scp_code", *STATEMENT_COLUMNS)))


def statement_map(statements: pd.DataFrame, level: str) -> dict[str, str]:
    """SCP statement -> label at ``level``, for the statements that count at that level.

    ``statements`` is ``scp_statements.csv`` read with the statement code as index.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown PTB-XL label level {level!r}; one of {', '.join(LEVELS)}")
    missing = [c for c in STATEMENT_COLUMNS if c not in statements.columns]
    if missing:
        raise ValueError(f"scp_statements table lacks column(s) {', '.join(missing)}")
    if level == "all":
        return {code: code for code in statements.index}
    rows = statements[statements[_FLAG[level]] == 1.0]
    target = _TARGET.get(level)
    if target is None:
        return {code: code for code in rows.index}
    return {code: str(value) for code, value in rows[target].items() if isinstance(value, str) and value}


def classes(statements: pd.DataFrame, level: str) -> list[str]:
    """The sorted class vocabulary of ``level``."""
    return sorted(set(statement_map(statements, level).values()))


def parse_scp_codes(value: object) -> dict[str, float]:
    """``scp_codes`` as stored in ``ptbxl_database.csv`` (a Python dict literal) -> dict (the ``ptbxl`` layout's)."""
    from stence_bench.data.layouts.ptbxl import parse_scp_codes as parse

    return parse(value)


def label_sets(records: pd.DataFrame, statements: pd.DataFrame, *, level: str) -> pd.Series:
    """Each record's sorted tuple of labels at ``level``; records with none are dropped.

    ``records`` is ``ptbxl_database.csv`` (index ``ecg_id``); ``statements`` is ``scp_statements.csv`` (index:
    statement code).
    """
    import pandas as pd

    if "scp_codes" not in records.columns:
        raise ValueError("PTB-XL record table lacks column 'scp_codes'")
    mapping = statement_map(statements, level)
    labels = records["scp_codes"].map(
        lambda codes: tuple(sorted({mapping[c] for c in parse_scp_codes(codes) if c in mapping}))
    )
    return pd.Series(labels[labels.map(len) > 0], name=f"ptbxl.{level}")


def ptbxl_labels(source: TaskSource | pd.DataFrame, statements: pd.DataFrame | None = None, *,
                 level: str) -> pd.DataFrame | pd.Series:
    """The task's label function: a multi-hot frame indexed by ``record_id`` (``str(ecg_id)``) with one float
    column per class of ``classes(statements, level)`` (the fixed vocabulary, in its order).

    Reads the source's ``ptbxl_database`` (``ecg_id``, ``scp_codes``) and ``scp_statements`` (``scp_code`` and the
    statement flags, as the ``ptbxl`` layout keeps them); records with no label at ``level`` are left out, and so
    are rows of the database that are not records of the source. The older call ``(records, statements, level=)``
    with the two tables as frames is :func:`label_sets`'s, and still answers its tuples.
    """
    import numpy as np
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        if statements is None:
            raise TypeError("ptbxl_labels(records, statements, level=...): the statement table is missing")
        return label_sets(source, statements, level=level)
    database = source.table("ptbxl_database", ("ecg_id", "scp_codes"))
    statement_table = source.table("scp_statements", ("scp_code", *STATEMENT_COLUMNS)).set_index("scp_code")
    vocabulary = classes(statement_table, level)
    column = {label: j for j, label in enumerate(vocabulary)}
    sets = label_sets(database.set_index("ecg_id"), statement_table, level=level)
    ids = [str(int(i)) if isinstance(i, float) and i.is_integer() else str(i) for i in sets.index]
    values = np.zeros((len(sets), len(vocabulary)))
    for row, labels in enumerate(sets):
        values[row, [column[label] for label in labels]] = 1.0
    multi_hot = pd.DataFrame(values, index=pd.Index(ids, name="record_id"), columns=vocabulary)
    multi_hot = multi_hot[~multi_hot.index.duplicated()]
    if "record_id" in source.records.columns and len(source.records):
        multi_hot = multi_hot[multi_hot.index.isin(source.records["record_id"].astype(str))]
    order = sorted(multi_hot.index, key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i))
    return multi_hot.loc[order]


#: Zero-shot class descriptions of the five diagnostic superclasses, in the words ECG reports use.
SUPERCLASS_PROMPTS = {
    "NORM": "normal ECG",
    "MI": "myocardial infarct",
    "STTC": "ST-T changes, consider ischemia",
    "CD": "bundle branch block or A-V block",
    "HYP": "left ventricular hypertrophy",
}


@hookimpl
def register_tasks(register):
    for level in LEVELS:
        register(
            TaskSpec(
                name=f"ptbxl.{level}",
                description=f"PTB-XL {level} statements, multi-label (benchmark aggregation)",
                dataset="ptbxl",
                task_kind="multilabel",
                labels="stence_bench_tasks.ptbxl:ptbxl_labels",
                options={"level": level},
                metric="auroc",
                split="strat_fold",
                source_columns=SOURCE_COLUMNS,
                card="stence_bench_tasks:ptbxl.md",
                citation="Wagner et al., Sci Data 2020 (PTB-XL); Strodthoff et al., IEEE JBHI 2021 (benchmark)",
                prompts=SUPERCLASS_PROMPTS if level == "superdiagnostic" else {},
            )
        )
