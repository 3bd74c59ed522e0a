"""The public Python API (``stence_bench.run``, ``load_results``, ``build_leaderboard``), ``stence-bench results show
--json`` and ``results export``, and the site's downloads: summaries in ``results.json``, the complete result files in
``results.zip`` (issue 17)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, REPO

import stence_bench
from stence_bench.cli import cli
from stence_bench.registry import Registry
from stence_bench.results import paired_differences, read_results
from stence_bench.results.aggregate import aggregate

MINI = REPO / "tests" / "fixtures" / "leaderboard" / "mini"

TINY = """
name = "api"
tasks = ["ptbxl.superdiagnostic"]
objectives = ["none"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = false

[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 20

[data]
synthetic = {patients = 40, seed = 3, angiograms = false}
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


def test_importing_the_package_stays_cheap():
    code = ("import sys, stence_bench; assert callable(stence_bench.run) and callable(stence_bench.load_results); "
            "print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_results_has_one_row_per_cell_with_its_config_and_scores():
    results = read_results([MINI])
    df = stence_bench.load_results(MINI)
    assert len(df) == len(results) == 20 and df["key"].is_unique
    by_key = {r.key: r for r in results}
    paired = paired_differences(results)
    for row in df.to_dict("records"):
        r = by_key[row["key"]]
        assert (row["stage"], row["encoder"], row["objective"], row["seed"]) == (
            r.cell.stage, r.cell.encoder, r.cell.objective, r.cell.seed)
        assert json.loads(row["config"]) == r.cell.model_dump(mode="json")
        if r.value is not None:
            assert row["value"] == r.value and row["test_auroc"] == r.scores["test"]["auroc"]
            assert (row["ci_low"], row["ci_high"]) == tuple(r.ci["auroc"])
            assert row["n_test"] == r.n["test"]
        else:
            assert pd.isna(row["value"])
        if r.key in paired:
            assert row["vs_control_mean"] == paired[r.key].mean
    # the paired difference by hand: a clip cell's mean difference to its none cell on the same resamples
    clip = next(r for r in results if r.cell.objective == "clip" and r.key in paired)
    none = next(r for r in results if r.key == paired[clip.key].control_key)
    diffs = [a - b for a, b in zip(clip.bootstrap["values"], none.bootstrap["values"])]
    assert df.set_index("key").loc[clip.key, "vs_control_mean"] == pytest.approx(sum(diffs) / len(diffs))


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_results_export_writes_the_rows_of_load_results(tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    result = CliRunner().invoke(cli, ["results", "export", str(MINI), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{out}: 20 cell(s)"
    expected = stence_bench.load_results(MINI)
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    elif suffix == ".json":
        rows = json.loads(out.read_text())
        assert rows == json.loads(expected.to_json(orient="records", double_precision=15))
        assert [r["key"] for r in rows] == list(expected["key"])
    else:
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert list(rows[0]) == list(expected.columns) and len(rows) == len(expected)
        for row, (_, want) in zip(rows, expected.iterrows()):
            assert row["key"] == want["key"] and row["status"] == want["status"]
            if pd.isna(want["value"]):
                assert row["value"] == ""
            else:
                assert float(row["value"]) == pytest.approx(want["value"])


def test_results_export_refuses_an_unknown_suffix_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["results", "export", str(MINI), "-o", str(tmp_path / "results.xlsx")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {tmp_path / 'results.xlsx'}: unknown export format '.xlsx'; use one of .csv, .json, .parquet"]
    assert not (tmp_path / "results.xlsx").exists()


def test_results_show_json_holds_the_tables_numbers():
    result = CliRunner().invoke(cli, ["results", "show", str(MINI), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    rows = aggregate(read_results([MINI]))
    assert len(payload["rows"]) == len(rows) and payload["comparisons"] == []
    for got, want in zip(payload["rows"], rows):
        assert (got["task"], got["encoder"], got["objective"], got["fraction"]) == (
            want.task, want.encoder, want.objective, want.fraction)
        assert got["mean"] == want.mean and got["diff"] == want.diff and got["p_holm"] == want.p_holm
    only = json.loads(CliRunner().invoke(cli, ["results", "show", str(MINI), "--json", "--task", "ptbxl*"]).output)
    assert {r["task"] for r in only["rows"]} == {"ptbxl.superdiagnostic"}


def test_the_site_publishes_summaries_and_the_complete_files_in_an_archive(tmp_path):
    index = stence_bench.build_leaderboard([MINI], tmp_path / "site", registry=Registry.load(environ=BUILTINS_ONLY))
    folder = index.parent / "mini"
    results = read_results([MINI])
    summaries = json.loads((folder / "results.json").read_text())
    assert sorted(s["key"] for s in summaries) == sorted(r.key for r in results)
    for s in summaries:
        assert "values" not in s["bootstrap"] and all("values" not in g for g in s["subgroups"].values())
    done = next(s for s in summaries if s["bootstrap"])
    assert done["bootstrap"]["n_resamples"] == 20 and done["value"] is not None
    paired = paired_differences(results)
    assert all((s["vs_control"] or {}).get("mean") == (paired[s["key"]].mean if s["key"] in paired else None)
               for s in summaries)
    with zipfile.ZipFile(folder / "results.zip") as zf:
        names = zf.namelist()
        assert sorted(names) == sorted([f"mini/results/{r.key}.json" for r in results] + ["mini/suite.json"])
        for r in results:  # every result file, bootstrap vectors included, as the run wrote it
            assert zf.read(f"mini/results/{r.key}.json") == (MINI / "results" / f"{r.key}.json").read_bytes()
        assert zf.read("mini/suite.json") == (MINI / "suite.json").read_bytes()
    assert "results.zip" in (folder / "index.html").read_text()
    again = stence_bench.build_leaderboard(MINI, tmp_path / "again", registry=Registry.load(environ=BUILTINS_ONLY))
    assert (again.parent / "mini" / "results.zip").read_bytes() == (folder / "results.zip").read_bytes()


def test_run_load_results_and_build_leaderboard_end_to_end(tmp_path, registry, capsys):
    report = stence_bench.run(_suite_file(tmp_path), out=tmp_path / "run",
                              registry=registry, workers=1, device="cpu")
    assert [o.status for o in report.outcomes] == ["done"] and not report.failed
    assert report.site == tmp_path / "run" / "site" / "index.html" and report.site.is_file()
    assert "leaderboard:" in capsys.readouterr().out
    df = stence_bench.load_results(report.root)
    (row,) = df.to_dict("records")
    assert (row["stage"], row["task"], row["objective"], row["status"]) == (
        "linear_probe", "ptbxl.superdiagnostic", "none", "done")
    (result,) = read_results([report.root])
    assert row["value"] == result.value and row["key"] == result.key
    again = stence_bench.run(_suite_file(tmp_path), out=tmp_path / "run", registry=registry, workers=1, quiet=True)
    assert [o.status for o in again.outcomes] == ["cached"]
    index = stence_bench.build_leaderboard(report.root, tmp_path / "site", registry=registry)
    assert (index.parent / "api" / "ptbxl.superdiagnostic.html").is_file()


def test_run_reports_a_bad_suite_as_a_user_error(tmp_path, registry):
    from stence_bench.errors import StenceBenchError

    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('objectives = ["none"]', 'objectives = ["nonee"]'))
    with pytest.raises(StenceBenchError, match="nonee"):
        stence_bench.run(bad, out=tmp_path / "run", registry=registry, quiet=True)
    assert not (tmp_path / "run").exists()


def _suite_file(tmp_path):
    path = tmp_path / "api.toml"
    path.write_text(TINY)
    return path


def test_an_undefined_number_is_published_as_null():
    from stence_bench.results.export import summaries

    (result,) = [r for r in read_results([MINI]) if r.value is not None][:1]
    broken = result.model_copy(update={"value": float("nan"), "wall_s": float("inf")})
    (summary,) = summaries([broken])
    assert summary["value"] is None and summary["wall_s"] is None and summary["metric"] == result.metric
    json.dumps(summary, allow_nan=False)  # strict JSON
