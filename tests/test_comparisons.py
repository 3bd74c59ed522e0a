"""Comparisons against any row and across tasks (issue 23): a suite names reference rows, the tables give paired
differences on the shared resamples per task and their means over the suite's tasks; results show and the
leaderboard print them."""

from __future__ import annotations

import html5lib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench.cli import cli
from stence_bench.leaderboard import build_site
from stence_bench.leaderboard.build import build, load_suites
from stence_bench import results as res
from stence_bench.protocol.runner import run_suite
from stence_bench.results.aggregate import aggregate, compare
from stence_bench.registry import Registry
from stence_bench.suite import Comparison, check_names, parse_suite, plan


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


HEAD = """
name = "c"
tasks = ["lvef.35", "ptbxl.superdiagnostic", "lvef.regression"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}, "resnet1d18"]
objectives = ["none", "supervised"]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [0.5, 1.0]
draws = 1
"""

# per task: (row values, reference values) on four shared resamples, fraction 1.0
VALUES = {
    "lvef.35": ([0.8, 0.7, 0.9, 0.6], [0.7, 0.7, 0.8, 0.5]),
    "ptbxl.superdiagnostic": ([0.6, 0.6, 0.6, 0.6], [0.5, 0.6, 0.7, 0.4]),
    "lvef.regression": ([8.0, 10.0, 9.0, 12.0], [10.0, 10.0, 12.0, 12.0]),
}


def made_up(registry, values=VALUES, fraction_half=None):
    """Results of the suite's resnet1d_wang cells: ``none`` is the row, ``supervised`` the reference."""
    out = []
    for cell in plan(parse_suite(HEAD), registry):
        if cell.stage == "pretrain" or cell.encoder != "resnet1d_wang":
            continue
        if cell.fraction == 0.5 and fraction_half is None:
            continue
        row, ref = values[cell.task] if cell.fraction == 1.0 else fraction_half[cell.task]
        boot = row if cell.objective == "none" else ref
        metric = "mae" if cell.task == "lvef.regression" else "auroc"
        out.append(res.CellResult(key=cell.key, cell=cell, status="done", started="", finished="", wall_s=0.0,
                                  metric=metric, value=float(np.mean(boot)),
                                  bootstrap={"n_resamples": 4, "seed": 0, "values": boot}))
    return out


def test_paired_differences_per_task_and_their_mean_over_tasks_by_hand(registry):
    diffs = compare(made_up(registry), [Comparison(row="none", reference="supervised")])
    by_task = {d.task: d for d in diffs if d.task is not None}
    # lvef.35: d = [0.1, 0, 0.1, 0.1]: mean 0.075; percentiles of the sorted [0, .1, .1, .1]: 2.5 % at rank 0.075
    # -> 0.0075, 97.5 % -> 0.1; p = 2 min(P(d <= 0) = 1/4, P(d >= 0) = 1) = 0.5
    a = by_task["lvef.35"]
    assert (a.comparison, a.objective, a.reference_objective) == ("none vs supervised", "none", "supervised")
    assert (a.mean, a.low, a.high, a.p_value) == pytest.approx((0.075, 0.0075, 0.1, 0.5))
    # ptbxl: d = [0.1, 0, -0.1, 0.2]: mean 0.05
    assert by_task["ptbxl.superdiagnostic"].mean == pytest.approx(0.05)
    # MAE, positive = lower: reference - row = [2, 0, 3, 0]: mean 1.25
    assert by_task["lvef.regression"].mean == pytest.approx(1.25)
    assert by_task["lvef.regression"].measure == "difference"
    summary = {d.metric: d for d in diffs if d.task is None}
    # AUROC gain over two tasks: resample-wise means [0.1, 0, 0, 0.15], point (0.075 + 0.05) / 2 = 0.0625;
    # percentiles of the sorted [0, 0, .1, .15]: 2.5 % -> 0, 97.5 % at rank 2.925 -> 0.1 + 0.925 * 0.05 = 0.14625
    auroc = summary["auroc"]
    assert auroc.tasks == ["lvef.35", "ptbxl.superdiagnostic"] and auroc.measure == "difference"
    assert (auroc.mean, auroc.low, auroc.high) == pytest.approx((0.0625, 0.0, 0.14625))
    # MAE across tasks: the relative reduction 1 - row / reference = [0.2, 0, 0.25, 0]: mean 0.1125
    mae = summary["mae"]
    assert mae.measure == "relative reduction" and mae.tasks == ["lvef.regression"]
    # percentiles of the sorted [0, 0, 0.2, 0.25]: 2.5 % -> 0, 97.5 % at rank 2.925 -> 0.2 + 0.925 * 0.05 = 0.24625
    assert (mae.mean, mae.low, mae.high) == pytest.approx((0.1125, 0.0, 0.24625))


def test_holm_corrects_each_comparisons_differences_within_a_task_and_stage(registry):
    half = {"lvef.35": ([0.9, 0.9, 0.9, 0.9], [0.5, 0.6, 0.7, 0.8]),  # d > 0 everywhere: p = 0
            "ptbxl.superdiagnostic": VALUES["ptbxl.superdiagnostic"], "lvef.regression": VALUES["lvef.regression"]}
    diffs = [d for d in compare(made_up(registry, fraction_half=half), [Comparison(row="none", reference="supervised")])
             if d.task == "lvef.35"]
    by_fraction = {d.fraction: d for d in diffs}
    assert (by_fraction[0.5].p_value, by_fraction[1.0].p_value) == (0.0, 0.5)
    # Holm over the two: the smaller times 2 -> 0, the larger times 1 -> 0.5 (never below the one before)
    assert (by_fraction[0.5].p_holm, by_fraction[1.0].p_holm) == (0.0, 0.5)
    assert by_fraction[0.5].significant and not by_fraction[1.0].significant


