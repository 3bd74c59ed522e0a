"""Suite files: validation with `file: field: message`, did-you-mean, and expansion into cells."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BUILTINS_ONLY, REPO
from plugin_fixtures import Plugin, objective

from stence_bench.errors import SuiteError
from stence_bench.registry import Registry
from stence_bench.suite import (
    Cell,
    check_code,
    check_names,
    find_suites,
    load_suite,
    parse_suite,
    plan,
)

GOOD = """
name = "s"
tasks = ["ptbxl.superdiagnostic", "ptbxl.rhythm"]
objectives = ["none"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}, "resnet1d18"]

[protocol]
stages = ["linear_probe", "finetune"]
fractions = [0.1, 1.0]
draws = 2
seeds = [0, 1]
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


def problems(text: str, registry: Registry | None = None) -> list[str]:
    try:
        suite = parse_suite(text, "x.toml")
    except SuiteError as exc:
        return exc.problems
    return check_names(suite, registry, "x.toml") if registry else []


def test_unknown_field_gives_file_field_and_suggestion():
    assert problems(GOOD.replace("draws", "drawz")) == ["x.toml: protocol.drawz: unknown field; did you mean 'draws'?"]
    assert problems(GOOD.replace("objectives", "objectivs")) == [
        "x.toml: objectives: required field missing",
        "x.toml: objectivs: unknown field; did you mean 'objectives'?",
    ]
    assert problems(GOOD.replace('preset = "tiny"', 'presett = "tiny"')) == [
        "x.toml: encoders[0].presett: unknown field; did you mean 'preset'?"]


def test_bad_values_name_the_field():
    assert problems(GOOD.replace("fractions = [0.1, 1.0]", "fractions = [0.1, 1.5]")) == [
        "x.toml: protocol.fractions[1]: Input should be less than or equal to 1"]
    assert problems(GOOD.replace("seeds = [0, 1]", "seeds = [1, 1]")) == [
        "x.toml: protocol: Value error, seeds: repeated value in [1, 1]"]
    assert problems('name = "s"\ntasks = [') [0].startswith("x.toml: invalid TOML: ")
    # every evaluation cell scores with intervals over resamples: none at all is refused here, not by every cell
    assert problems(GOOD.replace("draws = 2", "draws = 2\nbootstrap = 0")) == [
        "x.toml: protocol.bootstrap: Input should be greater than or equal to 1"]


def test_mistyped_names_suggest_the_registered_one(registry):
    text = GOOD.replace('"resnet1d18"', '"resnet1d18x"').replace('"tiny"', '"tinny"').replace("rhythm", "rythm")
    found = problems(text, registry)
    assert found[0].startswith("x.toml: tasks[1]: unknown task 'ptbxl.rythm'; did you mean 'ptbxl.rhythm'? (known: ")
    assert "ptbxl.superdiagnostic" in found[0] and "stenosis.70" in found[0]
    assert found[1:] == [
        "x.toml: encoders[0].preset: unknown preset 'tinny' of encoder 'resnet1d_wang'; did you mean 'tiny'? "
        "(known: base, tiny)",
        "x.toml: encoders[1].name: unknown encoder 'resnet1d18x'; did you mean 'resnet1d18'? "
        "(known: ecg_fm, ecg_transformer, ecg_transformer.stence, ecgfounder, ecgfounder_1lead, resnet1d18, resnet1d18.clef, "
        "resnet1d18.jeong, resnet1d_wang, resnet1d_wang.stence, st_mem, temporalnet, xresnet1d101, xresnet1d18, xresnet1d50)",
    ]


def test_repeated_entries_are_reported(registry):
    text = GOOD.replace('"ptbxl.rhythm"', '"ptbxl.superdiagnostic"')
    assert problems(text, registry) == ["x.toml: tasks[1]: task 'ptbxl.superdiagnostic' is listed twice"]


