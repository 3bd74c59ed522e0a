"""The clinical task families (stenosis, LVEF, potassium, PCWP) and the CinC 2021 scored classes.

Labels are checked against the synthetic cohort's own ground truth (``tables/ecgs.csv``) and against a brute-force
nearest-in-time join written here, then on small hand-made tables for windows, directions and errors.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest
from conftest import BUILTINS_ONLY
from stence_bench_tasks import cinc2021, lvef, pcwp, potassium, stenosis

from stence_bench.plugin_loader import DEFAULT_PLUGINS
from stence_bench.registry import Registry
from stence_bench.specs import import_object
from stence_bench.synth.cohort import synthesize
from stence_bench.task_data import TaskDataError, TaskSource

MODULES = (stenosis, lvef, potassium, pcwp, cinc2021)


# -- the synthetic cohort --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    synthesize(out, patients=40, seed=5, angiograms=False)
    return out


def cohort_source(root: Path, **drop: str) -> TaskSource:
    """The TaskSource the runner builds for the cohort's MIMIC-IV-ECG export and its tables (``drop``: table ->
    column to remove, or ``"*"`` for the whole table)."""
    listing = pd.read_csv(root / "mimic-iv-ecg" / "record_list.csv")
    records = pd.DataFrame({"record_id": listing["study_id"].astype(str), "patient_id": listing["subject_id"].astype(str),
                            "time": listing["ecg_time"].astype(str), "meta": [{} for _ in range(len(listing))]})
    tables = {}
    for path in sorted((root / "tables").glob("*.csv")):
        table = pd.read_csv(path)
        if drop.get(path.stem) == "*":
            continue
        if path.stem in drop:
            table = table.drop(columns=drop[path.stem])
        tables[path.stem] = table
    return TaskSource("mimic-iv-ecg", records, tables)


@pytest.fixture(scope="module")
def source(cohort) -> TaskSource:
    return cohort_source(cohort)


@pytest.fixture(scope="module")
def truth(cohort) -> pd.DataFrame:
    return pd.read_csv(cohort / "tables" / "ecgs.csv", dtype={"study_id": str}).set_index("study_id")


def brute_nearest(source: TaskSource, table: str, time_column: str, value: str, hours: float) -> pd.Series:
    """Each record's value of its patient's row nearest in time within ``hours``: a plain loop, no merge_asof."""
    rows = source.table(table).dropna(subset=[value])
    by_patient = {str(p): g for p, g in rows.groupby("subject_id")}
    out = {}
    for record_id, patient, when in zip(source.records["record_id"], source.records["patient_id"],
                                        source.records["time"]):
        group = by_patient.get(patient)
        if group is None:
            continue
        gaps = (pd.to_datetime(group[time_column], format="ISO8601") - pd.Timestamp(when)).abs()
        best = gaps.idxmin()
        if gaps[best] <= pd.Timedelta(hours=hours):
            out[record_id] = float(group.loc[best, value])
    return pd.Series(out, dtype="float64").sort_index()


def check_frame(frame: pd.DataFrame, columns: list[str]) -> None:
    assert list(frame.columns) == columns
    assert frame.index.name == "record_id" and all(isinstance(i, str) for i in frame.index)
    assert frame.index.is_unique and (frame.dtypes == "float64").all()


def check_binary(frame: pd.DataFrame) -> pd.Series:
    assert frame.shape[1] == 1
    check_frame(frame, list(frame.columns))
    assert set(frame.iloc[:, 0].unique()) <= {0.0, 1.0}
    return frame.iloc[:, 0]


# -- stenosis ----------------------------------------------------------------------------------------------------


def test_stenosis_is_the_patients_worst_segment_on_every_ecg(source, truth, cohort):
    segments = pd.read_csv(cohort / "tables" / "stenosis.csv")
    worst = segments.groupby("subject_id")["stenosis_pct"].max()
    for pct in (50, 70, 90):
        labels = check_binary(stenosis.stenosis_labels(source, threshold_pct=pct))
        assert labels.name == f"stenosis_ge_{pct}"
        assert set(labels.index) == set(truth.index)  # no time column: every ECG of a patient is labelled
        expected = truth["subject_id"].map(worst) >= pct
        assert (labels == expected.loc[labels.index].astype(float)).all()
        # the cohort's per-ECG vessel maxima (left main counted for LAD and LCx) give the same worst segment
        vessel_worst = truth[["max_LAD", "max_LCx", "max_RCA"]].max(axis=1) >= pct
        assert (labels == vessel_worst.loc[labels.index].astype(float)).all()
    assert 0 < stenosis.stenosis_labels(source, threshold_pct=70).sum().item() < len(truth)


def test_stenosis_thresholds_nest(source):
    positives = {pct: set(stenosis.stenosis_labels(source, threshold_pct=pct).query(f"stenosis_ge_{pct} == 1").index)
                 for pct in (50, 70, 90)}
    assert positives[90] <= positives[70] <= positives[50]
    assert positives[70] < positives[50]


def test_stenosis_vessels_match_the_cohorts_vessel_maxima(source, truth):
    labels = stenosis.vessel_labels(source)
    check_frame(labels, ["LAD", "LCx", "RCA"])
    for artery in ("LAD", "LCx", "RCA"):
        expected = (truth[f"max_{artery}"] >= 70).astype(float).loc[labels.index]
        assert (labels[artery] == expected).all(), artery
    assert labels.sum().gt(0).all()


def test_the_intermediate_band_is_left_out_of_the_binary_task(source, truth, cohort):
    """StenCE's severity = (50, 70): worst 50 < x < 70 has no label; 50 exactly is negative, 70 positive."""
    table = pd.DataFrame({"subject_id": [1, 2, 3, 4, 5, 5], "segment": ["pLAD"] * 5 + ["pRCA"],
                          "stenosis_pct": [50, 51, 69.5, 70, 20, 60]})
    src = hand_source({"stenosis": table}, [(r, p, "") for r, p in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"),
                                                                     ("e", "5")]])
    labels = stenosis.stenosis_labels(src, threshold_pct=70, exclude_from_pct=50)
    assert labels["stenosis_ge_70"].to_dict() == {"a": 0.0, "d": 1.0}  # e's worst segment is 60: left out
    assert len(stenosis.stenosis_labels(src, threshold_pct=70)) == 5
    with pytest.raises(ValueError, match="exclude_from_pct \\(70\\) must be below threshold_pct \\(70\\)"):
        stenosis.stenosis_labels(src, threshold_pct=70, exclude_from_pct=70)
    # on the cohort: the band's records are exactly those with a worst segment in (50, 70), the rest unchanged
    worst = truth["subject_id"].map(pd.read_csv(cohort / "tables" / "stenosis.csv").groupby("subject_id")["stenosis_pct"].max())
    clear = stenosis.stenosis_labels(source, threshold_pct=70, exclude_from_pct=50)
    full = stenosis.stenosis_labels(source, threshold_pct=70)
    assert set(full.index) - set(clear.index) == set(worst[(worst > 50) & (worst < 70)].index) != set()
    assert (clear == full.loc[clear.index]).all().item()


