"""Small generated samples of public datasets in their exact published file layout (names, shapes, dtypes, column
names written down from the publishers' documentation and code), for the layouts' and recipes' tests.

Nothing here is real data: the values are random, the layouts are the publishers'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# -- EchoNext (PhysioNet, 1.1.x) ------------------------------------------------------------------------------

ECHONEXT_FLAGS = (
    "lvef_lte_45_flag", "lvwt_gte_13_flag", "aortic_stenosis_moderate_or_greater_flag",
    "aortic_regurgitation_moderate_or_greater_flag", "mitral_regurgitation_moderate_or_greater_flag",
    "tricuspid_regurgitation_moderate_or_greater_flag", "pulmonary_regurgitation_moderate_or_greater_flag",
    "rv_systolic_dysfunction_moderate_or_greater_flag", "pericardial_effusion_moderate_large_flag",
    "pasp_gte_45_flag", "tr_max_gte_32_flag", "shd_moderate_or_greater_flag",
)
#: the metadata's columns in the publisher's order: ids, demographics, split, the 12 flags
ECHONEXT_COLUMNS = ("ecg_key", "patient_key", "age_at_ecg", "sex", "acquisition_year", "location_setting",
                    "race_ethnicity", "most_recent_ecg", "split", *ECHONEXT_FLAGS)


def echonext_sample(folder: Path, *, patients: dict[str, int] | None = None, no_split: int = 4, seed: int = 0,
                    with_no_split_file: bool = True) -> pd.DataFrame:
    """``echonext_metadata_100k.csv`` and ``EchoNext_{split}_waveforms.npy`` ([N, 1, 2500, 12] float64, z-scored
    values) for ``patients[split]`` patients of two ECGs each, and ``no_split`` ECGs of validation/test patients.
    Returns the metadata (row order = file order: a split's rows in the order of its array)."""
    patients = patients or {"train": 10, "val": 4, "test": 4}
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    ecg_key, patient_key = 500_000, 9_000
    held_out: list[int] = []
    for split, n in patients.items():
        for _ in range(n):
            patient_key += 7
            if split != "train":
                held_out.append(patient_key)
            for _ in range(2):
                ecg_key += 13
                rows.append({"ecg_key": ecg_key, "patient_key": patient_key, "split": split})
    for i in range(no_split):
        ecg_key += 13
        rows.append({"ecg_key": ecg_key, "patient_key": held_out[i % len(held_out)], "split": "no_split"})
    table = pd.DataFrame(rows)
    n = len(table)
    table["age_at_ecg"] = rng.integers(20, 90, n)
    table["sex"] = rng.choice(["Male", "Female"], n)
    table["acquisition_year"] = rng.integers(2008, 2022, n)
    table["location_setting"] = rng.choice(["inpatient", "outpatient", "emergency"], n)
    table["race_ethnicity"] = rng.choice(["white", "black", "hispanic", "asian", "other"], n)
    table["most_recent_ecg"] = rng.integers(0, 2, n)
    flags = rng.integers(0, 2, (n, len(ECHONEXT_FLAGS))).astype(float)
    flags[:, -1] = flags[:, :-1].max(axis=1)  # the composite is any finding
    for j, flag in enumerate(ECHONEXT_FLAGS):
        table[flag] = flags[:, j]
    # interleave the splits' rows in the CSV, as the publisher's file does; each split's rows keep their order
    order = np.argsort(rng.random(n), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table = table[list(ECHONEXT_COLUMNS)]
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "echonext_metadata_100k.csv", index=False)
    for split in ("train", "val", "test", "no_split"):
        count = int((table["split"] == split).sum())
        if not count or (split == "no_split" and not with_no_split_file):
            continue
        waves = rng.standard_normal((count, 1, 2500, 12))  # float64, z-scored as published
        np.save(folder / f"EchoNext_{split}_waveforms.npy", waves)
    return table


# -- MIMIC-IV (hosp/labevents, MIMIC-IV-ECHO structured measurements) --------------------------------------------

#: hosp/labevents.csv.gz's columns (MIMIC-IV 2.2 and later; 1.0 lacks order_provider_id)
LABEVENTS_COLUMNS = ("labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id",
                     "charttime", "storetime", "value", "valuenum", "valueuom", "ref_range_lower", "ref_range_upper",
                     "flag", "priority", "comments")
#: MIMIC-IV-ECHO 1.0's structured_measurement.csv (long format: one row per measurement of a study)
STRUCTURED_MEASUREMENT_COLUMNS = ("subject_id", "measurement_id", "measurement_datetime", "test_type", "measurement",
                                  "measurement_description", "result", "unit")


def labevents_rows(rows: list[tuple[int, int, str, str]]) -> pd.DataFrame:
    """``(subject_id, itemid, charttime, value)`` -> labevents rows with every published column (``valuenum``
    empty when ``value`` is not a number, as MIMIC-IV has it)."""
    out = []
    for i, (subject, itemid, charttime, value) in enumerate(rows, start=1):
        try:
            number: object = float(value)
        except ValueError:
            number = ""
        out.append({"labevent_id": i, "subject_id": subject, "hadm_id": "", "specimen_id": 90_000 + i,
                    "itemid": itemid, "order_provider_id": "", "charttime": charttime, "storetime": charttime,
                    "value": value, "valuenum": number, "valueuom": "mEq/L", "ref_range_lower": 3.3,
                    "ref_range_upper": 5.1, "flag": "", "priority": "STAT", "comments": ""})
    return pd.DataFrame(out, columns=list(LABEVENTS_COLUMNS))


def measurement_rows(rows: list[tuple[int, int, str, str, str]]) -> pd.DataFrame:
    """``(subject_id, measurement_id, measurement_datetime, measurement, result)`` -> structured_measurement rows."""
    return pd.DataFrame([{"subject_id": s, "measurement_id": m, "measurement_datetime": t, "test_type": "TTE",
                          "measurement": name, "measurement_description": name.replace("_", " "), "result": result,
                          "unit": "%" if "ef" in name else "cm"} for s, m, t, name, result in rows],
                        columns=list(STRUCTURED_MEASUREMENT_COLUMNS))


# -- CODE-15% (Zenodo 4916206) -------------------------------------------------------------------------------------

#: exams.csv's columns as published
CODE15_COLUMNS = ("exam_id", "age", "is_male", "nn_predicted_age", "1dAVb", "RBBB", "LBBB", "SB", "ST", "AF",
                  "patient_id", "death", "timey", "normal_ecg", "trace_file")


def code15_sample(folder: Path, *, shards: int = 2, per_shard: int = 8, seed: int = 0,
                  filler_rows: int = 1) -> pd.DataFrame:
    """``exams.csv`` and ``exams_part{i}.hdf5`` (datasets ``exam_id`` [N] int64 and ``tracings`` [N, 4096, 12]
    float32, 400 Hz): every third exam is 7 s (2800 samples) zero-padded (centred) to 4096, the others 10 s (4000
    samples, 48 zeros each side); each shard ends with ``filler_rows`` rows of exam_id 0 and zeros."""
    import h5py

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    exam = 1_000_000
    for part in range(shards):
        ids, tracings = [], []
        for i in range(per_shard):
            exam += 17
            n = 2800 if i % 3 == 0 else 4000
            pad = (4096 - n) // 2
            x = np.zeros((4096, 12), np.float32)
            x[pad : pad + n] = rng.normal(0, 0.3, (n, 12)).astype(np.float32)
            ids.append(exam)
            tracings.append(x)
            labels = rng.random(6) < 0.4
            first = i % 2 == 0
            rows.append({"exam_id": exam, "age": int(rng.integers(18, 90)), "is_male": bool(rng.random() < 0.5),
                         "nn_predicted_age": float(rng.uniform(20, 90)),
                         **{c: bool(v) for c, v in zip(("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"), labels)},
                         "patient_id": 500 + (len(rows) // 2), "death": (bool(rng.random() < 0.1) if first else ""),
                         "timey": (float(rng.uniform(0, 8)) if first else ""), "normal_ecg": not labels.any(),
                         "trace_file": f"exams_part{part}.hdf5"})
        for _ in range(filler_rows):
            ids.append(0)
            tracings.append(np.zeros((4096, 12), np.float32))
        with h5py.File(folder / f"exams_part{part}.hdf5", "w") as fh:
            fh.create_dataset("exam_id", data=np.array(ids, dtype=np.int64))
            fh.create_dataset("tracings", data=np.stack(tracings))
    table = pd.DataFrame(rows, columns=list(CODE15_COLUMNS))
    table.to_csv(folder / "exams.csv", index=False)
    return table


# -- SPH (Shandong Provincial Hospital; figshare 10.6084/m9.figshare.c.5779802) ---------------------------------------

#: metadata.csv's columns as published
SPH_COLUMNS = ("ECG_ID", "AHA_Code", "Patient_ID", "Age", "Sex", "N", "Date")
#: a few rows of code.csv (Code, Description): primary statements and modifiers (200-499) of AHA/ACC/HRS
SPH_CODES = (("1", "Normal ECG"), ("22", "Sinus bradycardia"), ("23", "Sinus arrhythmia"),
             ("50", "Atrial fibrillation"), ("104", "Right bundle-branch block"), ("147", "ST deviation"),
             ("310", "Possible"), ("346", "In a bigeminal pattern"))


def sph_sample(folder: Path, aha_codes: list[str], *, patients: list[str] | None = None, seed: int = 0,
               seconds: list[int] | None = None) -> pd.DataFrame:
    """``metadata.csv``, ``code.csv`` and ``records/{ECG_ID}.h5`` (one dataset ``ecg`` [12, N] float32 mV, 500 Hz)
    for one record per entry of ``aha_codes``; ``patients[i]`` is record i's Patient_ID (default: its own)."""
    import h5py

    rng = np.random.default_rng(seed)
    (folder / "records").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, codes in enumerate(aha_codes):
        ecg_id = f"A{i + 1:05d}"
        n = 500 * (seconds[i] if seconds else (10 if i % 3 else 12))
        with h5py.File(folder / "records" / f"{ecg_id}.h5", "w") as fh:
            fh.create_dataset("ecg", data=rng.normal(0, 0.2, (12, n)).astype(np.float32))
        rows.append({"ECG_ID": ecg_id, "AHA_Code": codes,
                     "Patient_ID": (patients[i] if patients else f"{7000 + i:05d}"),
                     "Age": int(rng.integers(18, 90)), "Sex": "M" if i % 2 else "F", "N": n,
                     "Date": f"2020-0{1 + i % 8}-1{i % 10}"})
    table = pd.DataFrame(rows, columns=list(SPH_COLUMNS))
    table.to_csv(folder / "metadata.csv", index=False)
    pd.DataFrame(SPH_CODES, columns=["Code", "Description"]).to_csv(folder / "code.csv", index=False)
    return table


# -- CPSC 2018 (http://2018.icbeb.org/Challenge.html) -------------------------------------------------------------

CPSC2018_REFERENCE_COLUMNS = ("Recording", "First_label", "Second_label", "Third_label")


def cpsc2018_mat(path: Path, data: np.ndarray, *, sex: str = "Male", age: float = 60.0) -> None:
    """One recording as released: a MATLAB v5 file with the struct ``ECG`` {sex, age, data [12, N] double mV}."""
    from scipy.io import savemat

    savemat(path, {"ECG": {"sex": sex, "age": np.array([[age]]), "data": np.asarray(data, dtype=np.float64)}})


def cpsc2018_sample(folder: Path, labels: list[list[int]], *, seed: int = 0, sets: int = 3) -> pd.DataFrame:
    """``TrainingSet{1..sets}/A0001.mat ...`` (whole-microvolt values, 6 to 12 s at 500 Hz) and ``REFERENCE.csv``
    beside them, one recording per entry of ``labels`` (class numbers 1-9, up to three)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, numbers in enumerate(labels):
        name = f"A{i + 1:04d}"
        sub = folder / f"TrainingSet{1 + i % sets}"
        sub.mkdir(parents=True, exist_ok=True)
        n = 500 * (6 + i % 7)
        data = np.round(rng.normal(0, 0.2, (12, n)) * 1000) / 1000  # mV, whole microvolts
        cpsc2018_mat(sub / f"{name}.mat", data, sex="Male" if i % 2 else "Female", age=float(20 + i))
        padded = [*numbers, *[None] * (3 - len(numbers))]
        rows.append({"Recording": name, "First_label": padded[0], "Second_label": padded[1],
                     "Third_label": padded[2]})
    table = pd.DataFrame(rows, columns=list(CPSC2018_REFERENCE_COLUMNS))
    for column in CPSC2018_REFERENCE_COLUMNS[1:]:
        table[column] = table[column].astype("Int64")
    table.to_csv(folder / "REFERENCE.csv", index=False)
    return table
