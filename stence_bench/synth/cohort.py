"""The synthetic cohort: patients, their ECGs, paired modalities and tables, written in real file layouts.

``synthesize(out, patients=N, seed=S)`` writes::

    OUT/
      cohort.json                      seed, counts, generator version
      mimic-iv-ecg/                    the ECGs in the MIMIC-IV-ECG layout (stence-bench data ingest --layout mimic-iv-ecg)
        files/pNNNN/pXXXXXXXX/sYYYYYYYY/YYYYYYYY.hea/.dat, record_list.csv, machine_measurements.csv
      ptbxl/                           the same ECGs in the PTB-XL layout (records500/, records100/,
        ptbxl_database.csv, scp_statements.csv)   strat_fold by patient; the real statement table)
      tables/
        patients.csv                   age, sex, BMI, SBP, DBP, smoking, diabetes, cholesterol (with missing
                                       values), SCORE2-style 10-year risk
        stenosis.csv                   per patient and coronary segment: stenosis %, the angiogram's file
        echo.csv, labs.csv, cath.csv   echo LVEF, potassium draws (times relative to the ECGs), catheter mPCWP
        ecgs.csv                       per ECG: the latents at that time and the ground-truth intervals
        angiography_embeddings.csv     per patient, a stand-in for a frozen angiography encoder's output
      angiography/                     one small multi-frame DICOM XA angiogram per patient

Same seed, same bytes: every random draw comes from generators seeded by ``(seed, stage, batch)``. The paired
modalities' knobs (:mod:`stence_bench.synth.side`) draw from streams of their own, so at their defaults (0) the cohort
is the same, byte for byte, as without them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xxhash

from ..data.splits import patient_split
from ..data.views import resample
from ..data.wfdb_io import write_wfdb
from ..errors import StenceBenchError
from .ecg import generate
from .physiology import VESSELS, ischaemia, morphology, sample_patients
from .side import MODALITIES, Knob, SideInformation

GENERATOR_VERSION = "6"
FS = 500
SECONDS = 10.0
EPOCH = dt.datetime(2150, 1, 1)
#: SCP statement -> the machine report's sentence for it
REPORT_TEXT = {
    "SR": "Sinus rhythm", "STACH": "Sinus tachycardia", "SBRAD": "Sinus bradycardia",
    "AMI": "Anterior infarct, age undetermined", "IMI": "Inferior infarct, age undetermined",
    "LMI": "Lateral infarct, age undetermined", "ISCAN": "ST-T changes in anterior leads, consider ischemia",
    "ISCIN": "ST-T changes in inferior leads, consider ischemia",
    "ISCLA": "ST-T changes in lateral leads, consider ischemia", "CLBBB": "Left bundle branch block",
    "CRBBB": "Right bundle branch block", "LAFB": "Left anterior fascicular block", "1AVB": "1st degree A-V block",
    "LVH": "Left ventricular hypertrophy with repolarization abnormality", "LAO/LAE": "Left atrial enlargement",
    "LOWT": "Low amplitude T waves", "LVOLT": "Low QRS voltages", "NST_": "Nonspecific ST-T changes",
    "NORM": "Normal ECG",
}
_ISCHAEMIA_CODE = {"LAD": "ISCAN", "RCA": "ISCIN", "LCx": "ISCLA"}
_MI_CODE = {"LAD": "AMI", "RCA": "IMI", "LCx": "LMI"}
_RHYTHM = ("SR", "STACH", "SBRAD")


def _rng(seed: int, stage: int, batch: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stage, batch]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def score2_style(age: np.ndarray, female: np.ndarray, smoking: np.ndarray, sbp: np.ndarray, diabetes: np.ndarray,
                 cholesterol: np.ndarray) -> np.ndarray:
    """A SCORE2-style 10-year cardiovascular risk (%): the SCORE2 working group's (2021) coefficients for age,
    smoking, SBP, diabetes and total cholesterol with their baseline survivals, without HDL and without the
    regional recalibration, so "style", not SCORE2 itself."""
    cage, csbp, ctchol = (age - 60) / 5, (sbp - 120) / 20, cholesterol - 6
    men = 0.3742 * cage + 0.6012 * smoking + 0.2777 * csbp + 0.6457 * diabetes + 0.1458 * ctchol
    women = 0.4648 * cage + 0.7744 * smoking + 0.3131 * csbp + 0.8096 * diabetes + 0.1002 * ctchol
    lp = np.where(female, women, men)
    s0 = np.where(female, 0.9776, 0.9605)
    return 100 * (1 - s0 ** np.exp(lp))


def plan_ecgs(patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """1-4 ECGs per patient at different times, each with its potassium and heart rate at that time."""
    n = len(patients)
    counts = rng.choice([1, 2, 3, 4], size=n, p=[0.35, 0.3, 0.2, 0.15])
    index_day = rng.uniform(0, 5 * 365, n)
    rows = []
    for p, count in enumerate(counts):
        day = index_day[p]
        for e in range(count):
            rows.append({"patient": p, "ecg_index": e, "day": day + rng.uniform(0, 0.6)})
            day += rng.exponential(120) + 1
    ecgs = pd.DataFrame(rows)
    m = len(ecgs)
    base = patients.loc[ecgs["patient"]].reset_index(drop=True)
    hyper = rng.random(m) < 0.12  # an acute rise (renal failure, drugs) at the time of this ECG
    hypo = ~hyper & (rng.random(m) < 0.06)
    potassium = base["k_base"] + rng.normal(0, 0.22, m) + hyper * rng.uniform(0.9, 2.8, m) - hypo * rng.uniform(0.6, 1.4, m)
    ecgs["potassium"] = np.clip(potassium, 2.4, 8.5).round(2)
    lvef_f = np.clip((55 - base["lvef"]) / 35, 0, 1)
    ecgs["heart_rate"] = np.clip(base["hr_base"] + rng.normal(0, 7, m) + 8 * lvef_f + 3 * hyper, 38, 150)
    ecgs["time"] = pd.to_datetime([EPOCH + dt.timedelta(days=float(d)) for d in ecgs["day"]]).round("s")
    return ecgs.drop(columns="day")


def statements(ecgs: pd.DataFrame, truth: pd.DataFrame) -> list[dict[str, float]]:
    """The SCP statements (with PTB-XL-style likelihoods) each ECG shows."""
    out = []
    isch = {v: ischaemia(ecgs[f"max_{v}"].to_numpy()) for v in VESSELS}
    nonspecific = ecgs["nst_draw"].to_numpy() < 0.04
    for i in range(len(ecgs)):
        row = ecgs.iloc[i]
        codes: dict[str, float] = {}
        if row["mi"]:
            codes[_MI_CODE[row["mi_vessel"]]] = 100.0
        for v in VESSELS:
            if isch[v][i] > 0.25:
                codes[_ISCHAEMIA_CODE[v]] = 100.0 if isch[v][i] > 0.5 else 50.0
        for flag, code in (("lbbb", "CLBBB"), ("rbbb", "CRBBB"), ("lafb", "LAFB"), ("lvh", "LVH")):
            if row[flag]:
                codes[code] = 100.0
        if truth["pr_ms"].iloc[i] > 200:
            codes["1AVB"] = 100.0
        if row["pcwp"] > 20:
            codes["LAO/LAE"] = 50.0
        if row["potassium"] < 3.3:
            codes["LOWT"] = 50.0
        if truth["r_amp"].iloc[i] < 0.55:
            codes["LVOLT"] = 50.0
        if nonspecific[i]:
            codes["NST_"] = 50.0
        diagnostic = {"AMI", "IMI", "LMI", "ISCAN", "ISCIN", "ISCLA", "CLBBB", "CRBBB", "LAFB", "LVH", "1AVB",
                      "LAO/LAE", "NST_"}
        if not diagnostic & codes.keys():
            codes["NORM"] = 100.0
        hr = row["heart_rate"]
        codes["STACH" if hr > 100 else "SBRAD" if hr < 60 else "SR"] = 0.0
        out.append(codes)
    return out


def report(codes: dict[str, float]) -> list[str]:
    """A machine-style report: the rhythm first, then the findings, then the overall impression."""
    rhythm = [REPORT_TEXT[c] for c in _RHYTHM if c in codes]
    findings = [REPORT_TEXT[c] for c in codes if c not in _RHYTHM and c != "NORM"]
    impression = ["Normal ECG"] if "NORM" in codes else ["Abnormal ECG"]
    return rhythm + findings + impression


def _patients_table(patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Clinical metadata as a registry would hold it: rounded, with values missing more often in the young and
    healthy (fewer measurements), and the SCORE2-style risk from the true values."""
    n = len(patients)
    table = pd.DataFrame({
        "subject_id": 10000000 + patients["patient"],
        "age": patients["age"].round().astype(int),
        "sex": np.where(patients["female"], "F", "M"),
        "bmi": patients["bmi"].round(1), "sbp": patients["sbp"].round(), "dbp": patients["dbp"].round(),
        "smoking": patients["smoking"].astype(int), "diabetes": patients["diabetes"].astype(int),
        "cholesterol": patients["cholesterol"].round(1),
        "score2": score2_style(patients["age"], patients["female"], patients["smoking"], patients["sbp"],
                               patients["diabetes"], patients["cholesterol"]).round(2),
    })
    healthier = 1.4 - 0.8 * _sigmoid(patients["risk"].to_numpy())
    for column, share in (("bmi", 0.12), ("sbp", 0.06), ("dbp", 0.06), ("smoking", 0.15), ("diabetes", 0.04),
                          ("cholesterol", 0.25)):
        missing = rng.random(n) < share * healthier
        table[column] = table[column].astype("float64").where(~missing)
    return table


