"""The five papers' reproduction suites (leaderboards/{stence,dade,fgclep,jeong,clef}.toml): each validates as shipped
and runs on the synthetic cohort with its protocol shrunk here (tiny presets, one epoch, all labels, one draw, a
small bootstrap, few patients), never in the shipped files; and the pretraining targets they rely on."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import BUILTINS_ONLY

from stence_bench.plugin_loader import ENV_BLOCK
from stence_bench.results import read_results
from stence_bench.protocol.runner import run_suite
from stence_bench.registry import Registry
from stence_bench.suite import Suite, check_names, parse_suite, validate_suite

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
PAPERS = ("stence", "dade", "fgclep", "jeong", "clef")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One run folder for every paper's reduced run: the cohort is generated and ingested once."""
    return tmp_path_factory.mktemp("papers")


def shipped(name: str) -> dict:
    return tomllib.loads((LEADERBOARDS / f"{name}.toml").read_text())


def reduced(name: str, tasks: list[str], *, encoders: int = 1, **protocol) -> Suite:
    """The shipped suite with a test-sized protocol: tiny presets, 1 epoch, fraction 1, 20 bootstrap resamples, the
    cheapest evaluation stages, 40 patients, no controls, some of its tasks and its last ``encoders`` encoders (every
    one validates as shipped, and every contract variant meets the encoder contract in test_encoders.py); objectives,
    their options and lead sets as shipped."""
    data = shipped(name)
    assert set(tasks) <= set(data["tasks"])
    data["tasks"], data["controls"], data["encoders"] = tasks, False, data["encoders"][-encoders:]
    for encoder in data["encoders"]:
        encoder["preset"] = "tiny"
    stages = [s for s in data["protocol"]["stages"] if s != "finetune"]
    data["protocol"] = {**data["protocol"], "stages": stages, "fractions": [1.0], "draws": 1, "bootstrap": 20,
                        "pretrain": {"epochs": 1, "batch_size": 16, "lr": 1e-3}, **protocol}
    data["protocol"].pop("finetune", None)
    data["data"]["synthetic"] = {"patients": 40, "seed": 0, "angiograms": False}
    return Suite.model_validate(data)


def run(name: str, tasks: list[str], root: Path, registry: Registry, **protocol):
    suite = reduced(name, tasks, **protocol)
    outcomes = run_suite(suite, registry, root, echo=lambda line: None)
    assert outcomes and all(o.status == "done" for o in outcomes), [o.error for o in outcomes if o.error]
    results = [r for r in read_results([root]) if r.cell.key in {o.key for o in outcomes}]
    return suite, {r.cell.objective: r.pretrain for r in results if r.cell.stage == "pretrain"}, results


@pytest.mark.parametrize("name", PAPERS)
def test_the_paper_suites_validate_as_shipped(name, registry):
    suite, _ = validate_suite(LEADERBOARDS / f"{name}.toml", registry)
    assert suite.name == name


def test_stence_pretrains_with_the_auxiliary_stenosis_loss_on_the_stenosis_table(root, registry):
    """Before: `clip` with aux_stenosis_weight passed validate and failed every pretraining cell (it read report
    statements as stenosis labels); `stence` takes the patients' stenosis labels as its own batch key."""
    suite, pretrain, results = run("stence", ["stenosis.70", "stenosis.70.clear"], root, registry)
    info = pretrain["stence"]
    assert info["targets"] == ["stenosis.70", "stenosis.vessels"]
    assert info["target_columns"] == [["stenosis_ge_70"], ["LAD", "LCx", "RCA"]]
    assert info["modality_encoders"] == {"angiography": "angio_embedding"}
    assert "targets" not in pretrain["clip"]
    # every stenosis task of the suite is scored, the intermediate band's patients left out of stenosis.70.clear
    scored = {r.cell.task: r for r in results if r.cell.stage == "linear_probe" and r.cell.objective == "stence"}
    assert set(scored) == set(suite.tasks)
    assert scored["stenosis.70.clear"].n["test"] <= scored["stenosis.70"].n["test"]


def test_dade_pretrains_with_inter_lead_segment_and_patient_positives(root, registry):
    suite, pretrain, _ = run("dade", ["lvef.35"], root, registry)
    info = pretrain["patient_contrastive"]
    assert len(info["losses"]) == 1 and info["losses"][0] > 0
    assert {c.name for c in suite.encoders} == {"temporalnet"}


