"""Mean pulmonary capillary wedge pressure from the ECG (Schlesinger et al. 2022; HFNet 2023; Jeong et al. 2023).

Each ECG takes its patient's catheter mPCWP measured nearest in time within ``within`` (default 24 hours: filling
pressures move within hours to days, with diuresis); an ECG without one has no label. ``pcwp.18`` is
mPCWP > 18 mmHg (HFNet's and Jeong et al.'s label), ``pcwp.15`` mPCWP > 15 mmHg (Schlesinger et al.'s),
``pcwp.regression`` the value itself. Reads table ``cath`` (``subject_id``, ``cath_time``, ``pcwp_mean``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl

from ._clinical import column_name, label_table, nearest, threshold, values_frame

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "cath"
THRESHOLDS = (15, 18)
WITHIN = "24h"
SOURCE_COLUMNS = ("cath.subject_id", "cath.cath_time", "cath.pcwp_mean")
CITATION = ("Jeong, Stultz and Ghassemi, Deep metric learning for the hemodynamics inference with electrocardiogram "
            "signals, MLHC 2023; Raghu et al. (HFNet), ECG-guided non-invasive estimation of pulmonary congestion "
            "in patients with heart failure, Sci Rep 13 (2023); Schlesinger et al., JACC Adv 1(1) (2022)")


def pcwp_values(source: TaskSource, *, within: str | None = WITHIN, direction: str = "nearest",
                time_column: str = "cath_time", value_column: str = "pcwp_mean") -> pd.Series:
    """Each record's mPCWP (mmHg) measured nearest the ECG within ``within``; records without one left out."""
    table = label_table(source, TABLE, values=[value_column], time_column=time_column)
    return nearest(source, table, columns=[value_column], time_column=time_column, within=within,
                   direction=direction)[value_column]


def pcwp_labels(source: TaskSource, *, threshold_mmhg: float, within: str | None = WITHIN,
                direction: str = "nearest", time_column: str = "cath_time",
                value_column: str = "pcwp_mean") -> pd.DataFrame:
    """One column ``pcwp_gt_<threshold_mmhg>``: 1.0 when mPCWP > ``threshold_mmhg``."""
    values = pcwp_values(source, within=within, direction=direction, time_column=time_column,
                         value_column=value_column)
    return threshold(values, op="gt", at=threshold_mmhg, column=column_name("pcwp", "gt", threshold_mmhg))


def pcwp_regression(source: TaskSource, *, within: str | None = WITHIN, direction: str = "nearest",
                    time_column: str = "cath_time", value_column: str = "pcwp_mean") -> pd.DataFrame:
    """One column ``pcwp_mean``: the mPCWP (mmHg) itself."""
    values = pcwp_values(source, within=within, direction=direction, time_column=time_column,
                         value_column=value_column)
    return values_frame(values, "pcwp_mean")


@hookimpl
def register_tasks(register):
    common = {"dataset": "mimic-iv-ecg", "split": "patient", "source_columns": SOURCE_COLUMNS,
              "card": "stence_bench_tasks:pcwp.md", "citation": CITATION, "version": "1"}
    for mmhg in THRESHOLDS:
        register(TaskSpec(
            name=f"pcwp.{mmhg}",
            description=f"mPCWP > {mmhg} mmHg at the catheterisation nearest the ECG within 24 h (binary)",
            task_kind="binary", labels="stence_bench_tasks.pcwp:pcwp_labels",
            options={"threshold_mmhg": mmhg, "within": WITHIN}, metric="auroc", **common,
        ))
    register(TaskSpec(
        name="pcwp.regression",
        description="mPCWP (mmHg) at the catheterisation nearest the ECG within 24 h (regression)",
        task_kind="regression", labels="stence_bench_tasks.pcwp:pcwp_regression",
        options={"within": WITHIN}, metric="mae", **common,
    ))