def test_the_same_pairs_as_the_control_difference_mirror_it(registry):
    # "supervised vs none" is the difference every row already has to the none control, on the same code path
    results = made_up(registry)
    rows = {(r.task, r.objective): r for r in aggregate(results)}
    diffs = {d.task: d for d in compare(results, [Comparison(row="supervised", reference="none")]) if d.task}
    for task in VALUES:
        row = rows[(task, "supervised")]
        assert (diffs[task].mean, diffs[task].low, diffs[task].high) == pytest.approx(
            (row.diff, row.diff_low, row.diff_high))


def test_a_reference_encoder_compares_encoders_with_the_same_objective(registry):
    results = []
    for cell in plan(parse_suite(HEAD), registry):
        if cell.stage == "pretrain" or cell.task != "lvef.35" or cell.fraction != 1.0 or cell.objective != "none":
            continue
        boot = [0.9, 0.8, 0.7, 0.6] if cell.encoder == "resnet1d18" else [0.5, 0.5, 0.5, 0.5]
        results.append(res.CellResult(key=cell.key, cell=cell, status="done", started="", finished="", wall_s=0.0,
                                      metric="auroc", value=float(np.mean(boot)),
                                      bootstrap={"n_resamples": 4, "seed": 0, "values": boot}))
    diffs = compare(results, [Comparison(reference={"encoder": "resnet1d_wang[tiny]"})])
    per_task = [d for d in diffs if d.task is not None]
    assert len(per_task) == 1
    d = per_task[0]
    assert (d.encoder, d.reference_encoder, d.objective, d.reference_objective) == (
        "resnet1d18", "resnet1d_wang[tiny]", "none", "none")
    assert d.mean == pytest.approx(0.25)  # [0.4, 0.3, 0.2, 0.1]
    # the bare name finds the same row
    assert compare(results, [Comparison(reference={"encoder": "resnet1d_wang"})])[0].mean == pytest.approx(0.25)


def test_a_comparison_naming_what_the_suite_lacks_is_a_one_line_error(registry):
    suite = parse_suite(HEAD.replace(
        'controls = false', 'controls = false\ncomparisons = [{row = "clip", reference = "supervisd"}, '
        '{reference = {encoder = "resnet1d_wang[tiny]", objective = "none"}, row = {encoder = "resnet1d_wang[tiny]", '
        'objective = "none"}}, {row = "none", reference = {}}]'))
    problems = [p for p in check_names(suite, registry, "s.toml") if "comparisons" in p]
    assert problems == [
        "s.toml: comparisons[0].row.objective: 'clip' is not an objective of the suite (objectives: none, supervised)",
        "s.toml: comparisons[0].reference.objective: 'supervisd' is not an objective of the suite; did you mean "
        "'supervised'? (objectives: none, supervised)",
        "s.toml: comparisons[1]: the row and its reference are the same",
        "s.toml: comparisons[2].reference: name an encoder or an objective to compare with",
    ]
    with pytest.raises(Exception, match=r"comparisons\[0\]\.reference: required field missing"):
        parse_suite(HEAD.replace("controls = false", 'controls = false\ncomparisons = [{row = "none"}]'))


def test_comparisons_leave_cell_keys_alone(registry):
    with_comparisons = parse_suite(HEAD.replace("controls = false", 'controls = false\ncomparisons = ['
                                                '{row = "none", reference = "supervised"}]'))
    assert [c.key for c in plan(with_comparisons, registry)] == [c.key for c in plan(parse_suite(HEAD), registry)]
    assert "comparisons" not in parse_suite(HEAD).model_dump()


# -- end to end on the synthetic cohort ------------------------------------------------------------------------

SUITE = """
name = "cmp"
tasks = ["ptbxl.superdiagnostic", "lvef.35", "lvef.regression"]
objectives = ["none", "supervised"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = false
comparisons = [{name = "vs the supervised control", reference = "supervised"}]
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 20
pretrain = {epochs = 1, batch_size = 16}
[data]
synthetic = {patients = 60, seed = 3, angiograms = false}
"""


def test_a_suites_comparisons_end_to_end(tmp_path, registry):
    root = tmp_path / "run"
    run_suite(parse_suite(SUITE), registry, root, echo=lambda line: None)
    results = res.read_results([root])
    out = CliRunner().invoke(cli, ["results", "show", str(root)])
    assert out.exit_code == 0, out.output
    assert "vs the supervised control" in out.output and "mean of 2 tasks" in out.output
    assert "mean of 1 task " in out.output  # lvef.regression: MAE reduction
    # the per-task differences mirror the paired differences of the supervised cells to the none control
    paired = res.paired_differences(results)
    control = {r.cell.task: paired[r.key] for r in results if r.cell.objective == "supervised" and r.key in paired}
    diffs = [d for d in compare(results, [Comparison(name="x", reference="supervised")]) if d.task is not None]
    assert len(diffs) == 3
    for d in diffs:
        assert d.mean == pytest.approx(-control[d.task].mean)
    site = build(load_suites([root]), registry)
    assert [c.task for c in site.suites[0].comparisons] == ["lvef.35", "lvef.regression", "ptbxl.superdiagnostic",
                                                            None, None]
    build_site([root], tmp_path / "site", registry=registry)
    page = (tmp_path / "site" / "cmp" / "index.html").read_bytes()
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)
    assert b'id="comparisons"' in page and b"mean of 2 tasks" in page