def test_fgclep_records_which_soft_targets_it_trained_with(root, registry):
    _, pretrain, results = run("fgclep", ["ptbxl.superdiagnostic"], root, registry)
    assert pretrain["siglip"]["soft_targets"] == "jaccard"  # the learned text encoder: no pretrained similarity
    assert any(r.cell.stage == "zero_shot" for r in results)


def test_jeong_supervised_metric_learning_mines_on_the_cath_tables_pcwp(root, registry):
    _, pretrain, _ = run("jeong", ["pcwp.regression"], root, registry)
    supervised = pretrain["metric_learning_supervised"]
    assert supervised["targets"] == ["pcwp.regression"] and supervised["target_columns"] == [["pcwp_mean"]]
    assert supervised["miner"] == "continuous" and supervised["variant"] == "published"
    assert pretrain["metric_learning"]["miner"] == "distance"
    # only the records with an mPCWP pretrain the supervised objective
    assert supervised["records"] < pretrain["metric_learning"]["records"]


def test_clef_pretrains_the_released_loss_and_scores_lead_one_and_all_leads(root, registry):
    _, pretrain, results = run("clef", ["ptbxl.superdiagnostic"], root, registry)
    assert pretrain["clef"]["variant"] == "published" and pretrain["clef"]["single_lead_views"] is True
    assert {r.cell.leads for r in results if r.cell.stage == "linear_probe"} == {"I", "all"}


def test_target_tasks_a_suite_names_are_checked(registry):
    suite = parse_suite(
        'name = "t"\ntasks = ["pcwp.18"]\nencoders = ["resnet1d_wang"]\n'
        'objectives = [{name = "metric_learning_supervised", options = {targets = ["pcwp.regresion"]}},'
        ' {name = "clip", options = {targets = ["pcwp.18"]}}]\n')
    problems = check_names(suite, registry, "t.toml")
    assert any("objectives[0].options.targets[0]: objective 'metric_learning_supervised' trains on the labels of "
               "unknown task 'pcwp.regresion'; did you mean 'pcwp.regression'?" in p for p in problems), problems
    assert "t.toml: objectives[1].options.targets: objective 'clip' takes no targets (it does not declare the " \
           "'targets' modality)" in problems
    # the spec's own target tasks are checked too: here the stenosis tasks' plugin is blocked
    blocked = Registry.load(environ={**BUILTINS_ONLY, ENV_BLOCK: "stence_bench_tasks.stenosis"})
    suite = parse_suite('name = "t"\ntasks = ["lvef.35"]\nencoders = ["resnet1d_wang"]\nobjectives = ["stence"]\n')
    problems = check_names(suite, blocked, "t.toml")
    assert [p.split(" (known")[0] for p in problems] == [
        "t.toml: objectives[0]: objective 'stence' trains on the labels of unknown task 'stenosis.70'",
        "t.toml: objectives[0]: objective 'stence' trains on the labels of unknown task 'stenosis.vessels'"]


def test_a_pretraining_without_its_targets_table_names_what_is_missing(tmp_path, registry):
    """A source without the cath table: the supervised objective's target task says which table and dataset."""
    import shutil

    from stence_bench.synth.cohort import synthesize

    cohort = tmp_path / "cohort"
    synthesize(cohort, patients=24, seed=1, angiograms=False)
    tables = tmp_path / "tables"
    shutil.copytree(cohort / "tables", tables)
    (tables / "cath.csv").unlink()
    suite = parse_suite(f"""
name = "no-cath"
tasks = ["lvef.35"]
encoders = [{{name = "resnet1d_wang", preset = "tiny"}}]
objectives = ["metric_learning_supervised"]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 10
pretrain = {{epochs = 1, batch_size = 8}}
[data]
pretrain = "mimic-iv-ecg"
[data.sources.mimic-iv-ecg]
path = "{cohort / 'mimic-iv-ecg'}"
tables = "{tables}"
""")
    outcomes = run_suite(suite, registry, tmp_path / "run", echo=lambda line: None)
    failed = [o for o in outcomes if o.status == "failed"]
    assert failed and failed[0].error.startswith("target task 'pcwp.regression': dataset 'mimic-iv-ecg': needs table "
                                                 "'cath'"), [o.error for o in outcomes]
