"""Recipes: the clinical tasks' label tables built from public sources' own tables, not by hand.

- :func:`potassium_table`: MIMIC-IV ``hosp/labevents.csv.gz`` -> table ``labs`` (``subject_id``, ``charttime``,
  ``potassium`` in mmol/L) for the ``potassium.*`` tasks, which pair each ECG with the draw nearest in time within
  their ``within`` option.
- :func:`lvef_table`: MIMIC-IV-ECHO ``structured_measurement.csv`` -> table ``echo`` (``subject_id``,
  ``echo_time``, ``lvef`` in %) for the ``lvef.*`` tasks.

MIMIC-IV's modules share ``subject_id`` and one date shift per patient, so these tables join MIMIC-IV-ECG's records
(``subject_id``, ``ecg_time``) by patient and time. The tables are large (labevents has over 100 million rows):
they are read in chunks, only the columns needed, and filtered as they are read. Each written table gets a
``NAME.recipe.json`` beside it saying what it was built from and with which options.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import StenceBenchError
from ..files import write_atomic

#: ``hosp/d_labitems``: 50971 = Potassium | Blood | Chemistry, the serum potassium of the central laboratory (the
#: item mimic-code's ``chemistry`` concept uses). Others a user may add with ``--itemid``: 50822 (Potassium, Whole
#: Blood | Blood Gas) and 52566 (Potassium, point of care), which mimic-code keeps out of its chemistry table.
SERUM_POTASSIUM_ITEMIDS = (50971,)
#: mimic-code's plausibility bounds for potassium (``valuenum > 0`` and ``<= 30``): values outside are errors
POTASSIUM_RANGE = (0.0, 30.0)
LABEVENTS_COLUMNS = ("subject_id", "itemid", "charttime", "valuenum")
#: MIMIC-IV-ECHO 1.0's structured measurements, one row per measurement of a study (long format)
MEASUREMENT_COLUMNS = ("subject_id", "measurement_id", "measurement_datetime", "measurement", "result")
#: LVEF names of the two reporting systems in ``structured_measurement.csv``, in order of preference when a study
#: has several: the cardiologist's reported LVEF, then the biplane (Simpson) estimate
LVEF_MEASUREMENTS = ("lvef", "biplane_lvef")
LVEF_RANGE = (0.0, 100.0)
CHUNK_ROWS = 1_000_000


def _header(path: Path) -> list[str]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    except FileNotFoundError:
        raise StenceBenchError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise StenceBenchError(f"{path}: not a readable CSV: {exc}") from None


def _chunks(path: Path, columns: Sequence[str], optional: Sequence[str] = (),
            chunk_rows: int = CHUNK_ROWS) -> tuple[list[str], Any]:
    header = _header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise StenceBenchError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(header)})")
    use = [*columns, *(c for c in optional if c in header)]
    return use, pd.read_csv(path, usecols=use, dtype=str, keep_default_na=False, chunksize=chunk_rows)


def _rows_where(path: Path, columns: Sequence[str], column: str, values: Iterable[str], *,
                optional: Sequence[str] = (), chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """The rows of a large CSV whose ``column`` (stripped) is one of ``values``, read in chunks of ``chunk_rows``
    (only those rows are ever held), as text; ``columns`` must be there, ``optional`` ones are kept where they are."""
    _, chunks = _chunks(path, columns, optional=optional, chunk_rows=chunk_rows)
    wanted = set(values)
    parts = [chunk for chunk in (c[c[column].str.strip().isin(wanted)] for c in chunks) if len(chunk)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*columns])


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.str.strip().replace("", None), errors="coerce")


def potassium_table(labevents: str | os.PathLike[str], *, itemids: Sequence[int] = SERUM_POTASSIUM_ITEMIDS,
                    chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """Serum potassium draws from MIMIC-IV ``labevents`` (``.csv`` or ``.csv.gz``): one row per draw of one of
    ``itemids`` with a numeric ``valuenum`` inside mimic-code's plausible range (0, 30] mmol/L, as ``subject_id``,
    ``charttime``, ``potassium``, with ``itemid`` and, where the file has them, ``labevent_id`` and ``valueuom``.
    Sorted by patient and time. A draw with no number (``valuenum`` empty: "hemolyzed", "ERROR") is no row."""
    path = Path(labevents)
    wanted = {str(int(i)) for i in itemids}
    if not wanted:
        raise StenceBenchError("potassium: give at least one itemid")
    frame = _rows_where(path, LABEVENTS_COLUMNS, "itemid", wanted, optional=("labevent_id", "valueuom"),
                        chunk_rows=chunk_rows)
    value = _numbers(frame["valuenum"])
    low, high = POTASSIUM_RANGE
    keep = value.notna() & (value > low) & (value <= high)
    out = pd.DataFrame({"subject_id": frame["subject_id"].str.strip(), "charttime": frame["charttime"].str.strip(),
                        "potassium": value, "itemid": frame["itemid"].str.strip().astype(int)})
    for column in ("labevent_id", "valueuom"):
        if column in frame.columns:
            out[column] = frame[column].str.strip()
    out = out[keep & (out["charttime"] != "") & (out["subject_id"] != "")]
    return out.sort_values(["subject_id", "charttime"], kind="stable").reset_index(drop=True)


def lvef_table(structured_measurement: str | os.PathLike[str], *,
               measurements: Sequence[str] = LVEF_MEASUREMENTS, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """One LVEF per echo study from MIMIC-IV-ECHO ``structured_measurement.csv`` (``.csv`` or ``.csv.gz``): the
    study's (``measurement_id``) numeric ``result`` of the first of ``measurements`` it has, inside [0, 100] %, as
    ``subject_id``, ``echo_time`` (``measurement_datetime``), ``lvef``, with ``measurement_id`` and the
    ``measurement`` it came from. A result that is not a number ("Normal", "55-60") is no value."""
    path = Path(structured_measurement)
    names = [str(m) for m in measurements]
    if not names:
        raise StenceBenchError("lvef: give at least one measurement name")
    frame = _rows_where(path, MEASUREMENT_COLUMNS, "measurement", names, chunk_rows=chunk_rows)
    value = _numbers(frame["result"].str.rstrip("%"))
    low, high = LVEF_RANGE
    frame = frame.assign(lvef=value, rank=frame["measurement"].str.strip().map({n: i for i, n in enumerate(names)}))
    frame = frame[value.notna() & (value >= low) & (value <= high) & (frame["measurement_datetime"].str.strip() != "")]
    frame = frame.sort_values(["measurement_id", "rank"], kind="stable").drop_duplicates("measurement_id")
    out = pd.DataFrame({"subject_id": frame["subject_id"].str.strip(),
                        "echo_time": frame["measurement_datetime"].str.strip(), "lvef": frame["lvef"],
                        "measurement_id": frame["measurement_id"].str.strip(),
                        "measurement": frame["measurement"].str.strip()})
    return out.sort_values(["subject_id", "echo_time"], kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, out: str | os.PathLike[str], name: str, about: dict[str, Any]) -> Path:
    """``OUT/NAME.csv`` (atomically) and ``OUT/NAME.recipe.json`` (what it was built from, rows, patients)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.csv"
    write_atomic(target, table.to_csv(index=False))
    summary = {**about, "rows": len(table), "patients": int(table["subject_id"].nunique())}
    write_atomic(folder / f"{name}.recipe.json", json.dumps(summary, indent=2, default=str))
    return target