def _tables(patients: pd.DataFrame, stenosis: pd.DataFrame, ecgs: pd.DataFrame, rng: np.random.Generator,
            seed: int = 0, side: SideInformation = SideInformation()) -> dict[str, pd.DataFrame]:
    first_ecg = ecgs.groupby("patient")["time"].min()
    # an echo within a week of most ECGs (ECG-echo pairs, as the LVEF studies select them); a right-heart
    # catheterisation (mPCWP) within hours of most ECGs of four patients in five
    n = len(ecgs)
    has_echo = rng.random(n) < 0.85
    echo = pd.DataFrame({
        "subject_id": 10000000 + ecgs["patient"],
        "echo_time": (ecgs["time"] + pd.to_timedelta(rng.uniform(-7, 7, n), unit="D")).dt.round("min"),
        "lvef": np.clip(ecgs["lvef"] + rng.normal(0, 3, n), 5, 80).round()})[has_echo]
    has_cath = (rng.random(len(patients)) < 0.8)[ecgs["patient"].to_numpy()] & (rng.random(n) < 0.8)
    cath = pd.DataFrame({
        "subject_id": 10000000 + ecgs["patient"],
        "cath_time": (ecgs["time"] + pd.to_timedelta(rng.uniform(-12, 12, n), unit="h")).dt.round("min"),
        "pcwp_mean": np.clip(ecgs["pcwp"] + rng.normal(0, 1.5, n), 2, 45).round()})[has_cath]
    # potassium: most ECGs have a draw within hours; routine draws on other days
    lab_rows = []
    for i in range(len(ecgs)):
        row = ecgs.iloc[i]
        if rng.random() < 0.9:
            gap_h = float(np.clip(rng.normal(0, 3), -12, 12))
            lab_rows.append((10000000 + row["patient"], (row["time"] + dt.timedelta(hours=gap_h)).round("min"),
                             round(float(row["potassium"] + rng.normal(0, 0.1)), 1)))
    for p in range(len(patients)):
        for _ in range(rng.integers(0, 3)):
            when = (first_ecg[p] + dt.timedelta(days=float(rng.uniform(-200, 400)))).round("min")
            lab_rows.append((10000000 + p, when, round(float(patients["k_base"].iloc[p] + rng.normal(0, 0.3)), 1)))
    labs = pd.DataFrame(lab_rows, columns=["subject_id", "charttime", "potassium"]).sort_values(["subject_id", "charttime"])
    sten = stenosis.assign(subject_id=10000000 + stenosis["patient"],
                           angiogram=[f"angiography/{10000000 + p}.dcm" for p in stenosis["patient"]])
    sten = sten[["subject_id", "segment", "vessel", "stenosis_pct", "angiogram"]]
    table = _side_patients(_patients_table(patients, rng), seed, side)
    embeddings = _angiography_embeddings(stenosis, rng, seed, side.angiography_embeddings)
    if side.angiography.dropout:
        kept = angiogram_stenosis(stenosis, seed, side.angiography)
        sten = sten.assign(angiogram=sten["angiogram"].where(sten["subject_id"].isin([10000000 + p for p in kept])))
    return {"patients": table, "stenosis": sten, "echo": echo, "cath": cath, "labs": labs,
            "angiography_embeddings": embeddings}


