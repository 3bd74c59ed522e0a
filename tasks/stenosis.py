"""Coronary stenosis from the ECG, labelled as StenCE does (Cenikj et al. 2026): the worst segment on angiography.

``stenosis.50`` / ``.70`` / ``.90``: the patient's maximum segment stenosis >= 50 / 70 / 90 % (70 % is StenCE's
default severity). ``stenosis.70.clear``: >= 70 % against <= 50 %, the intermediate band left out (option
``exclude_from_pct``, StenCE's ``severity = (50, 70)``). ``stenosis.vessels``: per artery (LAD, LCx, RCA) maximum >= 70 %, a left main lesion counting
for both LAD and LCx. Reads table ``stenosis`` (``subject_id``, ``segment``, ``stenosis_pct``, and ``vessel`` for
the per-artery task when the segment names are not the usual ones).

Without a time column in the table every ECG of a patient takes the patient's label (one angiography per
patient, as in StenCE's data). With one (``angio_time`` by default), rows sharing a patient and a time are one
angiogram, and each ECG takes the first angiogram after it within ``within`` (default 30 days;
``direction="nearest"`` or ``"backward"`` to pair otherwise): an ECG recorded after a revascularisation would
otherwise carry the stenosis that was treated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stence_bench import TaskSpec, hookimpl
from stence_bench.task_data import TaskDataError

from ._clinical import (
    PATIENT_COLUMN,
    column_name,
    label_table,
    nearest,
    per_patient,
    threshold,
)

if TYPE_CHECKING:
    import pandas as pd

    from stence_bench.task_data import TaskSource

TABLE = "stenosis"
THRESHOLDS = (50, 70, 90)
TIME_COLUMN = "angio_time"
WITHIN = "30D"
DIRECTION = "forward"
ARTERIES = ("LAD", "LCx", "RCA")
SOURCE_COLUMNS = ("stenosis.subject_id", "stenosis.segment", "stenosis.stenosis_pct")
CITATION = ("Cenikj et al., Cross-modal contrastive learning of ECG and angiography representations for severe "
            "stenosis classification (StenCE), arXiv:2606.02605 (2026)")
#: what a ``vessel`` value (case-insensitive) counts for
VESSEL_ARTERIES: dict[str, tuple[str, ...]] = {
    "lm": ("LAD", "LCx"), "lmca": ("LAD", "LCx"), "left main": ("LAD", "LCx"),
    "lad": ("LAD",), "lcx": ("LCx",), "cx": ("LCx",), "rca": ("RCA",),
}
#: the usual segment names (AHA / SYNTAX abbreviations, case-insensitive), for tables without a vessel column
SEGMENT_VESSEL: dict[str, str] = {
    **{s: "lm" for s in ("lm", "lmca")},
    **{s: "lad" for s in ("lad", "plad", "mlad", "dlad", "d1", "d2", "d3")},
    **{s: "lcx" for s in ("lcx", "cx", "plcx", "mlcx", "dlcx", "pcx", "dcx", "om", "om1", "om2", "om3", "lpl",
                          "lpda")},
    **{s: "rca" for s in ("rca", "prca", "mrca", "drca", "pda", "rpda", "plb", "rplb")},
}


def _angiograms(source: TaskSource, *, time_column: str | None, need_vessel: bool) -> tuple[pd.DataFrame, str | None]:
    """The stenosis rows (``vessel`` normalised when asked for) and the time column used, if the table has it."""
    raw = source.table(TABLE, [PATIENT_COLUMN, "segment", "stenosis_pct"])
    timed = time_column if time_column and time_column in raw.columns else None
    text = ["segment", *(["vessel"] if "vessel" in raw.columns else [])]
    table = label_table(source, TABLE, values=["stenosis_pct", *text], time_column=timed, text=tuple(text))
    if need_vessel:
        where = f"dataset {source.name!r}: table {TABLE!r}"
        if "vessel" in table.columns:
            vessel = table["vessel"].astype("string").str.strip().str.lower().fillna("")
            unknown = sorted(set(vessel) - set(VESSEL_ARTERIES))
            if unknown:
                raise TaskDataError(f"{where}: column 'vessel' has value(s) {', '.join(map(repr, unknown))}; "
                                    f"known: LM, LAD, LCx, RCA")
        else:
            vessel = table["segment"].astype("string").str.strip().str.lower().map(SEGMENT_VESSEL)
            unknown = sorted(set(table.loc[vessel.isna(), "segment"].astype(str)))
            if unknown:
                raise TaskDataError(f"{where}: segment(s) {', '.join(map(repr, unknown))} have no known artery; "
                                    f"give the table a 'vessel' column (LM, LAD, LCx or RCA)")
        table["vessel"] = vessel
    return table, timed


def _worst(table: pd.DataFrame, by: list[str], *, arteries: bool) -> pd.DataFrame:
    """Maximum stenosis per group: one column ``stenosis_pct``, or one per artery (0 where an artery has no row)."""
    import pandas as pd

    if not arteries:
        return table.groupby(by, as_index=False)["stenosis_pct"].max()
    columns = {}
    for artery in ARTERIES:
        counts = table["vessel"].map(lambda v, a=artery: a in VESSEL_ARTERIES[v])
        columns[artery] = table["stenosis_pct"].where(counts.astype(bool), 0.0)
    wide = pd.concat([table[by], pd.DataFrame(columns)], axis=1)
    return wide.groupby(by, as_index=False)[list(ARTERIES)].max()


def _labelled(source: TaskSource, *, arteries: bool, time_column: str | None, within: str | None,
              direction: str) -> pd.DataFrame:
    table, timed = _angiograms(source, time_column=time_column, need_vessel=arteries)
    columns = list(ARTERIES) if arteries else ["stenosis_pct"]
    if timed is None:
        return per_patient(source, _worst(table, [PATIENT_COLUMN], arteries=arteries), columns=columns)
    worst = _worst(table, [PATIENT_COLUMN, timed], arteries=arteries)
    return nearest(source, worst, columns=columns, time_column=timed, within=within, direction=direction)


def stenosis_labels(source: TaskSource, *, threshold_pct: float = 70, exclude_from_pct: float | None = None,
                    time_column: str | None = TIME_COLUMN, within: str | None = WITHIN,
                    direction: str = DIRECTION) -> pd.DataFrame:
    """One column ``stenosis_ge_<threshold_pct>``: 1.0 when the worst segment is >= ``threshold_pct`` %. With
    ``exclude_from_pct``, records whose worst segment lies strictly between it and ``threshold_pct`` (intermediate
    severity) have no label (StenCE's ``severity = (exclude_from_pct, threshold_pct)``)."""
    if exclude_from_pct is not None and not float(exclude_from_pct) < float(threshold_pct):
        raise ValueError(f"exclude_from_pct ({exclude_from_pct}) must be below threshold_pct ({threshold_pct})")
    worst = _labelled(source, arteries=False, time_column=time_column, within=within, direction=direction)
    values = worst["stenosis_pct"]
    if exclude_from_pct is not None:
        values = values[~((values > float(exclude_from_pct)) & (values < float(threshold_pct)))]
    return threshold(values, op="ge", at=threshold_pct, column=column_name("stenosis", "ge", threshold_pct))


def vessel_labels(source: TaskSource, *, threshold_pct: float = 70, time_column: str | None = TIME_COLUMN,
                  within: str | None = WITHIN, direction: str = DIRECTION) -> pd.DataFrame:
    """Columns LAD, LCx, RCA: 1.0 when the artery's worst segment (left main counting for LAD and LCx) is
    >= ``threshold_pct`` %."""
    worst = _labelled(source, arteries=True, time_column=time_column, within=within, direction=direction)
    out = (worst[list(ARTERIES)] >= float(threshold_pct)).astype("float64")
    out.index.name = "record_id"
    return out.sort_index()


@hookimpl
def register_tasks(register):
    common = {"dataset": "mimic-iv-ecg", "metric": "auroc", "split": "patient",
              "card": "stence_bench_tasks:stenosis.md", "citation": CITATION, "version": "1"}
    timing = {"time_column": TIME_COLUMN, "within": WITHIN, "direction": DIRECTION}
    for pct in THRESHOLDS:
        register(TaskSpec(
            name=f"stenosis.{pct}",
            description=f"worst coronary segment stenosis >= {pct} % on angiography, per patient (binary)",
            task_kind="binary", labels="stence_bench_tasks.stenosis:stenosis_labels",
            options={"threshold_pct": pct, **timing}, source_columns=SOURCE_COLUMNS, **common,
            prompts={"positive": "ST-T changes, consider ischemia; infarct", "negative": "normal ECG"},
        ))
    register(TaskSpec(
        name="stenosis.70.clear",
        description="worst coronary segment stenosis >= 70 % vs <= 50 %, the intermediate 50-70 % band left out "
        "(StenCE's severity = (50, 70)), per patient (binary)",
        task_kind="binary", labels="stence_bench_tasks.stenosis:stenosis_labels",
        options={"threshold_pct": 70, "exclude_from_pct": 50, **timing}, source_columns=SOURCE_COLUMNS, **common,
        prompts={"positive": "ST-T changes, consider ischemia; infarct", "negative": "normal ECG"},
    ))
    register(TaskSpec(
        name="stenosis.vessels",
        description="per artery (LAD, LCx, RCA; left main counts for LAD and LCx) stenosis >= 70 % (multi-label)",
        task_kind="multilabel", labels="stence_bench_tasks.stenosis:vessel_labels",
        options={"threshold_pct": 70, **timing}, source_columns=SOURCE_COLUMNS, **common,
    ))
