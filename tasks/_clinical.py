"""What the clinical task families share: reading a source's records and tables, and the nearest-in-time join.

Times in the source are strings (ISO 8601, with or without ``T``, seconds fractions, an offset, or just a date);
they are read to UTC here, with both sides at one resolution, and then joined by
:func:`stence_bench.data.tables.join_labels` (never a time join of our own). A value that cannot be read is a
:class:`~stence_bench.task_data.TaskDataError` naming the table, the column and the value, never a silent drop.

Imports pandas only inside functions: the family modules that register tasks import this module.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

from stence_bench.task_data import TaskDataError, TaskSource

if TYPE_CHECKING:
    import pandas as pd

#: The column of every clinical table that names the patient (MIMIC's ``subject_id``).
PATIENT_COLUMN = "subject_id"
RECORD_COLUMNS = ("record_id", "patient_id", "time")
#: Comparisons a threshold task may use, by the word in its options.
COMPARISONS: dict[str, tuple[str, Callable[[object, object], object]]] = {
    "ge": (">=", operator.ge), "gt": (">", operator.gt), "le": ("<=", operator.le), "lt": ("<", operator.lt),
}


def check_window(within: str | None) -> str | None:
    """``within`` as given, once checked to be a pandas time span (``"4h"``, ``"14D"``)."""
    import pandas as pd

    if within is None:
        return None
    try:
        span = pd.Timedelta(within)
    except (ValueError, TypeError):
        raise ValueError(f"within: cannot read {within!r} as a time span (such as '4h' or '14D')") from None
    if span <= pd.Timedelta(0):
        raise ValueError(f"within: {within!r} is not a positive time span")
    return within


def parse_times(values: pd.Series, *, what: str) -> pd.Series:
    """Times read to UTC (microseconds); blank or missing ones are NaT, an unreadable one is an error."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = pd.to_datetime(values, utc=True)
    else:
        text = values.astype("string").str.strip()
        blank = text.isna() | (text == "")
        out = pd.to_datetime(text.where(~blank), format="ISO8601", errors="coerce", utc=True)
        bad = out.isna() & ~blank
        if bad.any():  # not ISO 8601: let pandas infer each one (``01/02/2150 10:00``)
            retry = pd.to_datetime(text[bad], format="mixed", errors="coerce", utc=True)
            out = out.astype("datetime64[us, UTC]")
            out.loc[bad] = retry.astype("datetime64[us, UTC]")
            still = out.isna() & ~blank
            if still.any():
                raise TaskDataError(f"{what}: cannot read {str(text[still].iloc[0])!r} as a time "
                                    f"({int(still.sum())} value(s) unreadable)")
    return out.astype("datetime64[us, UTC]")


def parse_numbers(values: pd.Series, *, what: str) -> pd.Series:
    """Numbers as float; blank or missing ones are NaN, text that is not a number is an error."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    text = values.astype("string").str.strip()
    bad = numbers.isna() & text.notna() & (text != "") & ~text.str.lower().isin(["nan", "na", "none", "null"])
    if bad.any():
        raise TaskDataError(f"{what}: cannot read {str(text[bad].iloc[0])!r} as a number "
                            f"({int(bad.sum())} value(s) unreadable)")
    return numbers


def key_strings(values: pd.Series) -> pd.Series:
    """Patient ids as text: ``10000001``, whether the CSV gave ``10000001``, ``10000001.0`` or ``"10000001"``."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna()
        if (whole == whole.round()).all():
            return values.astype("Int64").astype("string")
    return values.astype("string").str.strip()


def records(source: TaskSource, *, timed: bool) -> pd.DataFrame:
    """The source's records: ``record_id`` and ``patient_id`` as text and, when ``timed``, ``time`` read to UTC."""
    frame = source.records
    needed = RECORD_COLUMNS if timed else RECORD_COLUMNS[:2]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TaskDataError(f"dataset {source.name!r}: its records lack column(s) {', '.join(missing)} "
                            f"(has: {', '.join(map(str, frame.columns))})")
    out = frame[list(needed)].copy()
    out["record_id"] = out["record_id"].astype("string")
    patient = key_strings(out["patient_id"])
    out["patient_id"] = patient.mask(patient.fillna("") == "")
    out = out.dropna(subset=["patient_id"])  # a record without a patient has no patient's label
    if timed:
        out["time"] = parse_times(out["time"], what=f"dataset {source.name!r}: records column 'time'")
    return out


def label_table(source: TaskSource, name: str, *, values: list[str], time_column: str | None = None,
                key_column: str = PATIENT_COLUMN, text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Table ``name`` checked to have its key, time and value columns, values read as numbers (except the
    ``text`` columns), times to UTC; rows without a patient, a time or a number are left out."""
    columns = [key_column, *([time_column] if time_column else []), *values]
    table = source.table(name, columns)[columns].copy()
    where = f"dataset {source.name!r}: table {name!r} column"
    table[key_column] = key_strings(table[key_column])
    for column in values:
        if column not in text:
            table[column] = parse_numbers(table[column], what=f"{where} {column!r}")
    if time_column:
        table[time_column] = parse_times(table[time_column], what=f"{where} {time_column!r}")
    numbers = [c for c in values if c not in text]
    return table.dropna(subset=[key_column, *([time_column] if time_column else []), *numbers])


def nearest(source: TaskSource, table: pd.DataFrame, *, columns: list[str], time_column: str, within: str | None,
            direction: str = "nearest", key_column: str = PATIENT_COLUMN) -> pd.DataFrame:
    """Each record's label row from ``table``: the patient's row nearest in time to the ECG (or the latest before,
    or the first after: ``direction``) within ``within``; records with none are left out. Indexed by record_id."""
    from stence_bench.data.tables import join_labels

    if direction not in ("nearest", "backward", "forward"):
        raise ValueError(f"direction: {direction!r} is not one of nearest, backward, forward")
    manifest = records(source, timed=True)
    joined = join_labels(manifest, table, key="patient", key_column=key_column, columns=columns,
                         time_column=time_column, within=check_window(within), direction=direction)  # type: ignore[arg-type]
    return joined.set_index("record_id")[columns]


def per_patient(source: TaskSource, table: pd.DataFrame, *, columns: list[str],
                key_column: str = PATIENT_COLUMN) -> pd.DataFrame:
    """Every record of a patient gets the patient's row of ``table`` (one row per patient). Indexed by record_id."""
    from stence_bench.data.tables import join_labels

    manifest = records(source, timed=False)
    joined = join_labels(manifest, table, key="patient", key_column=key_column, columns=columns)
    return joined.set_index("record_id")[columns]


def threshold(values: pd.Series, *, op: str, at: float, column: str) -> pd.DataFrame:
    """One 0/1 float column: ``values <op> at``; records without a value are left out."""
    if op not in COMPARISONS:
        raise ValueError(f"op: {op!r} is not one of {', '.join(COMPARISONS)}")
    values = values.dropna()
    frame = COMPARISONS[op][1](values, float(at)).astype("float64").to_frame(column)  # type: ignore[union-attr]
    frame.index.name = "record_id"
    return frame.sort_index()


def values_frame(values: pd.Series, column: str) -> pd.DataFrame:
    """One column of values (a regression target); records without a value are left out."""
    frame = values.dropna().astype("float64").to_frame(column)
    frame.index.name = "record_id"
    return frame.sort_index()


def column_name(stem: str, op: str, at: float) -> str:
    """``lvef_le_35``, ``potassium_ge_5.5``: a binary task's one column."""
    return f"{stem}_{op}_{float(at):g}"