def hand_source(tables: dict[str, pd.DataFrame], records: list[tuple[str, str, str]]) -> TaskSource:
    frame = pd.DataFrame(records, columns=["record_id", "patient_id", "time"]).assign(meta=[{}] * len(records))
    return TaskSource("mimic-iv-ecg", frame, tables)


def test_left_main_counts_for_lad_and_lcx_and_segment_names_map_without_a_vessel_column():
    table = pd.DataFrame({"subject_id": [1, 1, 2, 2, 3], "segment": ["LM", "pRCA", "mLAD", "OM1", "dRCA"],
                          "stenosis_pct": [80, 30, 20, 75, 95]})
    src = hand_source({"stenosis": table}, [("a", "1", ""), ("b", "2", ""), ("c", "3", ""), ("d", "4", "")])
    labels = stenosis.vessel_labels(src)
    assert labels.to_dict("index") == {"a": {"LAD": 1.0, "LCx": 1.0, "RCA": 0.0},
                                       "b": {"LAD": 0.0, "LCx": 1.0, "RCA": 0.0},
                                       "c": {"LAD": 0.0, "LCx": 0.0, "RCA": 1.0}}  # patient 4 has no angiogram
    with_vessel = table.assign(vessel=["lm", "RCA", "LAD", "LCx", "RCA"], segment=["s1", "s2", "s3", "s4", "s5"])
    assert stenosis.vessel_labels(hand_source({"stenosis": with_vessel}, [("a", "1", "")])).loc["a"].tolist() == [1, 1, 0]
    odd = table.assign(segment=["LM", "pRCA", "mLAD", "ramus", "dRCA"])
    with pytest.raises(TaskDataError, match="segment\\(s\\) 'ramus' have no known artery; give the table a 'vessel'"):
        stenosis.vessel_labels(hand_source({"stenosis": odd}, [("a", "1", "")]))
    graft = with_vessel.assign(vessel=["LM", "RCA", "LAD", "SVG", "RCA"])
    with pytest.raises(TaskDataError, match="column 'vessel' has value\\(s\\) 'svg'"):
        stenosis.vessel_labels(hand_source({"stenosis": graft}, [("a", "1", "")]))
    # the patient-level task needs no artery at all
    assert stenosis.stenosis_labels(hand_source({"stenosis": odd}, [("a", "1", "")]), threshold_pct=70).loc["a"].item() == 1


