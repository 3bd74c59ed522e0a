"""Serum potassium from the ECG (Galloway et al., JAMA Cardiol 2019): the draw nearest the ECG.

Each ECG takes its patient's potassium drawn nearest in time within ``within`` (default 4 hours, as Galloway et
al. paired ECGs with potassium); an ECG without one has no label. ``potassium.5.5`` and ``potassium.6.0`` are
K+ >= 5.5 / 6.0 mmol/L (hyperkalaemia; moderate-to-severe), ``potassium.low`` K+ < 3.5 mmol/L (hypokalaemia).
Reads table ``labs`` (``subject_id``, ``charttime``, ``potassium``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl

from ._clinical import column_name, label_table, nearest, threshold

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "labs"
WITHIN = "4h"
SOURCE_COLUMNS = ("labs.subject_id", "labs.charttime", "labs.potassium")
CITATION = ("Galloway et al., Development and validation of a deep-learning model to screen for hyperkalemia from "
            "the electrocardiogram, JAMA Cardiol 4(5), 428-436 (2019)")
#: task name -> (comparison, threshold in mmol/L, description)
TASKS = {
    "potassium.5.5": ("ge", 5.5, "K+ >= 5.5 mmol/L (hyperkalaemia, Galloway et al.'s primary threshold)"),
    "potassium.6.0": ("ge", 6.0, "K+ >= 6.0 mmol/L (moderate-to-severe hyperkalaemia)"),
    "potassium.low": ("lt", 3.5, "K+ < 3.5 mmol/L (hypokalaemia)"),
}


def potassium_values(source: TaskSource, *, within: str | None = WITHIN, direction: str = "nearest",
                     time_column: str = "charttime", value_column: str = "potassium") -> pd.Series:
    """Each record's potassium (mmol/L) drawn nearest the ECG within ``within``; records without one left out."""
    table = label_table(source, TABLE, values=[value_column], time_column=time_column)
    return nearest(source, table, columns=[value_column], time_column=time_column, within=within,
                   direction=direction)[value_column]


def potassium_labels(source: TaskSource, *, op: str, threshold_mmol: float, within: str | None = WITHIN,
                     direction: str = "nearest", time_column: str = "charttime",
                     value_column: str = "potassium") -> pd.DataFrame:
    """One column ``potassium_<op>_<threshold_mmol>``: 1.0 when K+ ``op`` (ge, gt, le, lt) ``threshold_mmol``."""
    values = potassium_values(source, within=within, direction=direction, time_column=time_column,
                              value_column=value_column)
    return threshold(values, op=op, at=threshold_mmol, column=column_name("potassium", op, threshold_mmol))


@hookimpl
def register_tasks(register):
    for name, (op, mmol, what) in TASKS.items():
        register(TaskSpec(
            name=name,
            description=f"{what} on the draw nearest the ECG within 4 h (binary)",
            dataset="mimic-iv-ecg", task_kind="binary", labels="stence_bench_tasks.potassium:potassium_labels",
            options={"op": op, "threshold_mmol": mmol, "within": WITHIN}, metric="auroc", split="patient",
            source_columns=SOURCE_COLUMNS, card="stence_bench_tasks:potassium.md", citation=CITATION, version="1",
        ))