# -- the paired modalities' knobs (stence_bench.synth.side) ----------------------------------------------------------

#: The patients table's metadata columns (the ``metadata`` modality; ``score2`` is the ``risk`` modality).
METADATA_COLUMNS = ("age", "sex", "bmi", "sbp", "dbp", "smoking", "diabetes", "cholesterol")


def _side_rng(seed: int, modality: str) -> np.random.Generator:
    """The stream of a modality's knob: apart from every stage of the cohort itself (stages 0-5), so the cohort
    does not change when a knob is at 0."""
    return _rng(seed, 10, MODALITIES.index(modality))


def _donors(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Whose modality row ``i`` carries: its own, or for a ``share`` of the rows, a row drawn at random from all of
    them (independent of row ``i``: at 1, the modality is independent of the patient). The draws do not depend on
    ``share``, so a larger share swaps a superset of the rows a smaller one swaps."""
    swap = rng.random(n) < share
    other = rng.integers(0, n, n)
    return np.where(swap, other, np.arange(n))


def side_reports(codes: list[dict[str, float]], seed: int, knob: Knob = Knob()) -> list[list[str]]:
    """Each ECG's machine report (:func:`report`) after the ``report`` knob: ``noise``, another ECG's report;
    ``dropout``, each statement left out with that probability (1: every report empty)."""
    reports = [report(c) for c in codes]
    if knob.is_default:
        return reports
    rng = _side_rng(seed, "report")
    donors = _donors(len(reports), knob.noise, rng)
    width = max(len(r) for r in reports)
    keep = rng.random((len(reports), width)) >= knob.dropout
    return [[s for j, s in enumerate(reports[d]) if keep[i, j]] for i, d in enumerate(donors)]


def _side_patients(table: pd.DataFrame, seed: int, side: SideInformation) -> pd.DataFrame:
    """The patients table after the ``metadata`` knob (its :data:`METADATA_COLUMNS`: another patient's row; each
    value missing) and the ``risk`` knob (``score2``: another patient's; missing)."""
    for modality, columns in (("metadata", list(METADATA_COLUMNS)), ("risk", ["score2"])):
        knob: Knob = getattr(side, modality)
        if knob.is_default:
            continue
        rng = _side_rng(seed, modality)
        donors = _donors(len(table), knob.noise, rng)
        values = table[columns].iloc[donors].reset_index(drop=True)
        values.index = table.index
        missing = rng.random(values.shape) < knob.dropout
        table = table.copy()
        for j, column in enumerate(columns):
            table[column] = values[column].where(~missing[:, j]) if missing[:, j].any() else values[column]
    return table


def angiogram_stenosis(stenosis: pd.DataFrame, seed: int, knob: Knob = Knob()) -> dict[int, dict[str, float]]:
    """Patient -> the per-segment stenosis its angiogram draws, after the ``angiography`` knob: ``noise``, another
    patient's; ``dropout``, no angiogram (the patient is left out)."""
    drawn = {int(p): dict(zip(g["segment"], g["stenosis_pct"])) for p, g in stenosis.groupby("patient")}
    if knob.is_default:
        return drawn
    patients = sorted(drawn)
    rng = _side_rng(seed, "angiography")
    donors = _donors(len(patients), knob.noise, rng)
    kept = rng.random(len(patients)) >= knob.dropout
    return {p: drawn[patients[d]] for p, d, k in zip(patients, donors, kept) if k}


#: Width of the precomputed angiography embeddings (the default input of the ``angio_embedding`` encoder).
ANGIO_EMBED_DIM = 128


def _angiography_embeddings(stenosis: pd.DataFrame, rng: np.random.Generator, seed: int = 0,
                            knob: Knob = Knob()) -> pd.DataFrame:
    """What a frozen angiography encoder would hand over (StenCE trains on precomputed angiography embeddings):
    per patient, a fixed random linear map of the per-segment stenosis (fraction of the lumen) plus noise,
    standardised. The map is the same for every cohort; the noise is the cohort's. The ``angiography_embeddings``
    knob: ``noise``, the map of another patient's stenosis; ``dropout``, the patient's row left out."""
    table = stenosis.pivot_table(index="patient", columns="segment", values="stenosis_pct").fillna(0.0) / 100
    mixing = np.random.default_rng(20261122).standard_normal((table.shape[1], ANGIO_EMBED_DIM))
    lumen = table.to_numpy()
    if not knob.is_default:
        side_rng = _side_rng(seed, "angiography_embeddings")
        lumen = lumen[_donors(len(table), knob.noise, side_rng)]
        kept = side_rng.random(len(table)) >= knob.dropout
    values = lumen @ mixing + 0.5 * rng.standard_normal((len(table), ANGIO_EMBED_DIM))
    values = (values - values.mean(axis=0)) / (values.std(axis=0) + 1e-9)
    frame = pd.DataFrame(values.round(4), columns=[f"e{i}" for i in range(ANGIO_EMBED_DIM)])
    frame.insert(0, "subject_id", 10000000 + table.index.to_numpy())
    if not knob.is_default:
        frame = frame[kept].reset_index(drop=True)
    return frame


def sample_cohort(patients: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Patients, their per-segment stenosis, and their ECGs (one row per ECG, with the patient's latents)."""
    pats, stenosis = sample_patients(patients, _rng(seed, 0))
    ecgs = plan_ecgs(pats, _rng(seed, 1))
    latents = pats.loc[ecgs["patient"]].reset_index(drop=True)
    ecgs = pd.concat([ecgs, latents.drop(columns="patient")], axis=1)
    ecgs["nst_draw"] = _rng(seed, 2).random(len(ecgs))
    ecgs["subject_id"] = 10000000 + ecgs["patient"]
    ecgs["study_id"] = 40000000 + np.arange(len(ecgs))
    ecgs["ecg_id"] = np.arange(1, len(ecgs) + 1)
    return pats, stenosis, ecgs


def ecg_batches(ecgs: pd.DataFrame, seed: int, batch: int = 128) -> Iterator[tuple[pd.DataFrame, np.ndarray, pd.DataFrame]]:
    """The ECGs of :func:`sample_cohort`, generated in batches: ``(rows, signals [B, 12, 5000] mV, truth)``.
    Each batch has its own seeded generator, so the signals do not depend on anything but the seed."""
    for start in range(0, len(ecgs), batch):
        part = ecgs.iloc[start : start + batch]
        rng = _rng(seed, 3, start // batch)
        beats, rhythm, noise, truth = morphology(part, rng)
        yield part, generate(beats, rhythm, noise, fs=FS, seconds=SECONDS, rng=rng), truth


def paired_modalities(patients: int, seed: int, side: SideInformation = SideInformation(), *, batch: int = 128
                      ) -> dict[str, Any]:
    """The cohort's paired modalities in memory, as :func:`synthesize` writes them, without the ECG signals:
    ``ecgs`` (one row per ECG with its patient's latents), ``stenosis`` (per patient and segment), ``codes`` (each
    ECG's SCP statements), ``reports`` (each ECG's report, one list of statements), ``tables`` (the tables of
    ``tables/``: patients, stenosis, echo, cath, labs, angiography_embeddings) and ``angiograms`` (patient -> the
    per-segment stenosis its angiogram draws). ``batch`` as in :func:`synthesize` (the statements read the ECGs'
    true intervals, drawn per batch)."""
    pats, stenosis, ecgs = sample_cohort(patients, seed)
    truth = pd.concat([morphology(ecgs.iloc[start : start + batch], _rng(seed, 3, start // batch))[3]
                       for start in range(0, len(ecgs), batch)])
    codes = statements(ecgs, truth)
    return {"ecgs": ecgs, "stenosis": stenosis, "codes": codes, "reports": side_reports(codes, seed, side.report),
            "tables": _tables(pats, stenosis, ecgs, _rng(seed, 5), seed, side),
            "angiograms": angiogram_stenosis(stenosis, seed, side.angiography)}


def synthesize(out: str | os.PathLike[str], patients: int, seed: int = 0, *, batch: int = 128,
               angiograms: bool = True, progress: Callable[[int], None] | None = None,
               on_start: Callable[[int], None] | None = None,
               side: SideInformation = SideInformation()) -> dict[str, Any]:
    """Write a cohort of ``patients`` patients into ``out`` (a new or empty folder). Returns the summary also
    written to ``out/cohort.json``. ``side``: the paired modalities' noise and dropout (default: as generated)."""
    out = Path(out)
    if patients < 1:
        raise StenceBenchError(f"--patients must be at least 1, not {patients}")
    if out.exists() and any(out.iterdir()):
        raise StenceBenchError(f"{out}: exists and is not empty; synthesize into a new folder")
    pats, stenosis, ecgs = sample_cohort(patients, seed)
    drawn = angiogram_stenosis(stenosis, seed, side.angiography) if angiograms else {}
    if on_start:
        on_start(len(ecgs) + len(drawn))

    mimic, ptbxl = out / "mimic-iv-ecg", out / "ptbxl"
    truth_parts, codes_all = [], []
    for part, signals, truth in ecg_batches(ecgs, seed, batch):
        codes = statements(part, truth)
        for j in range(len(part)):
            row = part.iloc[j]
            when: dt.datetime = row["time"]
            date, clock = when.strftime("%d/%m/%Y"), when.strftime("%H:%M:%S")
            sid, study = int(row["subject_id"]), int(row["study_id"])
            rel = f"files/p{str(sid)[:4]}/p{sid}/s{study}/{study}"
            write_wfdb(mimic / rel, signals[j], FS, base_date=date, base_time=clock)
            ecg_id = int(row["ecg_id"])
            folder = f"{(ecg_id // 1000) * 1000:05d}"
            write_wfdb(ptbxl / f"records500/{folder}/{ecg_id:05d}_hr", signals[j], FS, base_date=date, base_time=clock)
            write_wfdb(ptbxl / f"records100/{folder}/{ecg_id:05d}_lr", resample(signals[j], FS, 100), 100,
                       base_date=date, base_time=clock)
        truth_parts.append(truth)
        codes_all += codes
        if progress:
            progress(len(part))
    truth = pd.concat(truth_parts)
    ecgs = pd.concat([ecgs, truth.add_prefix("true_")], axis=1)
    ecgs["scp_codes"] = codes_all
    reports = side_reports(codes_all, seed, side.report)
    _write_mimic_tables(mimic, ecgs, _rng(seed, 4), reports)
    _write_ptbxl_tables(ptbxl, ecgs, pats, reports)
    tables = _tables(pats, stenosis, ecgs, _rng(seed, 5), seed, side)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(out / "tables" / f"{name}.csv", index=False)
    keep = ["subject_id", "study_id", "ecg_id", "time", "potassium", "heart_rate", "lvef", "pcwp",
            *[f"max_{v}" for v in VESSELS], "mi", "mi_vessel", "lbbb", "rbbb", "lafb", "lvh",
            *[c for c in ecgs.columns if c.startswith("true_")]]
    ecgs[keep].to_csv(out / "tables" / "ecgs.csv", index=False)
    if angiograms:
        _write_angiograms(out, drawn, ecgs, seed, progress)
    summary = {"generator_version": GENERATOR_VERSION, "seed": seed, "patients": patients, "ecgs": len(ecgs),
               "fs": FS, "seconds": SECONDS, "angiograms": len(drawn),
               "layouts": {"mimic-iv-ecg": "mimic-iv-ecg", "ptbxl": "ptbxl"}}
    if not side.is_default:
        summary["side"] = side.summary()
    (out / "cohort.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_mimic_tables(root: Path, ecgs: pd.DataFrame, rng: np.random.Generator, reports: list[list[str]]) -> None:
    record_list = pd.DataFrame({
        "subject_id": ecgs["subject_id"], "study_id": ecgs["study_id"], "file_name": ecgs["study_id"],
        "ecg_time": ecgs["time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        "path": [f"files/p{str(s)[:4]}/p{s}/s{t}/{t}" for s, t in zip(ecgs["subject_id"], ecgs["study_id"])],
    })
    record_list.to_csv(root / "record_list.csv", index=False)
    width = max(len(r) for r in reports)
    jitter = lambda scale: rng.normal(0, scale, len(ecgs))
    p_onset = 40 + np.zeros(len(ecgs))
    qrs_onset = p_onset + ecgs["true_pr_ms"] + jitter(6)
    mm = pd.DataFrame({
        "subject_id": ecgs["subject_id"], "study_id": ecgs["study_id"], "cart_id": 6000 + (ecgs["subject_id"] % 37),
        "ecg_time": record_list["ecg_time"],
        **{f"report_{i}": [r[i] if i < len(r) else None for r in reports] for i in range(width)},
        "bandwidth": "0.005-150 Hz", "filtering": "60 Hz notch Baseline filter",
        "rr_interval": (ecgs["true_rr_ms"] + jitter(10)).round(), "p_onset": p_onset.round(),
        "p_end": (p_onset + ecgs["true_p_ms"] + jitter(6)).round(), "qrs_onset": qrs_onset.round(),
        "qrs_end": (qrs_onset + ecgs["true_qrs_ms"] + jitter(4)).round(),
        "t_end": (qrs_onset + ecgs["true_qt_ms"] + jitter(8)).round(),
        "p_axis": ecgs["true_p_axis"], "qrs_axis": ecgs["true_qrs_axis"], "t_axis": ecgs["true_t_axis"],
    })
    mm.to_csv(root / "machine_measurements.csv", index=False)


def _write_ptbxl_tables(root: Path, ecgs: pd.DataFrame, patients: pd.DataFrame, reports: list[list[str]]) -> None:
    statements_table = files("stence_bench.data") / "ptbxl" / "scp_statements.csv"
    (root / "scp_statements.csv").write_bytes(statements_table.read_bytes())
    folder = [f"{(i // 1000) * 1000:05d}" for i in ecgs["ecg_id"]]
    # strat_fold by patient (1-8 train, 9 validation, 10 test, as in PTB-XL): the harness's own patient split of
    # the MIMIC-IV-ECG subject ids, so pretraining on the MIMIC-IV-ECG export's training patients never sees a
    # PTB-XL validation or test patient of the same cohort
    subjects = pd.Series([str(10000000 + p) for p in patients["patient"]])
    split = patient_split(subjects, seed=0).to_numpy()
    train_fold = np.array([xxhash.xxh3_64_intdigest(f"fold:{p}".encode()) % 8 + 1 for p in patients["patient"]])
    fold_of_patient = np.where(split == "train", train_fold, np.where(split == "val", 9, 10))
    database = pd.DataFrame({
        # the MIMIC-IV-ECG subject id: the two exports hold the same patients (one patient namespace)
        "ecg_id": ecgs["ecg_id"], "patient_id": (ecgs["patient"] + 10000000).astype(float),
        "age": ecgs["age"].round(), "sex": np.where(ecgs["female"], 1, 0),
        "height": np.nan, "weight": np.nan, "nurse": np.nan, "site": np.nan, "device": "synthetic",
        "recording_date": ecgs["time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        "report": [". ".join(r).lower() + "." if r else "" for r in reports],
        "scp_codes": [repr(c) for c in ecgs["scp_codes"]],
        "strat_fold": fold_of_patient[ecgs["patient"].to_numpy()],
        "filename_lr": [f"records100/{f}/{i:05d}_lr" for f, i in zip(folder, ecgs["ecg_id"])],
        "filename_hr": [f"records500/{f}/{i:05d}_hr" for f, i in zip(folder, ecgs["ecg_id"])],
    })
    database.to_csv(root / "ptbxl_database.csv", index=False)


def _write_angiograms(out: Path, drawn: dict[int, dict[str, float]], ecgs: pd.DataFrame, seed: int,
                      progress: Callable[[int], None] | None) -> None:
    from .angiography import write_angiogram

    (out / "angiography").mkdir(exist_ok=True)
    first_ecg = ecgs.groupby("patient")["time"].min()
    for p, segments in drawn.items():
        write_angiogram(out / "angiography" / f"{10000000 + p}.dcm", segments,
                        patient_id=str(10000000 + p), time=first_ecg[p].to_pydatetime(), seed=seed * 1_000_003 + int(p))
        if progress:
            progress(1)
