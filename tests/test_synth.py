"""The synthetic cohort: deterministic, physiologically consistent, readable by the data layer."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench.cli import cli
from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.mimic_iv_ecg import MimicIvEcgLayout
from stence_bench.data.layouts.ptbxl import PtbxlLayout
from stence_bench.data.store import ECGStore
from stence_bench.registry import Registry
from stence_bench.synth.cohort import synthesize
from stence_bench.synth.ecg import LEAD_VECTORS, dipole, generate
from stence_bench.synth.physiology import morphology, sample_patients
from stence_bench_tasks.ptbxl import label_sets


def tree_digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort") / "c"
    synthesize(out, patients=24, seed=7, angiograms=False)
    return out


def test_same_seed_same_bytes_other_seed_other_ecgs(cohort, tmp_path):
    synthesize(tmp_path / "again", patients=24, seed=7, angiograms=False)
    first, again = tree_digest(cohort), tree_digest(tmp_path / "again")
    assert first == again and len(first) > 100
    synthesize(tmp_path / "other", patients=24, seed=8, angiograms=False)
    other = tree_digest(tmp_path / "other")
    assert other["ptbxl/records500/00000/00001_hr.dat"] != first["ptbxl/records500/00000/00001_hr.dat"]


def test_both_layouts_ingest_with_nothing_quarantined(cohort, tmp_path):
    mimic = ingest(cohort / "mimic-iv-ecg", MimicIvEcgLayout(), tmp_path / "mimic")
    ptbxl = ingest(cohort / "ptbxl", PtbxlLayout(), tmp_path / "ptbxl")
    ptbxl100 = ingest(cohort / "ptbxl", PtbxlLayout(rate=100), tmp_path / "ptbxl100")
    n = len(pd.read_csv(cohort / "tables" / "ecgs.csv"))
    for report in (mimic, ptbxl, ptbxl100):
        assert (report.ingested, report.quarantined_total) == (n, 0)
    store = ECGStore(tmp_path / "mimic")
    assert store.summary()["patients"] == 24 and set(store.manifest["fs"]) == {500.0}
    assert ECGStore(tmp_path / "ptbxl100").manifest["n_samples"].eq(1000).all()
    # the same ECG in both layouts
    ecgs = pd.read_csv(cohort / "tables" / "ecgs.csv")
    first = ecgs.iloc[0]
    np.testing.assert_array_equal(store.signal(str(first["study_id"])), ECGStore(tmp_path / "ptbxl").signal(str(first["ecg_id"])))


def test_ptbxl_export_runs_the_ptbxl_tasks(cohort):
    database = pd.read_csv(cohort / "ptbxl" / "ptbxl_database.csv", index_col="ecg_id")
    statements = pd.read_csv(cohort / "ptbxl" / "scp_statements.csv", index_col=0)
    assert len(statements) == 71  # the real table
    superdiag = label_sets(database, statements, level="superdiagnostic")
    assert len(superdiag) == len(database)  # every ECG has a superdiagnostic label
    assert {"NORM"} <= {c for labels in superdiag for c in labels}
    # patients never straddle folds
    assert database.groupby("patient_id")["strat_fold"].nunique().max() == 1


def test_reports_and_tables_agree_with_the_statements(cohort):
    mm = pd.read_csv(cohort / "mimic-iv-ecg" / "machine_measurements.csv")
    database = pd.read_csv(cohort / "ptbxl" / "ptbxl_database.csv")
    reports = mm.filter(like="report_").fillna("").agg(" ".join, axis=1)
    for codes, text in zip(database["scp_codes"], reports):
        codes = eval(codes)  # noqa: S307 - a dict literal this test's cohort wrote
        assert ("Normal ECG" in text) == ("NORM" in codes)
        assert ("Left bundle branch block" in text) == ("CLBBB" in codes)
    patients = pd.read_csv(cohort / "tables" / "patients.csv")
    assert len(patients) == 24 and patients["score2"].between(0, 100).all()
    stenosis = pd.read_csv(cohort / "tables" / "stenosis.csv")
    assert len(stenosis) == 24 * 12 and stenosis["stenosis_pct"].between(0, 100).all()
    labs = pd.read_csv(cohort / "tables" / "labs.csv", parse_dates=["charttime"])
    assert labs["potassium"].between(2, 9).all()


def test_einthoven_and_augmented_leads_hold_exactly():
    rng = np.random.default_rng(0)
    patients, _ = sample_patients(16, rng)
    ecgs = patients.assign(potassium=patients["k_base"], heart_rate=patients["hr_base"])
    beats, rhythm, noise, _ = morphology(ecgs, rng)
    x = generate(beats, rhythm, noise, rng=rng)
    assert x.shape == (16, 12, 5000) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 2], x[:, 1] - x[:, 0])  # III = II - I
    assert np.abs(x[:, 3] + x[:, 4] + x[:, 5]).max() < 1e-6 * np.abs(x[:, :2]).max()  # aVR + aVL + aVF = 0


# --- each latent moves the ECG the way physiology says ---------------------------------------------------------

LEAD = {"I": 0, "II": 1, "V1": 2, "V2": 3, "V3": 4, "V4": 5, "V5": 6, "V6": 7}


def one_beat(ecgs: pd.DataFrame) -> np.ndarray:
    """Noise-free single beats (R at 1.0 s) of the 8 independent leads, ``[B, 8, 1000]`` at 500 Hz."""
    beats, _, _, _ = morphology(ecgs, np.random.default_rng(11))
    v = dipole(beats, np.full((len(ecgs), 1), 1.0), 1000, 500.0)
    return np.matmul(LEAD_VECTORS.astype(np.float32), v)


@pytest.fixture(scope="module")
def healthy() -> pd.DataFrame:
    patients, _ = sample_patients(300, np.random.default_rng(5))
    return patients.assign(
        potassium=4.3, heart_rate=70.0, lvef=60.0, pcwp=10.0, mi=False, mi_vessel="", lbbb=False, rbbb=False,
        lafb=False, lvh=False, avb1=False, max_LAD=0.0, max_LCx=0.0, max_RCA=0.0)


def window(x: np.ndarray, lead: str, start_s: float, end_s: float) -> np.ndarray:
    return x[:, LEAD[lead], int(500 * (1.0 + start_s)) : int(500 * (1.0 + end_s))]


def test_higher_potassium_gives_taller_t_in_v2_v4_and_lower_flat_t(healthy):
    normal, high, low = one_beat(healthy), one_beat(healthy.assign(potassium=6.8)), one_beat(healthy.assign(potassium=3.0))
    t_peak = lambda x: np.mean([np.abs(window(x, lead, 0.15, 0.45)).max(axis=1) for lead in ("V2", "V3", "V4")], axis=0)
    assert np.mean(t_peak(high)) > 1.4 * np.mean(t_peak(normal))
    assert np.mean(t_peak(low)) < 0.7 * np.mean(t_peak(normal))
    p_peak = lambda x: np.abs(window(x, "II", -0.35, -0.08)).max(axis=1)
    assert np.mean(p_peak(one_beat(healthy.assign(potassium=7.5)))) < 0.7 * np.mean(p_peak(normal))


def test_low_lvef_lowers_qrs_voltage_and_widens_it(healthy):
    normal, low = one_beat(healthy), one_beat(healthy.assign(lvef=22.0))
    qrs = lambda x: np.ptp(window(x, "V5", -0.08, 0.08), axis=1)
    assert np.mean(qrs(low)) < 0.85 * np.mean(qrs(normal))
    _, _, _, truth_low = morphology(healthy.assign(lvef=22.0), np.random.default_rng(1))
    _, _, _, truth = morphology(healthy, np.random.default_rng(1))
    assert truth_low["qrs_ms"].mean() > truth["qrs_ms"].mean() + 8


@pytest.mark.parametrize("vessel, leads", [("LAD", ("V2", "V3", "V4")), ("RCA", ("II",)), ("LCx", ("V6", "I"))])
def test_stenosis_depresses_st_and_inverts_t_in_its_territory(healthy, vessel, leads):
    normal, stenosed = one_beat(healthy), one_beat(healthy.assign(**{f"max_{vessel}": 90.0}))
    for lead in leads:
        st_normal = window(normal, lead, 0.08, 0.14).mean(axis=1)
        st_stenosed = window(stenosed, lead, 0.08, 0.14).mean(axis=1)
        assert np.mean(st_stenosed - st_normal) < -0.03, lead
        t_normal = window(normal, lead, 0.2, 0.4).mean(axis=1)
        t_stenosed = window(stenosed, lead, 0.2, 0.4).mean(axis=1)
        assert np.mean(t_stenosed - t_normal) < -0.03, lead
    mild = one_beat(healthy.assign(**{f"max_{vessel}": 30.0}))  # below the ischaemic threshold: no change
    np.testing.assert_allclose(mild, normal, atol=1e-6)


def test_high_pcwp_widens_p_and_deepens_its_terminal_part_in_v1(healthy):
    normal, high = one_beat(healthy), one_beat(healthy.assign(pcwp=32.0))
    assert np.mean(window(high, "V1", -0.3, -0.05).min(axis=1)) < np.mean(window(normal, "V1", -0.3, -0.05).min(axis=1)) - 0.05
    _, _, _, truth_high = morphology(healthy.assign(pcwp=32.0), np.random.default_rng(1))
    _, _, _, truth = morphology(healthy, np.random.default_rng(1))
    assert truth_high["p_ms"].mean() > truth["p_ms"].mean() + 15


def test_lbbb_widens_qrs_and_makes_v1_negative(healthy):
    lbbb = one_beat(healthy.assign(lbbb=True))
    normal = one_beat(healthy)
    assert np.mean(window(lbbb, "V1", -0.1, 0.12).min(axis=1)) < np.mean(window(normal, "V1", -0.1, 0.12).min(axis=1))


def test_angiograms_open_and_show_the_stenosis_table(tmp_path):
    import pydicom

    from stence_bench.data.dicom import read_angiography
    from stence_bench.data.layouts.dicom_folder import DicomLayout

    synthesize(tmp_path / "c", patients=3, seed=2)
    stenosis = pd.read_csv(tmp_path / "c" / "tables" / "stenosis.csv")
    files = sorted((tmp_path / "c" / "angiography").glob("*.dcm"))
    assert [f.stem for f in files] == [str(s) for s in sorted(stenosis["subject_id"].unique())]
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.Modality == "XA" and int(ds.NumberOfFrames) > 1 and ds.PatientID == f.stem
        angiogram = read_angiography(f)
        assert angiogram.frames.ndim == 3 and angiogram.patient_id == f.stem
    scan = DicomLayout().scan(tmp_path / "c" / "angiography")
    assert not scan.refs and not scan.problems and len(scan.tables["angiography"]) == 3
    assert set(stenosis["angiogram"]) == {f"angiography/{f.name}" for f in files}


def test_cli_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    result = CliRunner().invoke(cli, ["data", "synth", str(tmp_path), "--patients", "2"],
                                obj=Registry.load(environ=BUILTINS_ONLY))
    assert result.exit_code == 2 and result.output.strip() == f"Error: {tmp_path}: exists and is not empty; synthesize into a new folder"


def test_cli_compare_real(realdata, tmp_path):
    registry = Registry.load(environ=BUILTINS_ONLY)
    result = CliRunner().invoke(cli, ["data", "compare-real", "--realdata", str(realdata), "--patients", "40"], obj=registry)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("32 of 32 statistics with the synthetic median and interquartile range inside")
    missing = CliRunner().invoke(cli, ["data", "compare-real", "--realdata", str(tmp_path / "none")], obj=registry)
    assert missing.exit_code == 2 and missing.output.strip() == f"Error: --realdata {tmp_path / 'none'}: no such folder"
