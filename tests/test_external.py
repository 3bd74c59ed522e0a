"""External validation (issue 23): a task trained and tuned on its own dataset, tested on other datasets as cells of
their own, their results beside the internal ones in the tables and on the leaderboard."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench.cli import cli
from stence_bench.leaderboard.build import build, load_suites
from stence_bench import results as res
from stence_bench.protocol.data import Workspace
from stence_bench.protocol.evaluate import TaskData, score_cell, scoring_data
from stence_bench.protocol.runner import run_suite
from stence_bench.results.aggregate import aggregate
from stence_bench.registry import Registry
from stence_bench.suite import check_names, parse_suite, plan
from stence_bench.synth.cohort import synthesize


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def data(ids, patients, y, split, names=("sex: female",), groups=None):
    n = len(ids)
    return TaskData(task=None, rows=np.arange(n), record_ids=np.array(ids, dtype=object), patients=np.array(patients),
                    y=np.array(y, dtype=float)[:, None], split=np.array(split), classes=["x"],
                    subgroup_names=list(names), subgroups=np.array(groups if groups is not None else [[0]] * n, bool),
                    subgroup_min_patients=1)


def test_an_external_test_set_is_scored_with_the_internal_validation_thresholds(registry):
    internal = data(["t1", "t2", "v1", "v2", "s1"], ["a", "b", "c", "d", "e"], [1, 0, 1, 0, 1],
                    ["train", "train", "val", "val", "test"])
    external = type("E", (), {"data": data(["x1", "x2", "x3"], ["p", "q", "r"], [1, 0, 1], ["test"] * 3,
                                           groups=[[1], [1], [0]])})()
    scored = scoring_data(internal, external)
    assert scored.record_ids.tolist() == ["v1", "v2", "x1", "x2", "x3"]
    assert scored.split.tolist() == ["val", "val", "test", "test", "test"]
    assert scored.subgroups[:, 0].tolist() == [False, False, True, True, False]
    task = registry.tasks.get("lvef.35")
    out = score_cell(task, scored, np.array([0.8, 0.3]), np.array([0.9, 0.85, 0.5]), 5, 0)
    # threshold on the internal validation records: 0.8 (F1 1). External: AUROC of 0.9, 0.5 vs 0.85 = (1 + 0) / 2;
    # at >= 0.8: TP 1 (0.9), FP 1 (0.85), FN 1 (0.5): F1 2 / 4 = 0.5, sensitivity 1 / 2
    assert out["thresholds"] == [0.8]
    assert out["scores"]["test"]["auroc"] == pytest.approx(0.5)
    assert out["scores"]["test"]["f1"] == pytest.approx(0.5) and out["scores"]["test"]["sensitivity"] == pytest.approx(0.5)
    # the external subgroup (x1, x2): 0.9 above 0.85 -> 1
    assert out["subgroups"]["sex: female"]["value"] == pytest.approx(1.0)
    assert out["predictions"]["test_ids"].tolist() == ["x1", "x2", "x3"]


BASE = """
name = "e"
tasks = ["lvef.35"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["none"]
controls = false
[protocol]
stages = ["linear_probe", "finetune"]
fractions = [0.5, 1.0]
draws = 2
"""


def test_external_cells_are_planned_beside_the_internal_ones_and_leave_their_keys_alone(registry):
    internal = plan(parse_suite(BASE), registry)
    suite = parse_suite(BASE + 'external = [{task = "lvef.35", datasets = ["ptbxl"]}]\n')
    cells = plan(suite, registry)
    assert [c.key for c in cells if c.test_dataset is None] == [c.key for c in internal]
    external = [c for c in cells if c.test_dataset is not None]
    assert len(external) == len(internal) and {c.test_dataset for c in external} == {"ptbxl"}
    assert "test_dataset" not in internal[0].model_dump() and external[0].label.endswith("tested on ptbxl")


def test_an_external_validation_naming_what_the_suite_lacks_is_a_one_line_error(registry):
    suite = parse_suite(BASE + 'external = [{task = "lvef.3", datasets = ["ptbxl"]}, '
                               '{task = "lvef.35", datasets = ["mimic-iv-ecg", "ptbx", "ptbxl", "ptbxl"]}]\n')
    assert [p for p in check_names(suite, registry, "s") if "external" in p] == [
        "s: protocol.external[0].task: 'lvef.3' is not a task of the suite; did you mean 'lvef.35'? (tasks: lvef.35)",
        "s: protocol.external[1].datasets[0]: 'mimic-iv-ecg' is task 'lvef.35''s own dataset (its test split is the "
        "internal result)",
        "s: protocol.external[1].datasets[1]: dataset 'ptbx' has no source; did you mean 'ptbxl'? (add "
        "[data.sources.ptbx] path = \"...\"; sources: mimic-iv-ecg, ptbxl)",
        "s: protocol.external[1].datasets[3]: task 'lvef.35' is tested on 'ptbxl' twice",
    ]


# -- end to end: two hospitals (two synthetic cohorts) -----------------------------------------------------------

TWO = """
name = "ext"
tasks = ["lvef.35", "lvef.regression"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["none"]
controls = false
[protocol]
stages = ["linear_probe", "finetune"]
fractions = [1.0]
bootstrap = 20
finetune = {max_epochs = 1, patience = 1, batch_size = 32}
external = [{task = "lvef.35", datasets = ["hospital-b"]}, {task = "lvef.regression", datasets = ["hospital-b"]}]
[data]
pretrain = "mimic-iv-ecg"
[data.sources.mimic-iv-ecg]
path = "BASE/a/mimic-iv-ecg"
tables = "BASE/a/tables"
[data.sources.hospital-b]
path = "BASE/b/mimic-iv-ecg"
layout = "mimic-iv-ecg"
tables = "BASE/b/tables"
"""


@pytest.fixture(scope="module")
def two_hospitals(tmp_path_factory, registry):
    base = tmp_path_factory.mktemp("hospitals")
    synthesize(base / "a", patients=60, seed=1, angiograms=False)
    synthesize(base / "b", patients=40, seed=2, angiograms=False)
    suite = parse_suite(TWO.replace("BASE", str(base)))
    assert check_names(suite, registry, "s") == []
    run_suite(suite, registry, base / "run", echo=lambda line: None)
    return base, suite


def test_a_task_is_tested_on_every_labelled_record_of_the_other_hospital(two_hospitals, registry):
    base, suite = two_hospitals
    results = res.read_results([base / "run"])
    assert all(r.status == "done" for r in results), [r.error for r in results if r.error]
    ws = Workspace(suite, registry, base / "run", echo=lambda line: None)
    for task_name in ("lvef.35", "lvef.regression"):
        labelled_b = set(ws.labels(registry.tasks.get(task_name).model_copy(
            update={"dataset": "hospital-b", "name": f"{task_name}-b"})).index)
        for stage in ("linear_probe", "finetune"):
            internal = next(r for r in results if (r.cell.task, r.cell.stage, r.cell.test_dataset) ==
                            (task_name, stage, None))
            external = next(r for r in results if (r.cell.task, r.cell.stage, r.cell.test_dataset) ==
                            (task_name, stage, "hospital-b"))
            p_in = res.read_predictions(base / "run" / "results" / internal.predictions)
            p_ex = res.read_predictions(base / "run" / "results" / external.predictions)
            assert set(p_ex["test_ids"]) == labelled_b  # every labelled ECG of hospital B, none left out
            assert external.train["tested_on"] == {"dataset": "hospital-b", "records": len(labelled_b),
                                                   "patients": len(set(p_ex["test_patients"])), "dropped_overlap": 0}
            # the same training and validation: the internal cell's validation predictions and threshold
            assert np.array_equal(p_ex["val_ids"], p_in["val_ids"])
            if stage == "linear_probe":
                assert np.allclose(p_ex["val_pred"], p_in["val_pred"]) and external.thresholds == internal.thresholds
            assert external.train["sampled_ids_hash"] == internal.train["sampled_ids_hash"]
    # an external test set is held out of pretraining like any test set
    held = ws.held_out()
    b = ws.dataset("hospital-b")
    assert {("hospital-b", p) for p in b.patients.to_numpy()} <= held.patients


def test_tables_and_the_leaderboard_keep_internal_and_external_apart_side_by_side(two_hospitals, registry):
    base, _ = two_hospitals
    results = res.read_results([base / "run"])
    rows = aggregate(results)
    assert {(r.task, r.stage, r.test_dataset) for r in rows} == {
        (t, s, d) for t in ("lvef.35", "lvef.regression") for s in ("linear_probe", "finetune")
        for d in (None, "hospital-b")}
    by_key = {(r.cell.task, r.cell.stage, r.cell.test_dataset): r.value for r in results}
    for row in rows:
        assert row.mean == by_key[(row.task, row.stage, row.test_dataset)]
    site = build(load_suites([base / "run"]), registry)
    page = next(t for t in site.suites[0].tasks if t.name == "lvef.regression")
    assert [g.label for g in page.stages] == ["linear probe, internal", "linear probe, external: hospital-b",
                                               "finetune, internal", "finetune, external: hospital-b"]
    cells = dict(zip([c.id for c in page.columns], page.rows[0].cells))
    assert cells["linear_probe|all|1"].mean == by_key[("lvef.regression", "linear_probe", None)]
    assert cells["linear_probe|all|1|hospital-b"].mean == by_key[("lvef.regression", "linear_probe", "hospital-b")]
    out = CliRunner().invoke(cli, ["results", "show", str(base / "run")]).output
    assert "tested on" in out and "hospital-b" in out and "internal" in out


SHARED = """
name = "shared"
tasks = ["lvef.regression"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["none"]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 20
external = [{task = "lvef.regression", datasets = ["ptbxl"]}]
[data]
pretrain = "mimic-iv-ecg"
[data.sources.mimic-iv-ecg]
path = "BASE/mimic-iv-ecg"
tables = "BASE/tables"
patient_namespace = "hospital"
[data.sources.ptbxl]
path = "BASE/ptbxl"
tables = "BASE/tables"
options = {rate = 100}
patient_namespace = "hospital"
"""


def test_an_external_dataset_of_the_same_patients_keeps_only_those_the_model_never_saw(tmp_path, registry):
    # the cohort's PTB-XL export holds the same patients (one patient namespace): its records of the internal
    # training and validation patients are left out of the external test set, and counted
    synthesize(tmp_path / "c", patients=60, seed=3, angiograms=False)
    suite = parse_suite(SHARED.replace("BASE", str(tmp_path / "c")))
    run_suite(suite, registry, tmp_path / "run", echo=lambda line: None)
    results = {r.cell.test_dataset: r for r in res.read_results([tmp_path / "run"])}
    assert all(r.status == "done" for r in results.values()), [r.error for r in results.values()]
    p_in = res.read_predictions(tmp_path / "run" / "results" / results[None].predictions)
    p_ex = res.read_predictions(tmp_path / "run" / "results" / results["ptbxl"].predictions)
    seen = set(results[None].train["sampled_patients"]) | set(p_in["val_patients"])
    ws = Workspace(suite, registry, tmp_path / "run", echo=lambda line: None)
    labelled = ws.labels(registry.tasks.get("lvef.regression").model_copy(
        update={"dataset": "ptbxl", "name": "lvef-on-ptbxl"}))
    patients = ws.dataset("ptbxl").patients.reindex(labelled.index)
    expected = {rid for rid, p in patients.items() if p not in seen}
    assert set(p_ex["test_ids"]) == expected and not seen & set(p_ex["test_patients"])
    assert results["ptbxl"].train["tested_on"]["dropped_overlap"] == len(labelled) - len(expected) > 0