def test_objective_needing_what_the_pretraining_dataset_lacks_is_refused():
    # the built-in ptbxl layout provides ecg, patient ids and labels (scp_codes), but no report text
    plugin = Plugin("p", objectives=[objective("my_text_clip", modalities=("ecg", "text"))])
    registry = Registry.load(extra=[plugin], environ=BUILTINS_ONLY)
    text = GOOD.replace('objectives = ["none"]', 'objectives = ["my_text_clip"]') + '[data]\npretrain = "ptbxl"\n'
    assert problems(text, registry) == [
        "x.toml: objectives[0]: objective 'my_text_clip' needs text, which the pretraining dataset 'ptbxl' does not provide"
    ]
    # the synthetic cohort's MIMIC-IV-ECG export has reports, tables and angiograms
    assert problems(text.replace('pretrain = "ptbxl"', 'pretrain = "mimic-iv-ecg"'), registry) == []
    clip = GOOD.replace('objectives = ["none"]', 'objectives = ["clip"]')
    assert problems(clip, registry) == []
    assert problems(clip + "[data.synthetic]\nangiograms = false\n", registry) == []  # precomputed embeddings
    on_ptbxl = clip + '[data]\npretrain = "ptbxl"\n'
    assert problems(on_ptbxl, registry) == [
        "x.toml: objectives[0]: objective 'clip' needs angiography, which the pretraining dataset 'ptbxl' "
        "does not provide (metadata and angiography come from a tables folder: tables = \"...\" beside the "
        "source's path)"
    ]


def test_plan_counts_nested_fractions_draws_and_controls():
    registry = Registry.load(extra=[Plugin("p", objectives=[objective("simclr")])], environ=BUILTINS_ONLY)
    suite = parse_suite(GOOD.replace('objectives = ["none"]', 'objectives = ["simclr"]'))
    cells = plan(suite, registry)
    pretrain = [c for c in cells if c.stage == "pretrain"]
    # controls 'none' and 'supervised' added: 'none' does not pretrain; simclr and supervised do, once per
    # encoder x seed
    assert {(c.encoder, c.objective, c.seed) for c in pretrain} == {
        (e, o, s) for e in ("resnet1d_wang", "resnet1d18") for o in ("simclr", "supervised") for s in (0, 1)}
    evals = [c for c in cells if c.stage != "pretrain"]
    # 2 tasks x 2 encoders x 3 objectives x 2 seeds x 2 stages x (2 draws at 10 % + 1 at 100 %)
    assert len(evals) == 2 * 2 * 3 * 2 * 2 * 3
    assert {c.objective for c in evals} == {"simclr", "none", "supervised"}
    assert all(c.draw == 0 for c in evals if c.fraction == 1.0)
    assert len({c.key for c in cells}) == len(cells)
    assert all(c.versions["task"] == "1" for c in evals)


def test_controls_can_be_turned_off(registry):
    suite = parse_suite(GOOD.replace('name = "s"', 'name = "s"\ncontrols = false'))
    assert {c.objective for c in plan(suite, registry)} == {"none"}  # listed explicitly


def test_cell_key_is_the_hash_of_the_resolved_config():
    cell = Cell(stage="finetune", task="t", encoder="e", objective="o", seed=0, fraction=0.1, draw=0)
    same = Cell(stage="finetune", task="t", encoder="e", objective="o", seed=0, fraction=0.1, draw=0)
    assert cell.key == same.key and len(cell.key) == 16
    for change in ({"seed": 1}, {"fraction": 0.5}, {"draw": 1}, {"preset": "tiny"}, {"leads": "I"},
                   {"versions": {"task": "2"}}, {"objective_options": {"temperature": 0.2}}):
        assert cell.model_copy(update=change).key != cell.key, change


def test_suites_are_found_by_name_and_shipped_suites_validate(registry, monkeypatch):
    monkeypatch.chdir(REPO)
    suites = find_suites()
    assert "quickstart" in suites
    for name in suites:
        suite, _ = load_suite(name)
        assert check_names(suite, registry, name) == []
        # a shipped suite of published weights names the files the user downloads (tests/test_foundation_models.py
        # validates it with files in their place): only those may be missing here
        placeholders = [f"{name}: encoders[{i}].weights: {Path(c.weights.path).resolve()}: no such file"
                        for i, c in enumerate(suite.encoders) if c.weights is not None]
        assert check_code(suite, registry, name) == placeholders
    with pytest.raises(SuiteError, match="did you mean 'quickstart'"):
        load_suite("quickstrat")
    with pytest.raises(SuiteError, match="nope.toml: no such file"):
        load_suite("nope.toml")


