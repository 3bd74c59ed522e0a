"""The HTML leaderboard: build() on fixed result files equals a golden data model; every page is valid HTML5;
text from result files renders inert; missing and failed cells are shown, never averaged in; the CLI.

The fixtures (tests/fixtures/leaderboard/mini/) are made by tests/fixtures/leaderboard/make_fixtures.py. When the
data model changes on purpose, regenerate the golden file and review its diff:

    STENCE_BENCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_leaderboard.py
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import html5lib
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, REPO
from plugin_fixtures import Plugin, encoder

from stence_bench.cli import cli
from stence_bench.leaderboard import build, build_site, csv_text, load_suites, render_site
from stence_bench.leaderboard.build import CSV_COLUMNS
from stence_bench.results import paired_differences, read_results
from stence_bench.registry import Registry

FIXTURES = REPO / "tests" / "fixtures" / "leaderboard"
MINI = FIXTURES / "mini"
GOLDEN = FIXTURES / "golden.json"
UPDATE_ENV = "STENCE_BENCH_UPDATE_GOLDEN"
SCRIPT = "<script>alert(1)</script>"

SUITE_TOML = """
name = "mini"
description = "Leaderboard fixture: two tasks, two encoders, none and clip, two fractions, a failed cell, missing ones"
tasks = ["stenosis.70", "ptbxl.superdiagnostic"]
objectives = ["none", "clip"]
controls = false

[[encoders]]
name = "resnet1d_wang"
preset = "tiny"

[[encoders]]
name = "pretrained_net"
options = { note = "<script>alert(1)</script>" }

