"""Left ventricular ejection fraction from the ECG (Attia et al., Nat Med 2019): the echo nearest the ECG.

Each ECG takes the LVEF of its patient's echocardiogram nearest in time within ``within`` (default 14 days:
Attia et al. paired each ECG with an echo within 2 weeks); an ECG without one has no label. ``lvef.35`` /
``lvef.40`` / ``lvef.50`` are LVEF <= 35 / 40 / 50 %, ``lvef.regression`` the value itself. Reads table ``echo``
(``subject_id``, ``echo_time``, ``lvef``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl

from ._clinical import column_name, label_table, nearest, threshold, values_frame

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "echo"
THRESHOLDS = (35, 40, 50)
WITHIN = "14D"
SOURCE_COLUMNS = ("echo.subject_id", "echo.echo_time", "echo.lvef")
CITATION = ("Attia et al., Screening for cardiac contractile dysfunction using an artificial intelligence-enabled "
            "electrocardiogram, Nat Med 25, 70-74 (2019)")


def lvef_values(source: TaskSource, *, within: str | None = WITHIN, direction: str = "nearest",
                time_column: str = "echo_time", value_column: str = "lvef") -> pd.Series:
    """Each record's LVEF (%) from the echo nearest the ECG within ``within``; records without one left out."""
    table = label_table(source, TABLE, values=[value_column], time_column=time_column)
    return nearest(source, table, columns=[value_column], time_column=time_column, within=within,
                   direction=direction)[value_column]


def lvef_labels(source: TaskSource, *, threshold_pct: float, within: str | None = WITHIN, direction: str = "nearest",
                time_column: str = "echo_time", value_column: str = "lvef") -> pd.DataFrame:
    """One column ``lvef_le_<threshold_pct>``: 1.0 when LVEF <= ``threshold_pct``."""
    values = lvef_values(source, within=within, direction=direction, time_column=time_column,
                         value_column=value_column)
    return threshold(values, op="le", at=threshold_pct, column=column_name("lvef", "le", threshold_pct))


def lvef_regression(source: TaskSource, *, within: str | None = WITHIN, direction: str = "nearest",
                    time_column: str = "echo_time", value_column: str = "lvef") -> pd.DataFrame:
    """One column ``lvef``: the LVEF (%) itself."""
    values = lvef_values(source, within=within, direction=direction, time_column=time_column,
                         value_column=value_column)
    return values_frame(values, "lvef")


@hookimpl
def register_tasks(register):
    common = {"dataset": "mimic-iv-ecg", "split": "patient", "source_columns": SOURCE_COLUMNS,
              "card": "stence_bench_tasks:lvef.md", "citation": CITATION, "version": "1"}
    for pct in THRESHOLDS:
        register(TaskSpec(
            name=f"lvef.{pct}",
            description=f"LVEF <= {pct} % on the echo nearest the ECG within 14 days (binary)",
            task_kind="binary", labels="stence_bench_tasks.lvef:lvef_labels",
            options={"threshold_pct": pct, "within": WITHIN}, metric="auroc", **common,
        ))
    register(TaskSpec(
        name="lvef.regression",
        description="LVEF (%) on the echo nearest the ECG within 14 days (regression)",
        task_kind="regression", labels="stence_bench_tasks.lvef:lvef_regression",
        options={"within": WITHIN}, metric="mae", **common,
    ))