def test_a_timed_stenosis_table_pairs_each_ecg_with_the_next_angiogram_in_the_window():
    table = pd.DataFrame({
        "subject_id": [1, 1, 1, 1],
        "angio_time": ["2150-03-01 10:00", "2150-03-01 10:00", "2150-06-01 09:00", "2150-06-01 09:00"],
        "segment": ["pLAD", "pRCA", "pLAD", "pRCA"], "stenosis_pct": [90, 20, 0, 20],  # the LAD was stented
    })
    ecgs = [("before", "1", "2150-02-20T08:00:00"), ("after", "1", "2150-03-05 08:00:00"),
            ("before2", "1", "2150-05-30 08:00:00"), ("far", "1", "2150-01-01 08:00:00")]
    src = hand_source({"stenosis": table}, ecgs)
    labels = stenosis.stenosis_labels(src, threshold_pct=70)["stenosis_ge_70"].to_dict()
    # "after" follows the stenting, "far" is 59 days before the first angiogram: neither has a label
    assert labels == {"before": 1.0, "before2": 0.0}
    nearest = stenosis.stenosis_labels(src, threshold_pct=70, direction="nearest")["stenosis_ge_70"].to_dict()
    assert nearest["after"] == 1.0  # the angiogram 4 days before it
    wide = stenosis.stenosis_labels(src, threshold_pct=70, within="90D")["stenosis_ge_70"].to_dict()
    assert wide["far"] == 1.0
    # with time_column=None the table is read per patient: several angiograms of one patient are the worst of all
    assert stenosis.stenosis_labels(src, threshold_pct=70, time_column=None)["stenosis_ge_70"].tolist() == [1.0] * 4


# -- LVEF, potassium, PCWP ---------------------------------------------------------------------------------------


def test_lvef_is_the_nearest_echo_within_two_weeks(source, truth):
    expected = brute_nearest(source, "echo", "echo_time", "lvef", hours=14 * 24)
    values = lvef.lvef_regression(source)
    check_frame(values, ["lvef"])
    assert len(values) >= 10 and len(values) < len(truth)  # ECGs far from the echo have none
    pd.testing.assert_series_equal(values["lvef"], expected, check_names=False, check_index_type=False)
    assert (values["lvef"] - truth.loc[values.index, "lvef"]).abs().max() < 15  # the echo measures the truth
    for pct in (35, 40, 50):
        labels = check_binary(lvef.lvef_labels(source, threshold_pct=pct))
        assert labels.name == f"lvef_le_{pct}"
        assert (labels == (expected <= pct).astype(float)).all()
    positives = [set(lvef.lvef_labels(source, threshold_pct=p).query(f"lvef_le_{p} == 1").index) for p in (35, 40, 50)]
    assert positives[0] <= positives[1] <= positives[2]
    narrower = lvef.lvef_regression(source, within="2D")
    assert set(narrower.index) < set(values.index)  # the window decides which ECGs have a label


