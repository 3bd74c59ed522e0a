"""Prespecified subgroups (issue 23): membership by sex, age band and a task's columns, the main metric and its
patient-bootstrap interval on each subgroup, the worst subgroup of a row, and all of it end to end on the synthetic
cohort (results, ``results rescore``, the leaderboard) and on real PTB-XL / CinC 2021 files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY
from plugin_fixtures import Plugin

from stence_bench import TaskSpec
from stence_bench.cli import cli
from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.base import Layout
from stence_bench.data.layouts.cinc2021 import Cinc2021Layout
from stence_bench.data.layouts.ptbxl import PtbxlLayout
from stence_bench.data.store import ECGStore
from stence_bench.errors import StenceBenchError
from stence_bench.leaderboard.build import build, load_suites
from stence_bench import results as res
from stence_bench.protocol.data import Dataset
from stence_bench.protocol.evaluate import score_predictions, subgroup_scores
from stence_bench.protocol.runner import run_suite
from stence_bench.protocol.subgroups import band_names, membership
from stence_bench.results.aggregate import aggregate
from stence_bench.registry import Registry
from stence_bench.suite import DataSource, Subgroups, parse_suite, plan
from stence_bench.task_data import TaskSource

# -- scoring by hand ---------------------------------------------------------------------------------------------

# six test ECGs of five patients (r1 and r2 are one patient's), scored for a binary task
IDS = np.array(["r1", "r2", "r3", "r4", "r5", "r6"])
PATIENTS = np.array(["p1", "p1", "p2", "p3", "p4", "p5"])
Y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
PRED = np.array([0.9, 0.2, 0.4, 0.6, 0.8, 0.1])
NAMES = ["sex: female", "sex: male", "age <40"]
MEMBERS = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]], dtype=bool)


def predictions(n_val: int = 4) -> dict:
    return {"task_kind": np.array("binary"), "metric": np.array("auroc"), "classes": np.array(["x"]),
            "val_ids": IDS[:n_val], "val_patients": PATIENTS[:n_val], "val_y": Y[:n_val, None],
            "val_pred": PRED[:n_val, None], "test_ids": IDS, "test_patients": PATIENTS, "test_y": Y[:, None],
            "test_pred": PRED[:, None], "subgroup_names": np.array(NAMES), "test_subgroups": MEMBERS,
            "subgroup_min_patients": np.array(3)}


def test_each_subgroup_is_scored_by_the_main_metric_as_by_hand():
    out = score_predictions(predictions(), n_resamples=5, seed=0)["subgroups"]
    assert list(out) == NAMES
    # female: positives r1 (0.9), r3 (0.4); negatives r2 (0.2), r4 (0.6): 3 of 4 pairs ordered -> 0.75
    assert out["sex: female"]["value"] == pytest.approx(0.75)
    assert (out["sex: female"]["n"], out["sex: female"]["n_patients"], out["sex: female"]["counted"]) == (4, 3, True)
    # male: r5 (0.8) above r6 (0.1) -> 1.0, two patients: fewer than min_patients = 3, never the worst
    assert out["sex: male"]["value"] == pytest.approx(1.0) and out["sex: male"]["counted"] is False
    # one record, one class: undefined
    assert out["age <40"]["value"] is None and out["age <40"]["n"] == 1


def test_a_subgroup_interval_uses_the_cells_resamples_restricted_to_it():
    # three patient resamples (a patient's ECGs share a weight): p1 and p4 and p5 / p2 and p3 twice, p4, p5 / all
    # but p4 and p5
    weights = np.array([[1, 1, 0, 0, 1, 1], [0, 0, 2, 2, 1, 1], [1, 1, 1, 1, 0, 0]])
    out = subgroup_scores("binary", "auroc", Y, PRED, PATIENTS, NAMES, MEMBERS, weights, None, min_patients=1)
    # female: r1 vs r2 -> 1; r3 vs r4 -> 0; all four -> 0.75. Male: 1, 1, and undefined (nobody drawn)
    assert out["sex: female"]["values"] == [1.0, 0.0, 0.75]
    assert out["sex: male"]["values"] == [1.0, 1.0, None]
    # percentiles of [0, 0.75, 1]: 2.5 % at rank 0.05 -> 0.0375, 97.5 % at rank 1.95 -> 0.9875
    assert out["sex: female"]["ci"] == pytest.approx([0.0375, 0.9875])
    assert out["sex: male"]["ci"] == pytest.approx([1.0, 1.0])


def test_regression_subgroups_by_hand():
    y = np.array([50.0, 60.0, 30.0, 40.0])
    pred = np.array([55.0, 50.0, 36.0, 40.0])
    members = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    weights = np.array([[2, 0, 1, 1], [0, 1, 0, 0]])
    out = subgroup_scores("regression", "mae", y, pred, np.array(["a", "b", "c", "d"]), ["g1", "g2"], members,
                          weights, None, min_patients=1)
    assert out["g1"]["value"] == pytest.approx(7.5)  # (5 + 10) / 2
    assert out["g2"]["value"] == pytest.approx(3.0)  # (6 + 0) / 2
    assert out["g1"]["values"] == [5.0, 10.0]  # a twice; b alone
    assert out["g2"]["values"] == [3.0, None]  # c and d once; none drawn


# -- the worst subgroup of a row ---------------------------------------------------------------------------------


def _result(cell, value, subgroups, metric="auroc"):
    return res.CellResult(key=cell.key, cell=cell, status="done", started="", finished="", wall_s=0.0, metric=metric,
                          value=value, bootstrap={"n_resamples": 2, "seed": 0, "values": [value, value]},
                          subgroups={k: res.SubgroupScore(value=v, ci=[None, None], n=10, n_patients=10, counted=c,
                                                          values=vals) for k, (v, c, vals) in subgroups.items()})


def _two_draws(metric: str = "auroc"):
    suite = parse_suite(f"""