# -- validate catches what a run would fail on in every cell ------------------------------------------------------

CODE = """
name = "c"
tasks = ["stenosis.70"]
objectives = [{name = "clip", options = {temprature = 0.1, temperature = 0.2}}, {name = "none", options = {a = 1}}]
encoders = [{name = "resnet1d_wang", preset = "tiny", options = {widht = 8}}]
controls = false
"""


def test_options_a_factory_does_not_take_are_named_with_a_suggestion_at_validate(registry):
    suite = parse_suite(CODE, "c.toml")
    assert check_names(suite, registry, "c.toml") == []  # the names are fine: the options are not
    assert check_code(suite, registry, "c.toml") == [
        "c.toml: encoders[0].options.widht: encoder 'resnet1d_wang' (stence_bench_plugins.encoders.resnet1d:"
        "resnet1d_wang) takes no option 'widht'; did you mean 'width'? (options: width)",
        "c.toml: objectives[0].options.temprature: objective 'clip' (stence_bench_plugins.objectives.contrastive:Clip) "
        "takes no option 'temprature'; did you mean 'temperature'? (options: learn_temperature, "
        "modality_encoders, modality_options, paired, proj_dim, temperature, weight_ecg_to_paired, "
        "weight_paired_to_ecg)",
        "c.toml: objectives[1].options: objective 'none' does not pretrain; it takes no options",
    ]


class _Sized:
    def __init__(self, *, width: int = 8, depth: int = 2):
        self.width, self.depth = width, depth


def test_modality_options_and_code_that_does_not_import_are_found_at_validate(tmp_path):
    from plugin_fixtures import encoder, task

    from stence_bench import ModalitySpec
    from stence_bench.cli import cli

    plugin = Plugin(
        "broken",
        encoders=[encoder("ghost_net", factory="no_such_module_xyz:build")],
        objectives=[objective("paired", modalities=("ecg", "angiography"), modality_encoders={"angiography": "sized"})],
        modalities=[ModalitySpec(name="sized", modality="angiography", factory="test_suite:_Sized", embed_dim=4)],
        tasks=[task("ghost.task", labels="stence_bench_tasks.ptbxl:no_such_function")],
    )
    registry = Registry.load(extra=[plugin], environ=BUILTINS_ONLY)
    text = """
name = "g"
tasks = ["ghost.task"]
objectives = [{name = "paired", options = {modality_options = {angiography = {widht = 4}, text = {x = 1}}}}]
encoders = ["ghost_net"]
controls = false
[data]
synthetic = {patients = 40}
"""
    found = check_code(parse_suite(text, "g.toml"), registry, "g.toml")
    assert found == [
        "g.toml: tasks[0]: task 'ghost.task': label function: cannot import 'stence_bench_tasks.ptbxl:no_such_function'"
        ": AttributeError: module 'stence_bench_tasks.ptbxl' has no attribute 'no_such_function'",
        "g.toml: encoders[0].name: encoder 'ghost_net': cannot import 'no_such_module_xyz:build': ModuleNotFoundError: "
        "No module named 'no_such_module_xyz'",
        "g.toml: objectives[0].options.modality_options.angiography.widht: modality encoder 'sized' (test_suite:_Sized)"
        " takes no option 'widht'; did you mean 'width'? (options: depth, width)",
        "g.toml: objectives[0].options.modality_options.text: objective 'paired' pairs no text encoder (it pairs: "
        "angiography)",
    ]
    suite_file = tmp_path / "g.toml"
    suite_file.write_text(text)
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["validate", str(suite_file)], obj=registry)
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.startswith("Error: ")] == [
        f"Error: {line.replace('g.toml', str(suite_file), 1)}" for line in found]
