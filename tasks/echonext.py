"""Echo-confirmed structural heart disease from the ECG on EchoNext (Elias & Finer, PhysioNet 2025).

The publisher's labels, from the echocardiogram paired with each ECG: ``echonext.lvef`` is LVEF <= 45 %
(``lvef_lte_45_flag``), ``echonext.shd`` the composite of the 11 findings (``shd_moderate_or_greater_flag``), and
``echonext.findings`` all 12 flags as one multi-label task. Records are split as published (``split = "official"``:
train / val / test by patient; ``no_split`` ECGs, whose patients are validation or test patients, are neither
trained nor scored on). Labels come from the store's ``echonext_metadata`` table, joined on ``ecg_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "echonext_metadata"
CITATION = ("Elias & Finer, EchoNext: a dataset for detecting echocardiogram-confirmed structural heart disease "
            "from ECGs, PhysioNet (2025); Hughes et al., EchoNext-Mini: a dataset and baseline AI model for detecting "
            "structural heart disease from electrocardiograms")
#: the flags in the publisher's order (11 findings, then the composite)
FLAGS = (
    "lvef_lte_45_flag", "lvwt_gte_13_flag", "aortic_stenosis_moderate_or_greater_flag",
    "aortic_regurgitation_moderate_or_greater_flag", "mitral_regurgitation_moderate_or_greater_flag",
    "tricuspid_regurgitation_moderate_or_greater_flag", "pulmonary_regurgitation_moderate_or_greater_flag",
    "rv_systolic_dysfunction_moderate_or_greater_flag", "pericardial_effusion_moderate_large_flag",
    "pasp_gte_45_flag", "tr_max_gte_32_flag", "shd_moderate_or_greater_flag",
)


def flag_labels(source: TaskSource, *, flags: list[str]) -> pd.DataFrame:
    """The publisher's 0/1 ``flags`` per record (indexed by record id = ``ecg_key``); a record whose flags are all
    missing is left out, a missing flag of a multi-label row stays missing (NaN)."""
    import pandas as pd

    from stence_bench_tasks._clinical import key_strings, parse_numbers

    table = source.table(TABLE, ["ecg_key", *flags])
    frame = pd.DataFrame({f: parse_numbers(table[f], what=f"dataset {source.name!r}: table {TABLE!r} column {f!r}")
                          for f in flags})
    bad = frame.notna() & ~frame.isin([0.0, 1.0])
    if bad.any().any():
        column = frame.columns[bad.any()][0]
        raise TaskDataError(f"dataset {source.name!r}: table {TABLE!r} column {column!r}: "
                            f"{frame.loc[bad[column], column].iloc[0]!r} is not a 0/1 flag")
    frame.index = pd.Index(key_strings(table["ecg_key"]).to_numpy(), name="record_id")
    known = set(source.records["record_id"].astype(str))
    frame = frame[frame.index.isin(known)].dropna(how="all")
    if frame.index.duplicated().any():
        raise TaskDataError(f"dataset {source.name!r}: table {TABLE!r}: ecg_key {frame.index[frame.index.duplicated()][0]!r} "
                            "appears twice")
    return frame.sort_index()


@hookimpl
def register_tasks(register):
    common = {"dataset": "echonext", "split": "official", "metric": "auroc", "card": "stence_bench_tasks:echonext.md",
              "citation": CITATION, "version": "1", "labels": "stence_bench_tasks.echonext:flag_labels"}
    register(TaskSpec(
        name="echonext.lvef", description="LVEF <= 45 % on the paired echo (EchoNext's lvef_lte_45_flag; binary)",
        task_kind="binary", options={"flags": ["lvef_lte_45_flag"]},
        source_columns=(f"{TABLE}.ecg_key", f"{TABLE}.lvef_lte_45_flag"), **common,
    ))
    register(TaskSpec(
        name="echonext.shd",
        description="structural heart disease, the composite of EchoNext's 11 echo findings (binary)",
        task_kind="binary", options={"flags": ["shd_moderate_or_greater_flag"]},
        source_columns=(f"{TABLE}.ecg_key", f"{TABLE}.shd_moderate_or_greater_flag"), **common,
    ))
    register(TaskSpec(
        name="echonext.findings",
        description="EchoNext's 11 echo findings and their composite (12 flags; multi-label, macro AUROC)",
        task_kind="multilabel", options={"flags": list(FLAGS)},
        source_columns=(f"{TABLE}.ecg_key", *(f"{TABLE}.{f}" for f in FLAGS)), **common,
    ))