def test_potassium_is_the_nearest_draw_within_four_hours(source, truth):
    expected = brute_nearest(source, "labs", "charttime", "potassium", hours=4)
    values = potassium.potassium_values(source).sort_index()
    pd.testing.assert_series_equal(values, expected, check_names=False, check_index_type=False)
    close = (values - truth.loc[values.index, "potassium"]).abs() <= 0.5  # the draw measures the ECG's potassium
    assert close.mean() > 0.95
    high = check_binary(potassium.potassium_labels(source, op="ge", threshold_mmol=5.5))
    assert high.name == "potassium_ge_5.5" and (high == (expected >= 5.5).astype(float)).all()
    severe = potassium.potassium_labels(source, op="ge", threshold_mmol=6.0)["potassium_ge_6"]
    assert set(severe[severe == 1].index) <= set(high[high == 1].index)
    low = potassium.potassium_labels(source, op="lt", threshold_mmol=3.5)["potassium_lt_3.5"]
    assert (low == (expected < 3.5).astype(float)).all()
    assert not set(low[low == 1].index) & set(high[high == 1].index)


def test_pcwp_is_the_nearest_catheterisation_within_a_day(source):
    expected = brute_nearest(source, "cath", "cath_time", "pcwp_mean", hours=24)
    values = pcwp.pcwp_regression(source)
    check_frame(values, ["pcwp_mean"])
    assert len(values) > 0
    pd.testing.assert_series_equal(values["pcwp_mean"], expected, check_names=False, check_index_type=False)
    for mmhg in (15, 18):
        labels = check_binary(pcwp.pcwp_labels(source, threshold_mmhg=mmhg))
        assert (labels == (expected > mmhg).astype(float)).all()


def test_a_far_lab_is_never_a_label_and_direction_picks_the_side():
    labs = pd.DataFrame({"subject_id": ["7", "7", "7", "8"],
                         "charttime": ["2150-01-01 07:00", "2150-01-01 13:30", "2150-01-01T10:30:00", "2150-01-03"],
                         "potassium": [6.5, 3.0, None, 5.0]})  # the 10:30 row is another analyte
    ecgs = [("e1", "7", "2150-01-01 12:00:00"), ("e2", "8", "2150-01-01 12:00:00"),
            ("e3", "9", "2150-01-01 12:00:00"), ("e4", "7", "")]
    src = hand_source({"labs": labs}, ecgs)
    assert potassium.potassium_values(src).to_dict() == {"e1": 3.0}  # 1.5 h after; e2's draw is 36 h away
    assert potassium.potassium_values(src, direction="backward").to_dict() == {}  # the draw before is 5 h before
    assert potassium.potassium_values(src, within="1h").to_dict() == {}
    assert potassium.potassium_values(src, within="2D").to_dict() == {"e1": 3.0, "e2": 5.0}
    labels = potassium.potassium_labels(src, op="ge", threshold_mmol=5.5, direction="backward", within="6h")
    assert labels.to_dict("index") == {"e1": {"potassium_ge_5.5": 1.0}}


def test_times_in_any_iso_form_and_numeric_patient_ids_join():
    echo = pd.DataFrame({"subject_id": [10000001.0, 10000002.0], "echo_time": ["2150-01-02", "2150-01-02T00:00:00+02:00"],
                         "lvef": ["30", 55]})
    ecgs = [("1", "10000001", "2150-01-01T12:00:00.123456789"), ("2", "10000002", "2150-01-01 23:00:00+01:00")]
    values = lvef.lvef_values(hand_source({"echo": echo}, ecgs), within="1D")
    assert values.to_dict() == {"1": 30.0, "2": 55.0}