[protocol]
stages = ["linear_probe"]
fractions = [0.1, 1.0]
draws = 2
bootstrap = 20
"""


def fixture_registry() -> Registry:
    """The built-ins plus ``pretrained_net``: weights pretrained on PTB-XL (a contamination on ptbxl tasks)."""
    net = encoder("pretrained_net", pretrained_on=("PTB-XL",), description=f"An encoder pretrained on PTB-XL {SCRIPT}")
    return Registry.load(extra=[Plugin("leaderboard-fixture", encoders=[net])], environ=BUILTINS_ONLY)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return fixture_registry()


@pytest.fixture(scope="module")
def site(registry):
    return build(load_suites([MINI]), registry)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, registry) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build_site([MINI], out, registry=registry)
    return out


def _round(value):
    """Floats to 10 significant digits, so the golden file does not depend on the last bits of numpy's sums."""
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def test_build_matches_the_golden_data_model(site):
    suites = load_suites([MINI])
    actual = _round({"site": site.model_dump(mode="json"), "csv": csv_text(suites[0])})
    if os.environ.get(UPDATE_ENV, "").strip() not in ("", "0"):
        GOLDEN.write_text(json.dumps(actual, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert actual == expected, f"build() changed; if on purpose, regenerate with {UPDATE_ENV}=1 and review the diff"


def test_build_is_a_pure_function_of_the_result_files(site, registry, tmp_path):
    # the same files, read in another order and from a copy in another place, give the same model
    copy = tmp_path / "elsewhere" / "mini"
    shutil.copytree(MINI, copy)
    suites = load_suites([copy])
    suites[0].results.reverse()
    assert build(suites, registry) == site


def test_the_fixture_has_what_the_golden_test_needs():
    results = read_results([MINI])
    assert len(results) == 20 and (MINI / "suite.json").is_file()
    assert sum(r.status == "failed" for r in results) == 1
    assert {r.cell.task for r in results if r.cell.task} == {"stenosis.70", "ptbxl.superdiagnostic"}
    assert any(SCRIPT in json.dumps(r.cell.encoder_options) for r in results)


def test_suite_name_and_description_come_from_suite_json(site):
    (suite,) = site.suites
    assert suite.name == "mini" and suite.from_suite_file and suite.description.startswith("Leaderboard fixture")
    assert [t.name for t in suite.tasks] == ["stenosis.70", "ptbxl.superdiagnostic"]  # the suite's order
    assert [e.label for e in suite.encoders] == ["resnet1d_wang[tiny]", "pretrained_net"]
    assert [o.name for o in suite.objectives] == ["none", "clip"]


def _cell(site, task, encoder, objective, fraction):
    t = next(t for t in site.suites[0].tasks if t.name == task)
    j = next(j for j, c in enumerate(t.columns) if c.fraction == fraction)
    row = next(r for r in t.rows if r.encoder == encoder and r.objective == objective)
    return t, row, row.cells[j]


def test_a_failed_cell_is_shown_and_never_averaged_in(site):
    results = read_results([MINI])
    task, row, cell = _cell(site, "stenosis.70", "resnet1d_wang[tiny]", "clip", 0.1)
    done = [r for r in results if r.cell.task == "stenosis.70" and r.cell.encoder == "resnet1d_wang"
            and r.cell.objective == "clip" and r.cell.fraction == 0.1 and r.status == "done"]
    assert len(done) == 1
    assert (cell.status, cell.n_done, cell.n_failed, cell.n_expected) == ("partial", 1, 1, 2)
    assert cell.mean == pytest.approx(done[0].value)  # the failed draw is not in the mean
    assert "1 of 2 cells" in cell.title and "1 failed (not averaged in)" in cell.title
    assert row.mean_rank is None and "incomplete" in row.mean_rank_title
    assert task.n_failed == 1 and task.n_done == 11 and task.n_expected == 12


def test_missing_cells_are_part_of_the_grid(site):
    task, row, cell = _cell(site, "ptbxl.superdiagnostic", "resnet1d_wang[tiny]", "none", 0.1)
    assert cell.status == "missing" and cell.mean is None and cell.n_expected == 2
    assert cell.title == "missing: 2 missing (no result file) of 2 cells"
    _, _, partial = _cell(site, "ptbxl.superdiagnostic", "pretrained_net", "clip", 0.1)
    assert (partial.status, partial.n_done, partial.n_expected) == ("partial", 1, 2)
    assert "1 missing (not averaged in)" in partial.title
    assert task.n_missing == 6 and task.n_done == 6 and len(task.rows) == 4  # all encoder x objective rows
    assert site.suites[0].n_missing == 6 and site.suites[0].n_failed == 1


def test_ranks_and_paired_differences_come_from_the_tables_aggregate(site):
    from stence_bench.results.aggregate import aggregate

    rows = {(r.task, r.encoder, r.objective, r.fraction): r for r in aggregate(read_results([MINI]))}
    task, row, cell = _cell(site, "stenosis.70", "pretrained_net", "clip", 1.0)
    ref = rows[("stenosis.70", "pretrained_net", "clip", 1.0)]
    assert (cell.mean, cell.ci_low, cell.ci_high, cell.diff, cell.diff_excludes_zero) == (
        ref.mean, ref.ci_low, ref.ci_high, ref.diff, ref.diff_excludes_zero)
    j = next(j for j, c in enumerate(task.columns) if c.fraction == 1.0)
    column = sorted((r.cells[j].mean, r.encoder, r.objective) for r in task.rows)
    assert cell.rank == 1 and (column[-1][1], column[-1][2]) == ("pretrained_net", "clip")
    assert row.mean_rank == 1.0


def test_results_of_one_encoder_under_other_options_get_their_own_row(site, registry, tmp_path):
    """A suite edited between runs into one folder leaves results of both configs: never averaged together."""
    shutil.copytree(MINI, tmp_path / "mini")
    variants = 0
    for r in read_results([MINI]):
        c = r.cell
        if (c.task, c.encoder, c.objective, r.status) == ("stenosis.70", "resnet1d_wang", "clip", "done"):
            cell = c.model_copy(update={"encoder_options": {"width": 64}})
            variant = r.model_copy(update={"cell": cell, "key": cell.key, "value": 0.123})
            (tmp_path / "mini" / "results" / f"{cell.key}.json").write_text(variant.model_dump_json())
            variants += 1
    assert variants >= 2
    edited = build(load_suites([tmp_path / "mini"]), registry)
    _, _, before = _cell(site, "stenosis.70", "resnet1d_wang[tiny]", "clip", 1.0)
    _, _, after = _cell(edited, "stenosis.70", "resnet1d_wang[tiny]", "clip", 1.0)
    _, _, other = _cell(edited, "stenosis.70", "resnet1d_wang[tiny] {width=64}", "clip", 1.0)
    assert after.mean == before.mean and other.mean == pytest.approx(0.123)
    suite = edited.suites[0]
    assert [e.label for e in suite.encoders if e.name == "resnet1d_wang"] == [
        "resnet1d_wang[tiny]", "resnet1d_wang[tiny] {width=64}"]
    result = CliRunner().invoke(cli, ["results", "show", str(tmp_path / "mini"), "--task", "stenosis.70"],
                                obj=registry)
    assert "resnet1d_wang[tiny] {width=64}" in result.output


def test_contamination_flag_from_the_registry(site):
    stenosis, ptbxl = site.suites[0].tasks
    flags = {(t.name, r.encoder): r.contamination.status for t in (stenosis, ptbxl) for r in t.rows}
    assert flags[("ptbxl.superdiagnostic", "pretrained_net")] == "overlap"
    assert flags[("stenosis.70", "pretrained_net")] == "none"
    assert flags[("ptbxl.superdiagnostic", "resnet1d_wang[tiny]")] == "none"
    assert any("contamination" in n for n in ptbxl.notes)


def test_an_encoder_no_longer_registered_is_unknown_and_noted():
    site = build(load_suites([MINI]), Registry.load(environ=BUILTINS_ONLY))
    ptbxl = site.suites[0].tasks[1]
    assert {r.contamination.status for r in ptbxl.rows if r.encoder == "pretrained_net"} == {"unknown"}
    assert any("'pretrained_net' is not registered here" in n for n in site.suites[0].notes)


def test_a_folder_without_suite_json_is_a_suite_named_after_it(tmp_path, registry):
    run = tmp_path / "my-run"
    shutil.copytree(MINI / "results", run / "results")
    for given in (run, run / "results"):
        (suite,) = build(load_suites([given]), registry).suites
        assert suite.name == "my-run" and not suite.from_suite_file and suite.description == ""
    other = tmp_path / "other"
    shutil.copytree(MINI / "results", other / "results")
    assert [s.name for s in build(load_suites([run, other, MINI]), registry).suites] == ["mini", "my-run", "other"]


# --- the rendered site ----------------------------------------------------------------------------------------


def _pages(site_dir: Path) -> list[Path]:
    return sorted(site_dir.rglob("*.html"))


def test_every_page_is_valid_html5(rendered):
    pages = _pages(rendered)
    assert {p.relative_to(rendered).as_posix() for p in pages} == {
        "index.html", "mini/index.html", "mini/stenosis.70.html", "mini/stenosis.70.provenance.html",
        "mini/ptbxl.superdiagnostic.html", "mini/ptbxl.superdiagnostic.provenance.html"}
    for page in pages:
        try:
            html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page.read_bytes())
        except html5lib.html5parser.ParseError as exc:
            pytest.fail(f"{page.relative_to(rendered)}: {exc}")


def _links(page: Path):
    tree = html5lib.parse(page.read_bytes(), namespaceHTMLElements=False)
    for el in tree.iter():
        for attr in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            if isinstance(el.tag, str) and attr in el.attrib:
                yield el.tag, el.attrib[attr]


def test_nothing_is_loaded_from_outside_the_site_and_every_link_resolves(rendered):
    for page in _pages(rendered):
        for tag, url in _links(page):
            if url.startswith("data:"):
                continue
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{page.name}: <{tag}> points outside the site: {url}"
            target = (page.parent / parts.path).resolve() if parts.path else page
            assert target.is_file(), f"{page.name}: <{tag}> {url} does not resolve"
    for asset in (rendered / "static").iterdir():
        text = asset.read_text()
        assert "url(" not in text and "@import" not in text and "http" not in text, asset.name


def test_text_from_result_files_renders_inert(rendered):
    for page in _pages(rendered):
        html = page.read_text()
        assert "<script>alert" not in html, page.name
        tree = html5lib.parse(html, namespaceHTMLElements=False)
        scripts = [el for el in tree.iter() if el.tag == "script"]
        assert len(scripts) == 1 and scripts[0].attrib["src"].endswith("static/sort.js") and not scripts[0].text
        for el in tree.iter():
            assert not any(k.lower().startswith("on") for k in el.attrib), f"{page.name}: event handler on <{el.tag}>"
    suite_page = (rendered / "mini" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in suite_page  # the option and the registry description, escaped
    assert "An encoder pretrained on PTB-XL &lt;script&gt;" in suite_page


def test_a_script_in_an_encoder_or_task_name_renders_inert(tmp_path, registry):
    suites = load_suites([MINI])
    for r in suites[0].results:
        if r.cell.encoder == "pretrained_net":
            object.__setattr__(r.cell, "encoder", SCRIPT)
        if r.cell.task == "stenosis.70":
            object.__setattr__(r.cell, "task", f"{SCRIPT}/../../x")
    site = build(suites, registry)
    index = render_site(site, suites, tmp_path / "site")
    pages = _pages(index.parent)
    assert len(pages) == 6 and all(p.parent in (index.parent, index.parent / "mini") for p in pages)
    for page in pages:
        html = page.read_text()
        html5lib.HTMLParser(strict=True).parse(html)
        assert "<script>alert" not in html
    task_page = next(p for p in pages if p.name.startswith("script-alert") and "provenance" not in p.name)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in task_page.read_text()


def test_tables_show_missing_and_failed_cells_with_a_title(rendered):
    tree = html5lib.parse((rendered / "mini" / "stenosis.70.html").read_bytes(), namespaceHTMLElements=False)
    board = next(el for el in tree.iter("table") if el.attrib.get("id") == "board")
    rows = board.find("tbody").findall("tr")
    assert len(rows) == 4
    partial = [td for tr in rows for td in tr.findall("td") if "partial" in td.attrib.get("class", "")]
    assert len(partial) == 1 and "1 failed (not averaged in)" in partial[0].attrib["title"]
    assert "1/2 cells" in "".join(partial[0].itertext())
    tree = html5lib.parse((rendered / "mini" / "ptbxl.superdiagnostic.html").read_bytes(), namespaceHTMLElements=False)
    missing = [td for td in tree.iter("td") if "missing" in td.attrib.get("class", "").split()]
    assert len(missing) == 2 and all(td.attrib["title"].startswith("missing:") and "–" in "".join(td.itertext())
                                     for td in missing)
    svg = "{http://www.w3.org/2000/svg}"
    svgs = list(tree.iter(f"{svg}svg"))
    assert len(svgs) == 3  # one heatmap and one curve per encoder
    assert all(s.find(f"{svg}title") is not None and s.attrib.get("role") == "img" for s in svgs)


def test_downloads_csv_and_json(rendered):
    rows = list(csv.DictReader(io.StringIO((rendered / "mini" / "results.csv").read_text())))
    results = read_results([MINI])
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == len(results)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["value"] == "" and failed[0]["suite"] == "mini"
    by_key = {r.key: r for r in results}
    paired = paired_differences(results)
    done = next(r for r in rows if r["vs_control_mean"])
    assert float(done["vs_control_mean"]) == pytest.approx(paired[done["key"]].mean)
    assert float(done["ci_low"]) == pytest.approx(by_key[done["key"]].ci["auroc"][0])
    dumped = json.loads((rendered / "mini" / "results.json").read_text())
    assert sorted(d["key"] for d in dumped) == sorted(by_key) and dumped[0]["cell"]["stage"]


def test_user_templates_come_first_and_can_extend_the_packaged_ones(tmp_path, registry):
    templates = tmp_path / "templates"
    (templates / "static").mkdir(parents=True)
    (templates / "base.html").write_text(
        '{% extends "stence/base.html" %}{% block footer %}Published by the ACME lab.{% endblock %}')
    (templates / "static" / "stence.css").write_text("body { color: black; }\n")
    index = build_site([MINI], tmp_path / "site", registry=registry, templates=templates)
    for page in _pages(index.parent):
        html = page.read_text()
        assert "Published by the ACME lab." in html and "stence-bench leaderboards" in html
        html5lib.HTMLParser(strict=True).parse(html)
    assert (index.parent / "static" / "stence.css").read_text() == "body { color: black; }\n"
    assert (index.parent / "static" / "sort.js").is_file()


def test_out_is_replaced_only_when_it_is_a_site(tmp_path, registry):
    out = tmp_path / "site"
    build_site([MINI], out, registry=registry)
    (out / "stale.html").write_text("old")
    build_site([MINI], out, registry=registry)
    assert not (out / "stale.html").exists() and (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temporary folders left
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    from stence_bench.errors import StenceBenchError

    with pytest.raises(StenceBenchError, match="not empty and not a stence-bench site"):
        build_site([MINI], precious, registry=registry)
    assert (precious / "thesis.tex").read_text() == "..."


# --- the command line -----------------------------------------------------------------------------------------


def invoke(registry, *args):
    return CliRunner().invoke(cli, list(args), obj=registry, prog_name="stence-bench")


def test_cli_builds_the_site_and_prints_its_index(tmp_path, registry):
    result = invoke(registry, "leaderboard", str(MINI), "-o", str(tmp_path / "site"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"leaderboard: {tmp_path / 'site' / 'index.html'}"
    help_text = invoke(registry, "leaderboard", "--help").output
    assert "Usage: stence-bench leaderboard [OPTIONS] RESULTS_DIR..." in help_text
    assert "-o, --out" in help_text and "--templates" in help_text


def test_cli_errors_are_one_line(tmp_path, registry):
    bad = tmp_path / "bad" / "results"
    bad.mkdir(parents=True)
    (bad / "0000.json").write_text("{not json")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken_suite = tmp_path / "broken"
    shutil.copytree(MINI / "results", broken_suite / "results")
    (broken_suite / "suite.json").write_text("[")
    cases = {
        (str(tmp_path / "nope"),): "no such folder",
        (str(bad.parent),): "not a stence-bench result",
        (str(empty),): "no result files",
        (str(broken_suite),): "not a readable suite file",
    }
    for folders, message in cases.items():
        result = CliRunner().invoke(cli, ["leaderboard", *folders, "-o", str(tmp_path / "out")], obj=registry)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], (
            folders, result.output)
    result = CliRunner().invoke(cli, ["leaderboard", str(MINI), "-o", str(tmp_path / "o"), "--templates",
                                      str(tmp_path / "none")], obj=registry)
    assert result.exit_code == 2 and "no such templates folder" in result.output
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "index.html").write_text("{% block x %}")
    result = CliRunner().invoke(cli, ["leaderboard", str(MINI), "-o", str(tmp_path / "o2"), "--templates",
                                      str(tmp_path / "tpl")], obj=registry)
    assert result.exit_code == 2 and result.output.startswith("Error: template ")
    assert len(result.output.splitlines()) == 1
    assert not (tmp_path / "o2").exists()


def test_the_provenance_page_shows_the_dataset_card_of_the_tasks_dataset(rendered):
    page = (rendered / "mini" / "stenosis.70.provenance.html").read_text()
    assert "The dataset card of mimic-iv-ecg" in page and "ODbL-1.0" in page and "MIMIC-IV subject_id" in page
    assert "official splits" in page and "500 Hz" in page
    ptbxl = (rendered / "mini" / "ptbxl.superdiagnostic.provenance.html").read_text()
    assert "CC-BY-4.0" in ptbxl and "strat_fold 1-10" in ptbxl
