"""Realism measurements: device values of a real DICOM ECG, a synthetic signal of known timing, the real reference."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import signal as sps

from stence_bench.data.dicom import read_dicom_ecg
from stence_bench.specs import TWELVE_LEADS
from stence_bench.synth import realism

LEADS = tuple(TWELVE_LEADS)
DICOM = "dicom/waveform_ecg.dcm"
#: The Mortara device's global measurements in waveform_ecg.dcm (its annotations, ms).
DEVICE = {"rr": 982.0, "pr": 161.0, "qrs": 75.0, "qt": 368.0}
#: Its fiducials in the MEDIAN BEAT group (samples at 1000 Hz): QRS onset, QRS offset, T offset.
DEVICE_MEDIAN = {"qrs_on": 460, "qrs_off": 535, "t_end": 828}

# the known sanity signal: waves are raised-cosine bumps, exactly zero outside [onset, onset + duration]
PR, QRS, QT, P_DUR, T_DUR = 0.160, 0.090, 0.380, 0.100, 0.200
GAIN = np.linspace(0.5, 1.5, 12)
QRS_SIGN = np.array([1, 1, 1, -1, 1, 1, -1, -1, 1, 1, 1, 1])
T_SIGN = np.array([1, 1, 1, -1, 1, 1, 1, 1, 1, 1, 1, -1])  # aVR and V6 inverted


def _bump(t: np.ndarray, onset: float, duration: float) -> np.ndarray:
    u = (t - onset) / duration
    return np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)


def sanity_signal(fs: float, rr: float = 0.8, seconds: float = 10.0, noise: float = 0.01) -> np.ndarray:
    """12 leads of P/QRS/T bumps at a fixed RR, with baseline wander and white noise; QRS onsets at 0.3 s + k RR."""
    rng = np.random.default_rng(7)
    t = np.arange(round(seconds * fs)) / fs
    p, q, tw = (np.zeros_like(t) for _ in range(3))
    for on in np.arange(0.3, seconds - 0.5, rr):
        p += _bump(t, on - PR, P_DUR)
        q += _bump(t, on, QRS)
        tw += _bump(t, on + QT - T_DUR, T_DUR)
    x = 0.15 * GAIN[:, None] * p + (QRS_SIGN * GAIN)[:, None] * q + (0.3 * T_SIGN * GAIN)[:, None] * tw
    x += 0.1 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, (12, 1)))
    return x + noise * rng.standard_normal(x.shape)


# ----------------------------------------------------------------------------------------------- real device values


def test_dicom_intervals_match_the_device(realdata: Path) -> None:
    record = read_dicom_ecg(realdata / DICOM)
    assert record.fs == 1000
    m = realism.measure(record.physical(), record.fs, record.leads)
    assert m["heart_rate"] == pytest.approx(60000 / DEVICE["rr"], rel=0.05)
    assert abs(m["pr_ms"] - DEVICE["pr"]) <= 20
    assert abs(m["qrs_ms"] - DEVICE["qrs"]) <= 20
    assert abs(m["qt_ms"] - DEVICE["qt"]) <= 30


def test_dicom_amplitudes_match_the_device_median_beat(realdata: Path) -> None:
    """R and T per lead against the device's own median beat, measured at the device's fiducials."""
    rhythm = read_dicom_ecg(realdata / DICOM)
    median = read_dicom_ecg(realdata / DICOM, group="median")
    assert median.leads == rhythm.leads == LEADS
    beat = median.physical().astype(np.float64)
    on, off, t_end = DEVICE_MEDIAN["qrs_on"], DEVICE_MEDIAN["qrs_off"], DEVICE_MEDIAN["t_end"]
    rel = beat - beat[:, on - 16:on - 4].mean(axis=1, keepdims=True)
    device_r = np.maximum(rel[:, on:off + 1].max(axis=1), 0)
    t_win = rel[:, off + 60:t_end + 1]
    device_t = t_win[np.arange(12), np.abs(t_win).argmax(axis=1)]
    m = realism.measure(rhythm.physical(), rhythm.fs, rhythm.leads)
    ours_r = np.array([m[f"r_amp_{lead}"] for lead in LEADS])
    ours_t = np.array([m[f"t_amp_{lead}"] for lead in LEADS])
    np.testing.assert_allclose(ours_r, device_r, rtol=0.1, atol=0.03)
    np.testing.assert_allclose(ours_t, device_t, atol=0.04)
    assert m["t_amp_aVR"] < -0.3 and m["t_amp_V1"] < -0.1  # the leads whose T is negative on this ECG


@pytest.mark.parametrize("fs", [100, 500])
def test_r_peaks_agree_across_sampling_rates(realdata: Path, fs: int) -> None:
    record = read_dicom_ecg(realdata / DICOM)
    x = record.physical().astype(np.float64)
    reference = realism.r_peaks(x, 1000.0) / 1000.0
    peaks = realism.r_peaks(sps.resample_poly(x, fs, 1000, axis=-1), float(fs)) / fs
    assert len(reference) == len(peaks) == 10  # the device annotates 10 beats
    np.testing.assert_allclose(peaks, reference, atol=1.5 / fs + 0.004)


# ----------------------------------------------------------------------------------------------- known signal


@pytest.mark.parametrize("fs", [100.0, 500.0, 1000.0])
@pytest.mark.parametrize("rr", [0.8, 1.25])
def test_sanity_signal_gives_its_known_values(fs: float, rr: float) -> None:
    m = realism.measure(sanity_signal(fs, rr), fs, LEADS)
    assert m["heart_rate"] == pytest.approx(60 / rr, rel=0.01)
    # tangent onsets/ends sit 0.09 of a bump's duration inside it: P onset 9 ms late, T end 18 ms early
    assert abs(m["pr_ms"] - 1000 * PR) <= 15
    assert abs(m["qrs_ms"] - 1000 * QRS) <= 10
    assert abs(m["qt_ms"] - 1000 * QT) <= 25
    r_amp = np.array([m[f"r_amp_{lead}"] for lead in LEADS])
    t_amp = np.array([m[f"t_amp_{lead}"] for lead in LEADS])
    np.testing.assert_allclose(r_amp, np.maximum(QRS_SIGN * GAIN, 0), atol=0.05)  # QS leads: R = 0
    np.testing.assert_allclose(t_amp, 0.3 * T_SIGN * GAIN, atol=0.04)
    assert m["t_amp_aVR"] < 0 and m["t_amp_V6"] < 0 and m["t_amp_V5"] > 0
    bands = [m[realism.band_name(lo, hi)] for lo, hi in realism.BANDS]
    assert sum(bands) == pytest.approx(1.0) and all(b >= 0 for b in bands)


def test_r_peaks_find_every_beat_at_each_rate() -> None:
    for fs in (100.0, 500.0, 1000.0):
        peaks = realism.r_peaks(sanity_signal(fs, 0.8), fs) / fs
        onsets = np.arange(0.3, 10.0 - 0.5, 0.8)
        assert len(peaks) == len(onsets)
        assert np.all((peaks >= onsets) & (peaks <= onsets + QRS))  # the QRS slope energy peak lies in the QRS


def test_longer_intervals_measure_longer() -> None:
    global PR, QT
    saved = PR, QT
    try:
        base = realism.measure(sanity_signal(500.0, 1.0), 500.0, LEADS)
        PR, QT = PR + 0.06, QT + 0.06
        longer = realism.measure(sanity_signal(500.0, 1.0), 500.0, LEADS)
    finally:
        PR, QT = saved
    assert longer["pr_ms"] - base["pr_ms"] == pytest.approx(60, abs=6)
    assert longer["qt_ms"] - base["qt_ms"] == pytest.approx(60, abs=6)


# ----------------------------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("name, x", [
    ("flat", np.zeros((12, 5000))),
    ("constant", np.full((12, 5000), 0.7)),
    ("all NaN", np.full((12, 5000), np.nan)),
    ("white noise", np.random.default_rng(1).standard_normal((12, 5000)) * 0.05),
    ("1 s only", sanity_signal(500.0, seconds=1.0)),
    ("empty", np.zeros((12, 0))),
])
def test_unmeasurable_records_give_nan(name: str, x: np.ndarray) -> None:
    m = realism.measure(x, 500.0, LEADS)
    assert list(m) == realism.measure_names(LEADS)
    for key in ("heart_rate", "pr_ms", "qrs_ms", "qt_ms", "r_amp_II", "t_amp_V2"):
        assert math.isnan(m[key]), (name, key, m[key])


def test_a_flat_or_broken_lead_is_left_out() -> None:
    x = sanity_signal(500.0)
    x[7] = 0.0  # V2 off
    x[1, 100:110] = np.nan  # II broken
    m = realism.measure(x, 500.0, LEADS)
    assert math.isnan(m["r_amp_V2"]) and math.isnan(m["t_amp_V2"]) and math.isnan(m["r_amp_II"])
    assert math.isnan(m["power_0.5_5"])  # the spectral lead is II
    assert m["heart_rate"] == pytest.approx(75, rel=0.01) and abs(m["qrs_ms"] - 90) <= 10
    assert m["r_amp_V3"] == pytest.approx(GAIN[8], abs=0.05)


def test_measure_rejects_a_lead_count_mismatch() -> None:
    with pytest.raises(ValueError, match="12 leads"):
        realism.measure(np.zeros((11, 5000)), 500.0, LEADS)


def test_measure_many_gives_one_row_per_record() -> None:
    table = realism.measure_many([(sanity_signal(500.0), 500.0, LEADS), (np.zeros((12, 5000)), 500.0, LEADS),
                                  (sanity_signal(100.0, 1.0), 100.0, LEADS)])
    assert list(table.columns) == realism.measure_names(LEADS)
    assert len(table) == 3 and table.iloc[1].isna().all()
    assert table["heart_rate"].round(1).tolist()[::2] == [75.0, 60.0]


# ----------------------------------------------------------------------------------------------- real reference


@functools.cache
def _reference(realdata: Path) -> pd.DataFrame:
    return realism.real_reference(realdata)


@pytest.fixture
def reference(realdata: Path) -> pd.DataFrame:
    """The real reference table, measured once per session."""
    return _reference(realdata).copy()


def test_real_reference_measures_every_record(reference: pd.DataFrame) -> None:
    assert len(reference) == 27 and reference.index.is_unique
    assert {"cinc2021/E07500", "ptb-xl/records100/00000/00001_lr", "dicom/waveform_ecg"} <= set(reference.index)
    assert reference["heart_rate"].between(30, 200).all()
    bands = reference[[realism.band_name(lo, hi) for lo, hi in realism.BANDS]]
    np.testing.assert_allclose(bands.sum(axis=1), 1.0, atol=1e-9)
    # every record has a QRS and a QT; PR only where a P wave is seen
    assert reference["qrs_ms"].between(50, 200).all() and reference["qt_ms"].between(220, 600).all()
    assert reference["pr_ms"].dropna().between(80, 300).all() and reference["pr_ms"].notna().sum() >= 24
    assert reference.loc["cinc2021/E07509", "qrs_ms"] >= 120  # right bundle branch block
    assert reference.loc["cinc2021/JS20004", ["r_amp_V2", "r_amp_V4", "r_amp_V6"]].isna().all()  # flat leads


def test_compare_with_the_real_reference(reference: pd.DataFrame) -> None:
    synthetic = reference.iloc[:5].copy()
    synthetic.loc[synthetic.index[0], "qt_ms"] = reference["qt_ms"].max() + 1
    table = realism.compare(synthetic, reference)
    assert not table.loc["qt_ms", "inside"] and table.loc["qt_ms", "outside_share"] == pytest.approx(0.2)
    assert table.loc["heart_rate", "inside"]
    assert table["inside"].sum() == len(table) - 1
    assert table["cohort_inside"].all()  # one value of five out of range does not move the quartiles out
    report = realism.format_report(table)
    assert "31 of 32 statistics with every synthetic value inside the real range; not: qt_ms." in report
    assert "| heart_rate |" in report


# ----------------------------------------------------------------------------------------------- compare, report


def test_compare_flags_values_outside_the_real_range() -> None:
    real = pd.DataFrame({"heart_rate": [50.0, 60.0, 100.0], "qrs_ms": [80.0, 90.0, np.nan],
                         "source": ["a", "b", "c"], "only_real": [1.0, 2.0, 3.0]})
    synthetic = pd.DataFrame({"heart_rate": [50.0, 100.0, np.nan], "qrs_ms": [85.0, 150.0, np.nan],
                              "only_synthetic": [1.0, 2.0, 3.0]})
    table = realism.compare(synthetic, real)
    assert list(table.index) == ["heart_rate", "qrs_ms", "only_real", "only_synthetic"]  # no text column
    hr, qrs = table.loc["heart_rate"], table.loc["qrs_ms"]
    assert table["inside"].dtype == "boolean"
    assert hr["inside"] and hr["outside_share"] == 0  # the range's ends are inside
    assert (hr["real_min"], hr["real_max"], hr["real_median"], hr["real_n"]) == (50, 100, 60, 3)
    assert (hr["synthetic_min"], hr["synthetic_max"], hr["synthetic_n"]) == (50, 100, 2)
    assert not qrs["inside"] and qrs["outside_share"] == 0.5 and qrs["real_n"] == 2
    assert pd.isna(table.loc["only_real", "inside"]) and table.loc["only_synthetic", "real_n"] == 0


def test_format_report_is_a_markdown_table() -> None:
    real = pd.DataFrame({"heart_rate": [50.0, 60.0, 100.0], "qrs_ms": [80.0, 90.0, 100.0]})
    synthetic = pd.DataFrame({"heart_rate": [55.0], "qrs_ms": [150.0]})
    text = realism.format_report(realism.compare(synthetic, real))
    lines = text.splitlines()
    assert lines[0] == ("1 of 2 statistics with the synthetic median and interquartile range inside the real range; "
                        "not: qrs_ms.")
    assert lines[1] == "1 of 2 statistics with every synthetic value inside the real range; not: qrs_ms."
    header = lines[3]
    assert header.startswith("| statistic | real_min | real_max |") and lines[4].startswith("|---|---:|")
    assert len({line.count("|") for line in lines[3:]}) == 1
    assert lines[5] == "| heart_rate | 50 | 100 | 60 | 3 | 55 | 55 | 55 | 55 | 55 | 1 | 0 | yes | yes |"
    assert lines[6] == "| qrs_ms | 80 | 100 | 90 | 3 | 150 | 150 | 150 | 150 | 150 | 1 | 1 | **no** | **no** |"
    plain = realism.format_report(real)  # any table renders, without the summary line
    assert plain.splitlines()[0].startswith("|  | heart_rate | qrs_ms |")


def test_the_synthetic_cohort_lies_inside_the_real_records(reference: pd.DataFrame) -> None:
    """The realism criterion of docs/synthetic.md: for every statistic (intervals, R and T amplitudes per lead,
    spectral bands), the synthetic cohort's median and interquartile range lie inside the real records' range."""
    synthetic = realism.synthetic_measurements(patients=40, seed=0)
    assert len(synthetic) > 60
    table = realism.compare(synthetic, reference)
    assert len(table) == 32 and table["synthetic_n"].min() > 50
    failing = table.index[~table["cohort_inside"]].tolist()
    assert failing == [], realism.format_report(table.loc[failing])