def test_missing_tables_columns_and_unreadable_values_are_named(cohort):
    with pytest.raises(TaskDataError, match="dataset .mimic-iv-ecg.: needs table .echo. .echo.csv in the suite.s tables folder.*it has: angiography_embeddings, cath, ecgs, labs"):
        lvef.lvef_labels(cohort_source(cohort, echo="*"), threshold_pct=35)
    with pytest.raises(TaskDataError, match="table 'labs' lacks column\\(s\\) potassium \\(has: subject_id, charttime\\)"):
        potassium.potassium_labels(cohort_source(cohort, labs="potassium"), op="ge", threshold_mmol=5.5)
    with pytest.raises(TaskDataError, match="table 'cath' lacks column\\(s\\) cath_time"):
        pcwp.pcwp_regression(cohort_source(cohort, cath="cath_time"))
    with pytest.raises(TaskDataError, match="table 'stenosis' lacks column\\(s\\) stenosis_pct"):
        stenosis.stenosis_labels(cohort_source(cohort, stenosis="stenosis_pct"))
    with pytest.raises(TaskDataError, match="needs table 'stenosis'"):
        stenosis.vessel_labels(cohort_source(cohort, stenosis="*"))
    bad_time = pd.DataFrame({"subject_id": [1], "charttime": ["yesterday"], "potassium": [4.0]})
    with pytest.raises(TaskDataError, match="table 'labs' column 'charttime': cannot read 'yesterday' as a time"):
        potassium.potassium_values(hand_source({"labs": bad_time}, [("a", "1", "2150-01-01")]))
    bad_value = pd.DataFrame({"subject_id": [1], "charttime": ["2150-01-01"], "potassium": ["hemolysed"]})
    with pytest.raises(TaskDataError, match="column 'potassium': cannot read 'hemolysed' as a number"):
        potassium.potassium_values(hand_source({"labs": bad_value}, [("a", "1", "2150-01-01")]))
    good = bad_value.assign(potassium=4.0)
    no_times = TaskSource("x", pd.DataFrame({"record_id": ["a"], "patient_id": ["1"]}), {"labs": good})
    with pytest.raises(TaskDataError, match="dataset 'x': its records lack column\\(s\\) time"):
        potassium.potassium_values(no_times)
    with pytest.raises(ValueError, match="within: cannot read 'soon' as a time span"):
        potassium.potassium_values(hand_source({"labs": good}, [("a", "1", "2150-01-01")]), within="soon")


# -- CinC 2021 ---------------------------------------------------------------------------------------------------


def test_cinc2021_classes_are_the_challenges_26_with_its_merged_pairs():
    classes = cinc2021.scored_classes()
    assert len(classes) == 26 and len({code for _, codes, _ in classes for code in codes}) == 30
    merged = {name: abbr for name, codes, abbr in classes if len(codes) == 2}
    assert merged == {"733534002|164909002": "CLBBB|LBBB", "713427006|59118001": "CRBBB|RBBB",
                      "284470004|63593006": "PAC|SVPB", "427172004|17338001": "PVC|VPB"}
    assert {"|".join(pair) for pair in cinc2021.EQUIVALENT} == set(merged)
    table = pd.read_csv(files("stence_bench.data") / "snomed" / "dx_mapping_scored.csv", dtype={"SNOMEDCTCode": str})
    noted = table.dropna(subset=["Notes"])
    for a, b in cinc2021.EQUIVALENT:  # the table's own notes say so
        assert noted["Notes"].str.contains(f"{a} and {b}").any()


def test_cinc2021_labels_from_meta_dx():
    records = pd.DataFrame({
        "record_id": ["r1", "r2", "r3", "r4", "r5"], "patient_id": [None] * 5, "time": [""] * 5,
        "meta": [{"dx": ["59118001", "426783006"]}, '{"dx": ["713427006"], "age": 50}', {"dx": ["164873001"]},
                 {"age": 3}, {"dx": "17338001,284470004"}],
    })
    labels = cinc2021.scored_labels(TaskSource("cinc2021", records, {}))
    names = [name for name, _, _ in cinc2021.scored_classes()]
    check_frame(labels, names)
    positives = {r: sorted(labels.columns[labels.loc[r] == 1]) for r in labels.index}
    assert positives == {"r1": ["426783006", "713427006|59118001"], "r2": ["713427006|59118001"], "r3": [],
                         "r5": ["284470004|63593006", "427172004|17338001"]}  # r4 has no dx: no label
    assert list(cinc2021.scored_labels(TaskSource("cinc2021", records, {}), drop_unscored=True).index) == ["r1", "r2", "r5"]
    bare = records.assign(meta=[{}] * 5)
    with pytest.raises(TaskDataError, match="no record has SNOMED-CT codes \\('dx'\\) in its meta; ingest .*cinc2021"):
        cinc2021.scored_labels(TaskSource("cinc2021", bare, {}))