name = "w"
tasks = ["{'lvef.regression' if metric == 'mae' else 'lvef.35'}"]
encoders = [{{name = "resnet1d_wang", preset = "tiny"}}]
objectives = ["none"]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [0.5]
draws = 2
""")
    return plan(suite, Registry.load(environ=BUILTINS_ONLY))


def test_the_worst_subgroup_is_the_lowest_mean_among_those_with_enough_patients():
    c0, c1 = _two_draws()
    rows = aggregate([
        _result(c0, 0.8, {"sex: female": (0.70, True, [0.6, 0.8]), "sex: male": (0.90, True, [0.9, 0.9]),
                          "age >=80": (0.40, False, [0.4, 0.4])}),
        _result(c1, 0.8, {"sex: female": (0.80, True, [0.7, 0.9]), "sex: male": (0.60, True, [0.5, 0.7]),
                          "age >=80": (0.50, True, [0.5, 0.5])}),
    ])
    row = rows[0]
    # means: female 0.75, male 0.75, age >=80 0.45 but too few patients in draw 0: not a candidate; a tie goes to
    # the first listed
    assert row.subgroups == pytest.approx({"sex: female": 0.75, "sex: male": 0.75, "age >=80": 0.45})
    assert row.worst_subgroup == "sex: female" and row.worst_mean == pytest.approx(0.75)
    # its interval: on each resample the mean of two cells drawn from the two (values 0.6..0.9): inside [0.6, 0.9]
    assert 0.6 <= row.worst_low <= row.worst_high <= 0.9


def test_the_worst_subgroup_of_an_error_metric_is_the_highest():
    c0, c1 = _two_draws("mae")
    rows = aggregate([_result(c, 10.0, {"sex: female": (8.0, True, [8.0, 8.0]), "sex: male": (12.0, True, [12.0, 12.0])},
                              metric="mae") for c in (c0, c1)])
    assert rows[0].worst_subgroup == "sex: male" and rows[0].worst_mean == pytest.approx(12.0)
    assert (rows[0].worst_low, rows[0].worst_high) == pytest.approx((12.0, 12.0))


def test_results_without_subgroups_have_no_worst_subgroup():
    c0, c1 = _two_draws()
    rows = aggregate([_result(c0, 0.8, {}), _result(c1, 0.7, {})])
    assert rows[0].worst_subgroup is None and rows[0].subgroups == {}


# -- membership ----------------------------------------------------------------------------------------------------


def fake_dataset(metas: list[dict], layout: Layout, patients: list[str] | None = None,
                 tables: dict[str, pd.DataFrame] | None = None, name: str = "d"):
    ids = [f"e{i}" for i in range(len(metas))]
    records = pd.DataFrame({"record_id": ids, "patient_id": patients or ids, "time": "", "meta": metas})
    tables = tables or {}
    return SimpleNamespace(name=name, layout=layout, records=records, tables=tables,
                           task_source=TaskSource(name, records, tables))


def task(*subgroups: str) -> TaskSpec:
    return TaskSpec(name="t.x", dataset="d", task_kind="binary", labels="m:f", metric="auroc", subgroups=subgroups)


def test_age_bands_hold_their_lower_edge_and_unknown_values_are_in_no_subgroup():
    assert band_names((40.0, 60.0, 80.0)) == ["age <40", "age 40-59", "age 60-79", "age >=80"]
    assert band_names((65.5,)) == ["age <65.5", "age >=65.5"]
    ages = [39.9, 40.0, 59.99, 60.0, 80.0, None, "unknown"]
    data = fake_dataset([{"age": a, "sex": s} for a, s in zip(ages, ["F", "female", "M", "Male", "w", None, "x"])],
                        Layout())
    names, m = membership(data, task(), np.array([f"e{i}" for i in range(7)]), Subgroups())
    assert names == ["sex: female", "sex: male", "age <40", "age 40-59", "age 60-79", "age >=80"]
    assert m.astype(int).tolist() == [
        [1, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0], [0, 1, 0, 0, 1, 0],
        [1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    # no sex, other bands
    names, m = membership(data, task(), np.array(["e0", "e4"]), Subgroups(sex=False, age_bands=(50,)))
    assert names == ["age <50", "age >=50"] and m.astype(int).tolist() == [[1, 0], [0, 1]]


def test_sex_codes_per_layout_and_the_patients_table_fills_what_the_meta_lacks():
    # PTB-XL codes sex 0 male, 1 female; a generic layout gives a number no meaning
    metas = [{"sex": 1, "age": 70}, {"sex": 0}, {}, {"is_male": True}]
    data = fake_dataset(metas, PtbxlLayout(), patients=["a", "b", "c", "d"],
                        tables={"patients": pd.DataFrame({"subject_id": ["c", "b"], "sex": ["F", "F"],
                                                          "anchor_age": [30, 45]})})
    names, m = membership(data, task(), np.array(["e0", "e1", "e2", "e3"]), Subgroups(age_bands=(40,)))
    assert names == ["sex: female", "sex: male", "age <40", "age >=40"]
    # e1: the meta's sex wins over the table; e2: the table's sex and age; e3: is_male
    assert m.astype(int).tolist() == [[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0]]
    generic = fake_dataset([{"sex": 1}], Layout())
    assert not membership(generic, task(), np.array(["e0"]), Subgroups(age_bands=()))[1].any()


def test_a_tasks_columns_give_one_subgroup_per_value_from_meta_or_the_patients_table():
    data = fake_dataset([{"device": "B"}, {"device": "A"}, {}, {"device": "A"}], Layout(), patients=["a", "b", "c", "d"],
                        tables={"patients": pd.DataFrame({"subject_id": ["a", "b", "c"], "smoking": [1.0, None, 0.0]})})
    names, m = membership(data, task("device", "smoking"), np.array(["e0", "e1", "e2", "e3"]),
                          Subgroups(sex=False, age_bands=()))
    assert names == ["device: A", "device: B", "smoking: 0", "smoking: 1"]
    assert m.astype(int).tolist() == [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]


def test_a_missing_or_continuous_subgroup_column_is_a_one_line_error():
    data = fake_dataset([{"device": "A", "age": 50}], Layout())
    with pytest.raises(StenceBenchError, match=r"task 't.x': subgroup column 'site' is neither a record meta field "
                                               r"of dataset 'd' \(it has: age, device\)"):
        membership(data, task("site"), np.array(["e0"]), Subgroups())
    many = fake_dataset([{"heart_rate": 50 + i} for i in range(25)], Layout())
    with pytest.raises(StenceBenchError, match="subgroup column 'heart_rate' has 25 distinct values"):
        membership(many, task("heart_rate"), np.array([f"e{i}" for i in range(25)]), Subgroups())


def test_suite_subgroup_settings_are_checked_and_change_keys_only_when_set():
    with pytest.raises(Exception, match="age_bands: edges must increase"):
        parse_suite('name = "s"\ntasks = ["lvef.35"]\nencoders = ["resnet1d_wang"]\nobjectives = ["none"]\n'
                    "[protocol.subgroups]\nage_bands = [60, 40]\n")
    base = 'name = "s"\ntasks = ["lvef.35"]\nencoders = ["resnet1d_wang"]\nobjectives = ["none"]\ncontrols = false\n'
    registry = Registry.load(environ=BUILTINS_ONLY)
    default = plan(parse_suite(base), registry)
    explicit = plan(parse_suite(base + "[protocol.subgroups]\nmin_patients = 10\n"), registry)
    other = plan(parse_suite(base + "[protocol.subgroups]\nmin_patients = 5\n"), registry)
    assert [c.key for c in default] == [c.key for c in explicit]
    assert all("subgroups" not in c.settings for c in default)
    assert [c.key for c in default] != [c.key for c in other] and other[0].settings["subgroups"]["min_patients"] == 5


# -- real files: PTB-XL's coded sex and CinC 2021's header are the same subgroups --------------------------------


def test_ptbxl_and_cinc2021_give_the_same_ecgs_the_same_subgroups(realdata, tmp_path):
    scan = PtbxlLayout(rate=100, database="ptbxl_database_extract.csv").scan(realdata / "ptb-xl")
    records = pd.DataFrame({"record_id": [r.record_id for r in scan.refs], "patient_id": [r.patient_id for r in scan.refs],
                            "time": "", "meta": [r.meta for r in scan.refs]})
    ptbxl = SimpleNamespace(name="ptbxl", layout=PtbxlLayout(rate=100), records=records, tables={},
                            task_source=TaskSource("ptbxl", records, {}))
    ingest(realdata / "cinc2021", Cinc2021Layout(), tmp_path / "store")
    cinc = Dataset(name="cinc2021", store=ECGStore(tmp_path / "store"), source=DataSource(path=str(realdata)),
                   root=tmp_path, layout=Cinc2021Layout())
    ids = [str(i) for i in range(6000, 6005)]
    names, from_ptbxl = membership(ptbxl, task(), np.array(ids), Subgroups())
    names_cinc, from_cinc = membership(cinc, task(), np.array([f"HR0{i}" for i in ids]), Subgroups())
    assert names == names_cinc
    # ecg_id 6000-6004: 59 F, 78 F, 29 M, 46 F, 28 M (the extract's rows; the Challenge headers say the same)
    expected = {"sex: female": [1, 1, 0, 1, 0], "sex: male": [0, 0, 1, 0, 1], "age <40": [0, 0, 1, 0, 1],
                "age 40-59": [1, 0, 0, 1, 0], "age 60-79": [0, 1, 0, 0, 0], "age >=80": [0, 0, 0, 0, 0]}
    assert {n: from_ptbxl[:, j].astype(int).tolist() for j, n in enumerate(names)} == expected
    assert (from_cinc == from_ptbxl).all()


# -- end to end on the synthetic cohort ------------------------------------------------------------------------

SUITE = """
name = "subgroups"
tasks = ["ptbxl.superdiagnostic", "lvef.by_smoking"]
objectives = ["none"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = false

[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 20
subgroups = {min_patients = 2}

[data]
synthetic = {patients = 60, seed = 3, angiograms = false}
"""

BY_SMOKING = TaskSpec(name="lvef.by_smoking", dataset="mimic-iv-ecg", task_kind="regression",
                      labels="stence_bench_tasks.lvef:lvef_regression", options={"within": "14D"}, metric="mae",
                      source_columns=("echo.subject_id", "echo.echo_time", "echo.lvef"), subgroups=("smoking",))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    registry = Registry.load(extra=[Plugin("by-smoking", tasks=[BY_SMOKING])], environ=BUILTINS_ONLY)
    root = tmp_path_factory.mktemp("subgroups")
    run_suite(parse_suite(SUITE), registry, root, echo=lambda line: None)
    return root, registry


def test_every_cell_scores_its_subgroups_from_the_cohorts_own_tables(run):
    root, _ = run
    results = {r.cell.task: r for r in res.read_results([root])}
    cohort = next((root / "data").glob("synthetic-*"))
    patients = pd.read_csv(cohort / "tables" / "patients.csv").set_index("subject_id")
    for task_name, names in (("ptbxl.superdiagnostic", ["sex: female", "sex: male", "age <40", "age 40-59",
                                                        "age 60-79", "age >=80"]),
                             ("lvef.by_smoking", ["sex: female", "sex: male", "age <40", "age 40-59", "age 60-79",
                                                  "age >=80", "smoking: 0", "smoking: 1"])):
        r = results[task_name]
        assert list(r.subgroups) == names, task_name
        p = res.read_predictions(root / "results" / r.predictions)
        test_patients = p["test_patients"].astype(str)
        sex = patients["sex"].reindex(test_patients.astype(int)).to_numpy()
        # the cohort's own table says who is female; PTB-XL's export codes it 1 in its meta, MIMIC's in patients.csv
        assert p["test_subgroups"][:, 0].tolist() == (sex == "F").tolist(), task_name
        assert p["test_subgroups"][:, 1].tolist() == (sex == "M").tolist(), task_name
        if task_name == "lvef.by_smoking":
            smoking = patients["smoking"].reindex(test_patients.astype(int)).to_numpy()
            assert p["test_subgroups"][:, 7].tolist() == (smoking == 1.0).tolist()
            # MAE of the female test ECGs, by hand from the saved predictions
            female = p["test_subgroups"][:, 0]
            expected = np.abs(p["test_y"][female, 0] - p["test_pred"][female, 0]).mean()
            assert r.subgroups["sex: female"].value == pytest.approx(expected, rel=1e-6)
        for name, g in r.subgroups.items():
            assert len(g.values) == (20 if g.n else 0) and g.n == int(p["test_subgroups"][:, names.index(name)].sum())


def test_rescore_recomputes_the_subgroups_and_the_leaderboard_shows_the_worst(run, tmp_path):
    root, registry = run
    runner = CliRunner()
    assert "all agree" in runner.invoke(cli, ["results", "rescore", str(root)]).output
    path = next(p for p in (root / "results").glob("*.json") if '"lvef.by_smoking"' in p.read_text())
    stored = json.loads(path.read_text())
    tampered = json.loads(path.read_text())
    tampered["subgroups"]["sex: male"]["value"] = 0.0
    path.write_text(json.dumps(tampered))
    out = runner.invoke(cli, ["results", "rescore", str(root)])
    assert out.exit_code != 0 and "subgroups differ" in out.output
    runner.invoke(cli, ["results", "rescore", str(root), "--write"])
    assert res.read_result(path).subgroups["sex: male"].value == pytest.approx(stored["subgroups"]["sex: male"]["value"])

    site = build(load_suites([root]), registry)
    cells = {t.name: t.rows[0].cells[0] for t in site.suites[0].tasks}
    for name, cell in cells.items():
        r = next(r for r in res.read_results([root]) if r.cell.task == name)
        counted = {k: g.value for k, g in r.subgroups.items() if g.counted and g.value is not None}
        pick = max if name == "lvef.by_smoking" else min  # MAE: the highest is the worst
        assert cell.worst_subgroup == pick(counted, key=counted.get)
        assert cell.worst_mean == pytest.approx(counted[cell.worst_subgroup])
        assert f"worst subgroup {cell.worst_subgroup}" in cell.title
    show = runner.invoke(cli, ["results", "show", str(root)]).output
    assert "worst subgroup" in show and cells["lvef.by_smoking"].worst_subgroup in show


def test_a_result_file_without_subgroups_still_reads(run):
    root, _ = run
    path = next((root / "results").glob("*.json"))
    data = json.loads(path.read_text())
    data.pop("subgroups")
    assert res.CellResult.model_validate(data).subgroups == {}
