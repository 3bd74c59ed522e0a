"""PTB-XL label sets, aggregated as the PTB-XL benchmark does (Strodthoff et al., IEEE JBHI 2021).

A record's labels at a level are the statements of its ``scp_codes`` (any likelihood) mapped through
``scp_statements.csv``: ``all`` keeps every statement, ``diagnostic`` the diagnostic ones, ``subdiagnostic`` and
``superdiagnostic`` their ``diagnostic_subclass`` / ``diagnostic_class``, ``form`` and ``rhythm`` the statements
flagged so. Records with no label at a level are dropped for that level. The class vocabulary of a level is
fixed by the statement table (71 / 44 / 23 / 5 / 19 / 12), not by which classes a data subset happens to hold.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Literal

from stence_bench import TaskSpec, hookimpl

if TYPE_CHECKING:
    import pandas as pd

Level = Literal["all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"]
LEVELS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
_FLAG = {"diagnostic": "diagnostic", "subdiagnostic": "diagnostic", "superdiagnostic": "diagnostic",
         "form": "form", "rhythm": "rhythm"}
_TARGET = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}
STATEMENT_COLUMNS = ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
RECORD_COLUMNS = ("scp_codes", "strat_fold", "patient_id")


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
    """``scp_codes`` as stored in ``ptbxl_database.csv`` (a Python dict literal) -> dict."""
    if isinstance(value, dict):
        return value
    parsed = ast.literal_eval(str(value))
    if not isinstance(parsed, dict):
        raise ValueError(f"scp_codes is not a dict: {value!r}")
    return parsed


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


@hookimpl
def register_tasks(register):
    for level in LEVELS:
        register(
            TaskSpec(
                name=f"ptbxl.{level}",
                description=f"PTB-XL {level} statements, multi-label (benchmark aggregation)",
                dataset="ptbxl",
                task_kind="multilabel",
                labels="stence_bench_tasks.ptbxl:label_sets",
                options={"level": level},
                metric="auroc",
                split="strat_fold",
                source_columns=RECORD_COLUMNS,
                card="stence_bench_tasks:ptbxl.md",
                citation="Wagner et al., Sci Data 2020 (PTB-XL); Strodthoff et al., IEEE JBHI 2021 (benchmark)",
            )
        )
