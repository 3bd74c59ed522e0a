"""`validate` checks what a run would fail on: the data section (which datasets have a source, the sources'
folders, layouts and their options) and whether each objective, listed or added as a control, can pretrain on
the pretraining dataset. A control that cannot is left out with a notice, never planned to fail."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench.cli import cli
from stence_bench.errors import SuiteError
from stence_bench.registry import Registry
from stence_bench.suite import (
    check_names,
    check_sources,
    left_out_controls,
    parse_suite,
    plan,
    resolved_objectives,
    validate_suite,
)

HEAD = """
name = "v"
tasks = ["ptbxl.superdiagnostic"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["none"]
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


def names(text: str, registry: Registry) -> list[str]:
    return check_names(parse_suite(text, "v.toml"), registry, "v.toml")


# -- the [data] default -----------------------------------------------------------------------------------------


def test_the_cohort_is_the_default_of_a_data_table_without_sources():
    """docs/suites.md: the synthetic cohort is the default of [data]. Before, a [data] table without a
    synthetic line turned it off, and the run failed on "dataset 'mimic-iv-ecg' has no source"."""
    assert parse_suite(HEAD).data.synthetic is not None  # no [data]
    assert parse_suite(HEAD + '[data]\npretrain = "ptbxl"\n').data.synthetic is not None
    with_source = HEAD + '[data]\npretrain = "ptbxl"\n[data.sources.ptbxl]\npath = "ptb-xl"\n'
    assert parse_suite(with_source).data.synthetic is None  # sources alone: the run reads them only
    both = parse_suite(with_source.replace('pretrain = "ptbxl"', 'pretrain = "ptbxl"\nsynthetic = {}'))
    assert both.data.synthetic is not None and both.data.synthetic.patients == 400
    assert both.data.provided() == ["mimic-iv-ecg", "ptbxl"]
    # what a run stores (suite.json) reads back the same: an explicit "no cohort" stays off
    suite = parse_suite(with_source)
    assert type(suite).model_validate(suite.model_dump(mode="json")) == suite


def test_a_dataset_without_a_source_is_refused_by_validate(registry):
    text = HEAD.replace("ptbxl.superdiagnostic", "stenosis.70") + '[data.sources.ptbxl]\npath = "ptb-xl"\n'
    assert names(text, registry) == [
        "v.toml: tasks[0]: task 'stenosis.70' reads dataset 'mimic-iv-ecg', which has no source: add "
        "[data.sources.mimic-iv-ecg] path = \"...\" or synthetic = {} for the built-in cohort's (sources: ptbxl)",
        "v.toml: data.pretrain: the pretraining dataset 'mimic-iv-ecg' (the default) has no source (objectives "
        "that pretrain there: supervised): add [data.sources.mimic-iv-ecg] path = \"...\" or synthetic = {} for the "
        "built-in cohort's (sources: ptbxl); or set pretrain to one of: ptbxl; or controls = false",
    ]
    ptbxl_only = HEAD + '[data]\npretrain = "ptbxl"\n[data.sources.ptbxl]\npath = "ptb-xl"\n'
    assert names(ptbxl_only, registry) == []
    assert names(HEAD.replace('name = "v"', 'name = "v"\ncontrols = false')
                 + '[data.sources.ptbxl]\npath = "ptb-xl"\n', registry) == []  # nothing pretrains: no need


def test_a_source_needs_a_registered_layout(registry):
    text = HEAD + '[data.sources.ptbxl]\npath = "p"\nlayout = "ptbx"\n[data.sources.holter]\npath = "h"\n'
    found = names(text, registry)
    known = ", ".join(sorted(registry.datasets.names()))
    assert "cinc2021, " in known and "ptbxl, sph, wfdb" in known
    assert found[0] == f"v.toml: data.sources.ptbxl.layout: unknown dataset 'ptbx'; did you mean 'ptbxl'? (known: {known})"
    assert found[1] == (f"v.toml: data.sources.holter: no layout is registered as 'holter'; name one with "
                        f"layout = \"...\" (known: {known})")


def test_a_layout_option_beside_path_points_to_options():
    with pytest.raises(SuiteError) as exc:
        parse_suite(HEAD + '[data.sources.ptbxl]\npath = "p"\nrate = 100\n', "v.toml")
    assert exc.value.problems == [
        "v.toml: data.sources.ptbxl.rate: unknown field; layout options go in options: options = { rate = ... } "
        "(a source's fields: path, layout, options, tables, patient_namespace)"]
    with pytest.raises(SuiteError) as exc:
        parse_suite(HEAD + '[data.sources.ptbxl]\npath = "p"\ntabels = "t"\n', "v.toml")
    assert exc.value.problems == ["v.toml: data.sources.ptbxl.tabels: unknown field; did you mean 'tables'?"]


def test_source_folders_and_layout_options_are_checked(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ptb-xl").mkdir()
    text = HEAD + ('[data]\npretrain = "ptbxl"\n[data.sources.ptbxl]\npath = "ptb-xl"\noptions = {rat = 100}\n'
                   'tables = "labels"\n[data.sources.cinc2021]\npath = "/nowhere/challenge-2021"\n'
                   'options = {rate = 100}\n')
    suite = parse_suite(text, "v.toml")
    assert check_sources(suite, registry, "v.toml") == [
        f"v.toml: data.sources.ptbxl.tables: labels: no such folder (a relative path is read from the current "
        f"directory, {tmp_path})",
        "v.toml: data.sources.ptbxl.options.rat: layout 'ptbxl' takes no option 'rat'; did you mean 'rate'? "
        "(options: database, rate, statements)",
        "v.toml: data.sources.cinc2021.path: /nowhere/challenge-2021: no such file or folder",
        "v.toml: data.sources.cinc2021.options.rate: layout 'cinc2021' takes no option 'rate' (options: none)",
    ]
    fixed = text.replace("rat =", "rate =").replace('tables = "labels"\n', "").replace(
        '[data.sources.cinc2021]\npath = "/nowhere/challenge-2021"\noptions = {rate = 100}\n', "")
    assert check_sources(parse_suite(fixed), registry) == []
    assert check_sources(parse_suite(fixed.replace("rate = 100", "rate = 250"), "v.toml"), registry, "v.toml") == [
        "v.toml: data.sources.ptbxl.options.rate: layout 'ptbxl': Input should be 100 or 500"]


# -- objectives and controls against the pretraining dataset -------------------------------------------------------


def test_an_objective_the_pretraining_data_cannot_feed_is_refused(registry):
    on_ptbxl = HEAD + '[data]\npretrain = "ptbxl"\n'
    # CLEF reads metadata from a patients table, which PTB-XL does not come with (before: validate passed, and
    # every clef cell failed at run time on "dataset 'ptbxl' has no patients table")
    assert names(on_ptbxl.replace('objectives = ["none"]', 'objectives = ["clef"]'), registry) == [
        "v.toml: objectives[0]: objective 'clef' needs metadata, which the pretraining dataset 'ptbxl' does not "
        "provide (metadata and angiography come from a tables folder: tables = \"...\" beside the source's path)"]
    # supervised pretraining on PTB-XL's own labels (scp_codes) is fine
    assert names(on_ptbxl.replace('objectives = ["none"]', 'objectives = ["supervised"]'), registry) == []


WFDB_PRETRAINING = """
name = "holter"
tasks = ["cinc2021.scored"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["none", "metric_learning"]
[data]
pretrain = "holter"
[data.sources.cinc2021]
path = "challenge"
[data.sources.holter]
path = "holter"
layout = "wfdb"
"""


def test_a_control_that_cannot_run_is_left_out_with_a_notice(registry, tmp_path, monkeypatch):
    """Pretraining on a folder of WFDB records (no labels): the supervised control cannot pretrain there. It is
    left out of the plan with a one-line notice, where before validate passed and its cells failed at run time."""
    suite = parse_suite(WFDB_PRETRAINING, "holter.toml")
    assert names(WFDB_PRETRAINING, registry) == []
    assert left_out_controls(suite, registry) == {
        "supervised": "needs labels, which the pretraining dataset 'holter' does not provide"}
    objectives, added = resolved_objectives(suite, registry)
    assert [c.name for c in objectives] == ["none", "metric_learning"] and added == []
    assert {c.objective for c in plan(suite, registry)} == {"none", "metric_learning"}
    # listed by the suite itself, it is refused instead
    listed = WFDB_PRETRAINING.replace('"metric_learning"]', '"supervised"]')
    assert names(listed, registry) == ["v.toml: objectives[1]: objective 'supervised' needs labels, which the "
                                       "pretraining dataset 'holter' does not provide"]
    # validate says so, in one line, and goes on
    monkeypatch.chdir(tmp_path)
    (tmp_path / "challenge").mkdir()
    (tmp_path / "holter").mkdir()
    (tmp_path / "holter.toml").write_text(WFDB_PRETRAINING)
    result = CliRunner().invoke(cli, ["validate", "holter.toml"], obj=registry)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "note: control 'supervised' left out: it needs labels, which the pretraining dataset 'holter' does not provide"]
    assert validate_suite("holter.toml", registry)[0] == suite


def test_controls_pretraining_on_labelled_layouts_are_kept(registry):
    for layout in ("cinc2021", "ptbxl", "mimic-iv-ecg"):
        text = WFDB_PRETRAINING.replace('layout = "wfdb"', f'layout = "{layout}"')
        assert left_out_controls(parse_suite(text), registry) == {}, layout
        assert "supervised" in resolved_objectives(parse_suite(text), registry)[1]
