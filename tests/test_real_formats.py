"""Every built-in task family on its real dataset format, controls included, end to end.

The suites are those of docs/real-data.md, read from the page: each is validated as written, then run on a download
generated in the exact layout its publisher uses (PTB-XL 1.0.3, the CinC 2021 training set, MIMIC-IV-ECG 1.0 with
the clinical label tables) at the path the page gives, plus the real files of ../shared/realdata where it has some
of that source, through `stence-bench validate` and `stence-bench run` as a user would (`[data.sources]`, no
synthetic cohort). Every cell, the automatically added controls included, must end with a result. Supervised
pretraining learns from each dataset's own annotations (PTB-XL's scp_codes, CinC 2021's SNOMED-CT Dx codes,
MIMIC-IV-ECG's machine statements), from the pretraining records only, and says which it used.

Shrunk on purpose to run in CI: the page's suites with the tiny encoder preset and a protocol of one epoch,
fraction 1.0 and 20 bootstrap resamples (:func:`shrink`); tasks, objectives, controls and data as the page says.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, REPO

from stence_bench.cli import cli
from stence_bench.data.fake import (
    MIMIC_MACHINE_MEASUREMENTS_COLUMNS,
    MIMIC_RECORD_LIST_COLUMNS,
    PTBXL_DATABASE_COLUMNS,
    write_cinc2021_download,
    write_mimic_iv_ecg_download,
    write_ptbxl_download,
)
from stence_bench.results import read_results
from stence_bench.registry import Registry

DOC = REPO / "docs" / "real-data.md"
#: The protocol of every suite here: as small as a run gets.
TINY_PROTOCOL = """
[protocol]
stages = ["linear_probe", "finetune"]
fractions = [1.0]
bootstrap = 20
pretrain = { epochs = 1, batch_size = 16 }
finetune = { max_epochs = 1, patience = 1, batch_size = 16 }
linear_probe = { c_grid = [1.0] }
"""
TINY = '\nencoders = [{name = "resnet1d_wang", preset = "tiny"}]\n' + TINY_PROTOCOL


def doc_suite(name: str) -> str:
    """The suite called ``name`` on docs/real-data.md, as written there."""
    for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S):
        if re.search(rf'^name = "{re.escape(name)}"$', block, re.M):
            return block
    raise AssertionError(f"{DOC}: no suite called {name!r}")


def shrink(suite: str) -> str:
    """A suite with the tiny preset of its encoders and :data:`TINY_PROTOCOL` instead of its own protocol."""
    suite = suite.replace('preset = "base"', 'preset = "tiny"')
    suite = re.sub(r"(?ms)^\[protocol\]\n.*?(?=^\[(?!protocol))", "", suite)
    assert "[protocol" not in suite
    return suite + TINY_PROTOCOL


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


def run_suite_cli(registry: Registry, folder: Path, suite: str, monkeypatch: pytest.MonkeyPatch,
                  as_written: str | None = None) -> tuple[str, list]:
    """`stence-bench validate` then `stence-bench run` on ``suite`` (TOML text) from ``folder``; the output of both
    and the results. Every cell must have finished. ``as_written``: a suite to validate first (the docs' own)."""
    monkeypatch.chdir(folder)
    runner = CliRunner()
    if as_written is not None:
        (folder / "as-written.toml").write_text(as_written)
        checked = runner.invoke(cli, ["validate", "as-written.toml"], obj=registry)
        assert checked.exit_code == 0, checked.output
    (folder / "suite.toml").write_text(suite)
    validated = runner.invoke(cli, ["validate", "suite.toml"], obj=registry)
    assert validated.exit_code == 0, validated.output
    ran = runner.invoke(cli, ["run", "suite.toml", "--out", "run", "--workers", "1"], obj=registry)
    results = read_results([folder / "run"])
    failed = [f"{r.cell.label}: {r.error}" for r in results if r.status != "done"]
    assert ran.exit_code == 0 and not failed, ran.output + "\n".join(failed)
    assert (folder / "run" / "site" / "index.html").is_file()
    return validated.output + ran.output, results


def pretraining(results: list, objective: str):
    (found,) = [r for r in results if r.cell.stage == "pretrain" and r.cell.objective == objective]
    return found


def top_labels(per_record: dict[str, list[str]], ids: list[str], top: int = 32) -> list[str]:
    """The label vocabulary by hand: the ``top`` labels most records of ``ids`` have, ties by their text."""
    counts = Counter(label for rid in ids for label in set(per_record[rid]))
    return [label for label, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def pretraining_ids(folder: Path, suite: str, registry: Registry) -> list[str]:
    from stence_bench.protocol.data import Workspace
    from stence_bench.suite import parse_suite

    ws = Workspace(parse_suite(suite), registry, folder / "run", echo=lambda line: None)
    return ws.pretraining_records().record_ids


def evaluations(results: list) -> dict[tuple[str, str, str], float]:
    return {(r.cell.task, r.cell.objective, r.cell.stage): r.value for r in results if r.cell.stage != "pretrain"}


def test_generated_challenge_files_are_read_like_the_real_ones(tmp_path, realdata):
    """A generated CinC record has the real files' form: the same MATLAB v4 header (type 30, leads x samples,
    'val'), header lines and comments; wfdb and stence-bench read the same millivolts from both."""
    import numpy as np
    import wfdb

    from stence_bench.data.fake import write_cinc_mat
    from stence_bench.data.wfdb_io import read_wfdb

    real = (realdata / "cinc2021" / "E07500.mat").read_bytes()
    signal = wfdb.rdrecord(str(realdata / "cinc2021" / "E07500")).p_signal.T
    write_cinc_mat(tmp_path / "E07500", signal, 500, comments=["Age: 78", "Sex: Male", "Dx: 67741000119109,426177001"])
    ours = (tmp_path / "E07500.mat").read_bytes()
    assert ours[:24] == real[:24] and ours == real  # the same bytes: the real file is what this writer writes
    real_header = (realdata / "cinc2021" / "E07500.hea").read_text().splitlines()
    assert (tmp_path / "E07500.hea").read_text().splitlines()[:13] == real_header[:13]
    record, _ = read_wfdb(tmp_path / "E07500.hea")
    np.testing.assert_allclose(record.physical(), signal, atol=1e-6)


# -- PTB-XL ------------------------------------------------------------------------------------------------------


def test_ptbxl_tasks_on_a_ptbxl_download(registry, tmp_path, monkeypatch, realdata):
    download = tmp_path / "physionet.org" / "files" / "ptb-xl" / "1.0.3"
    database = write_ptbxl_download(download, 30, rates=(100,), real=realdata / "ptb-xl")
    assert tuple(pd.read_csv(download / "ptbxl_database.csv").columns) == PTBXL_DATABASE_COLUMNS
    assert tuple(pd.read_csv(realdata / "ptb-xl" / "ptbxl_database_extract.csv", nrows=0).columns) == PTBXL_DATABASE_COLUMNS
    written = doc_suite("ptbxl-mine")
    suite = shrink(written)
    output, results = run_suite_cli(registry, tmp_path, suite, monkeypatch, as_written=written)
    assert "(controls added: none, supervised)" in output
    tasks = ("ptbxl.superdiagnostic", "ptbxl.subdiagnostic", "ptbxl.form", "ptbxl.rhythm")
    objectives = ("patient_contrastive", "none", "supervised")
    assert set(evaluations(results)) == {(t, o, s) for t in tasks for o in objectives
                                         for s in ("linear_probe", "finetune")}
    supervised = pretraining(results, "supervised")
    assert supervised.pretrain["label_source"] == (
        "ptbxl: SCP statements of each record's scp_codes in ptbxl_database.csv (any likelihood)")
    codes = {str(e): sorted(ast.literal_eval(c)) for e, c in zip(database["ecg_id"], database["scp_codes"])}
    assert codes["1"] == ["LVOLT", "NORM", "SR"]  # the real record 1
    ids = pretraining_ids(tmp_path, suite, registry)
    assert supervised.pretrain["label_vocabulary"] == top_labels(codes, ids)
    assert supervised.pretrain["records"] == len(ids)
    folds = dict(zip(database["ecg_id"].astype(str), database["strat_fold"]))
    assert ids and all(folds[i] <= 8 for i in ids)  # no validation or test fold of the tasks


# -- CinC 2021 ---------------------------------------------------------------------------------------------------


def test_cinc2021_on_a_challenge_download(registry, tmp_path, monkeypatch, realdata):
    """The run issue 21 reports: before, the supervised control failed ("dataset 'cinc2021' has no reports") and
    took its evaluation cells with it."""
    download = tmp_path / "physionet.org" / "files" / "challenge-2021" / "1.0.3"
    names = write_cinc2021_download(download, 40, real=realdata / "cinc2021")
    assert len(names) == 65 and (download / "training" / "ptb-xl" / "g1" / "HR06000.mat").is_file()
    written = doc_suite("cinc-mine")
    suite = shrink(written)
    _, results = run_suite_cli(registry, tmp_path, suite, monkeypatch, as_written=written)
    assert set(evaluations(results)) == {("cinc2021.scored", o, s) for o in ("metric_learning", "none", "supervised")
                                         for s in ("linear_probe", "finetune")}
    supervised = pretraining(results, "supervised")
    assert supervised.pretrain["label_source"] == "cinc2021: SNOMED-CT codes of each header's '# Dx' line (scored or not)"
    dx = {}
    for header in download.rglob("*.hea"):
        line = next(x for x in header.read_text().splitlines() if x.startswith("# Dx:"))
        dx[header.stem] = line.split(":", 1)[1].strip().split(",")
    assert dx["HR06000"] == ["164934002", "426783006"]  # a real record (PTB-XL's 6000)
    ids = pretraining_ids(tmp_path, suite, registry)
    rid = {Path(i).name: i for i in ids}  # the wfdb-style record id is the path below the source
    assert supervised.pretrain["label_vocabulary"] == top_labels({i: dx[n] for n, i in rid.items()}, ids)
    assert any(n.startswith(("HR", "E0", "JS")) for n in rid)  # real records pretrain too


def test_a_control_that_cannot_run_is_shown_absent_not_failed(registry, tmp_path, monkeypatch, realdata):
    """Pretraining on WFDB files without labels (a hospital's Holter export, here CinC records read as plain
    WFDB): the supervised control is left out with a notice; the leaderboard shows its row as absent."""
    write_cinc2021_download(tmp_path / "challenge", 12, real=realdata / "cinc2021")
    write_cinc2021_download(tmp_path / "holter", 20, seed=5)
    suite = f"""
name = "unlabelled-pretraining"
tasks = ["cinc2021.scored"]
objectives = ["none", "metric_learning"]
{TINY}
[data]
pretrain = "holter"
[data.sources.cinc2021]
path = "challenge"
[data.sources.holter]
path = "holter"
layout = "wfdb"
"""
    output, results = run_suite_cli(registry, tmp_path, suite, monkeypatch)
    note = "note: control 'supervised' left out: it needs labels, which the pretraining dataset 'holter' does not provide"
    assert output.count(note) == 2  # validate, run
    assert {r.cell.objective for r in results} == {"none", "metric_learning"}
    from stence_bench.leaderboard import build, load_suites

    (page,) = build(load_suites([tmp_path / "run"]), registry).suites
    (task,) = page.tasks
    rows = {row.objective: row for row in task.rows}
    assert [c.status for c in rows["supervised"].cells] == ["absent", "absent"]
    assert rows["supervised"].cells[0].title.startswith("absent: control 'supervised' left out of the suite: it needs")
    assert task.n_failed == 0 and task.n_missing == 0
    assert {c.status for c in rows["none"].cells} == {"done"}
    assert [o.absent for o in page.objectives if o.name == "supervised"] == [
        "needs labels, which the pretraining dataset 'holter' does not provide"]
    html = (tmp_path / "run" / "site" / "unlabelled-pretraining" / "cinc2021.scored.html").read_text()
    assert 'class="v absent"' in html and "failed" not in html.split("<tbody>")[1].split("</tbody>")[0]


# -- the clinical families over MIMIC-IV-ECG ---------------------------------------------------------------------


def test_clinical_families_on_mimic_iv_ecg_with_label_tables(registry, tmp_path, monkeypatch):
    root = write_mimic_iv_ecg_download(tmp_path / "generated", 40, seed=3)
    mimic = tmp_path / "physionet.org" / "files" / "mimic-iv-ecg" / "1.0"
    mimic.parent.mkdir(parents=True)
    (root / "mimic-iv-ecg").rename(mimic)
    (root / "tables").rename(tmp_path / "clinical-tables")
    assert tuple(pd.read_csv(mimic / "record_list.csv", nrows=0).columns) == MIMIC_RECORD_LIST_COLUMNS
    measurements = pd.read_csv(mimic / "machine_measurements.csv")
    assert tuple(measurements.columns) == MIMIC_MACHINE_MEASUREMENTS_COLUMNS
    assert next(mimic.glob("files/p1000/p1000*/s*/*.hea")).parent.parent.name.startswith("p1000")
    written = doc_suite("clinical-mine")
    suite = shrink(written)
    _, results = run_suite_cli(registry, tmp_path, suite, monkeypatch, as_written=written)
    tasks = ("stenosis.70", "lvef.40", "potassium.5.5", "pcwp.18")
    objectives = ("clip_text", "clef", "none", "supervised")
    assert set(evaluations(results)) == {(t, o, s) for t in tasks for o in objectives
                                         for s in ("linear_probe", "finetune")}
    supervised = pretraining(results, "supervised")
    assert supervised.pretrain["label_source"] == (
        "mimic-iv-ecg: machine statements (the report_N columns of machine_measurements.csv)")
    statements = {str(row.study_id): [str(row[f"report_{i}"]).strip().lower() for i in range(18)
                                      if isinstance(row[f"report_{i}"], str)] for _, row in measurements.iterrows()}
    ids = pretraining_ids(tmp_path, suite, registry)
    assert supervised.pretrain["label_vocabulary"] == top_labels(statements, ids)
    assert "sinus rhythm" in supervised.pretrain["label_vocabulary"]
    # the results say which label tables the tasks read: each task's labels are inputs of its cells
    assert all(r.inputs.get("labels") for r in results if r.cell.stage != "pretrain")
    assert json.loads((tmp_path / "run" / "suite.json").read_text())["data"]["synthetic"] is None