def test_cinc2021_labels_of_the_real_challenge_records(realdata):
    from stence_bench.data.layouts.cinc2021 import Cinc2021Layout

    layout = Cinc2021Layout()
    scan = layout.scan(realdata / "cinc2021")
    records = pd.DataFrame([{"record_id": ref.record_id, "patient_id": None, "time": "",
                             "meta": layout.read(ref).meta} for ref in scan.refs])
    labels = cinc2021.scored_labels(TaskSource("cinc2021", records, scan.tables))
    assert len(labels) == 25
    assert sorted(labels.columns[labels.loc["HR06000"] == 1]) == ["164934002", "426783006"]  # TAb, NSR
    for record in labels.index:  # every scored code of the header is a positive class, and nothing else
        header = (realdata / "cinc2021" / f"{record}.hea").read_text()
        codes = next(line for line in header.splitlines() if line.startswith("# Dx:")).split(":", 1)[1].split(",")
        classes = {name for name, members, _ in cinc2021.scored_classes() if set(members) & {c.strip() for c in codes}}
        assert set(labels.columns[labels.loc[record] == 1]) == classes, record
    assert labels["713427006|59118001"].sum() == 1  # a JS record's plain RBBB (59118001) is the merged class


# -- registration --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Registry:
    extra = [m for m in MODULES if m.__name__ not in DEFAULT_PLUGINS]
    return Registry.load(extra=extra, environ=BUILTINS_ONLY)


EXPECTED = {
    "stenosis.50": ("binary", "auroc"), "stenosis.70": ("binary", "auroc"), "stenosis.90": ("binary", "auroc"),
    "stenosis.vessels": ("multilabel", "auroc"),
    "lvef.35": ("binary", "auroc"), "lvef.40": ("binary", "auroc"), "lvef.50": ("binary", "auroc"),
    "lvef.regression": ("regression", "mae"),
    "potassium.5.5": ("binary", "auroc"), "potassium.6.0": ("binary", "auroc"), "potassium.low": ("binary", "auroc"),
    "pcwp.15": ("binary", "auroc"), "pcwp.18": ("binary", "auroc"), "pcwp.regression": ("regression", "mae"),
    "cinc2021.scored": ("multilabel", "auroc"),
}


def test_registered_specs_run_on_the_cohort_through_their_label_functions(registry, source):
    for name, (kind, metric) in EXPECTED.items():
        spec = registry.tasks.get(name)
        assert (spec.task_kind, spec.metric, spec.split, spec.version) == (kind, metric, "patient", "1"), name
        assert spec.citation and spec.description and spec.source_columns, name
        package, _, card = spec.card.partition(":")
        text = files(package).joinpath(card).read_text()
        assert f"`{name}`" in text and "**Citation.**" in text, name
        if name.startswith("cinc2021"):
            assert spec.dataset == "cinc2021"
            continue
        assert spec.dataset == "mimic-iv-ecg"
        for column in spec.source_columns:
            table, _, col = column.partition(".")
            assert col in source.table(table).columns, column
        labels = import_object(spec.labels, what=f"task {name!r}")(source, **spec.options)
        assert len(labels) > 0 and labels.index.isin(source.records["record_id"]).all(), name
        assert labels.shape[1] == {"binary": 1, "regression": 1, "multilabel": 3}[kind], name
    assert registry.tasks.get("lvef.35").options == {"threshold_pct": 35, "within": "14D"}
    assert registry.tasks.get("potassium.low").options == {"op": "lt", "threshold_mmol": 3.5, "within": "4h"}
    assert registry.tasks.get("pcwp.18").options == {"threshold_mmhg": 18, "within": "24h"}


def test_registering_the_families_imports_neither_pandas_nor_torch():
    code = ("import sys; import stence_bench_tasks.stenosis, stence_bench_tasks.lvef, stence_bench_tasks.potassium, "
            "stence_bench_tasks.pcwp, stence_bench_tasks.cinc2021, stence_bench_tasks.ptbxl; "
            "print(sorted(m for m in ('pandas', 'torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
