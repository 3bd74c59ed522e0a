"""The protocol runner end to end on a small synthetic cohort: results, resume after a kill, failure isolation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import BUILTINS_ONLY
from plugin_fixtures import Plugin

from stence_bench import ObjectiveSpec, hookimpl
from stence_bench.cli import cli
from stence_bench.pretraining import Objective
from stence_bench.protocol.pretrain import load_checkpoint
from stence_bench.protocol.runner import run_suite
from stence_bench.results import SCHEMA_VERSION, paired_differences, read_results
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan

SUITE = """
name = "tiny"
tasks = ["stenosis.70", "ptbxl.superdiagnostic"]
objectives = ["patient_contrastive"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = true

[protocol]
stages = ["linear_probe", "finetune"]
fractions = [0.5, 1.0]
draws = 2
bootstrap = 50
pretrain = {epochs = 1, batch_size = 16}
finetune = {max_epochs = 2, patience = 1, batch_size = 32}

[data]
synthetic = {patients = 60, seed = 3, angiograms = false}
"""


class Broken(Objective):
    """An objective that always raises: the run must record it and go on."""

    def __init__(self, encoder, *, leads, name, **_):
        super().__init__(encoder, leads=leads, name=name)

    def forward(self, batch):
        raise RuntimeError("this objective is broken on purpose")


def broken_objective(**kwargs):
    return Broken(**kwargs)


class StopAfter:
    """An observer that interrupts the run (as a kill would) after ``n`` cells have been run."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0
        self.__name__ = "stop-after"

    @hookimpl
    def cell_finished(self, cell, outcome):
        if outcome.status == "done":
            self.seen += 1
            if self.seen >= self.n:
                raise KeyboardInterrupt


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("run")
    suite = parse_suite(SUITE)
    outcomes = run_suite(suite, registry, root, echo=lambda line: None)
    return suite, root, outcomes


def test_a_run_writes_one_result_per_cell_with_provenance(finished_run, registry):
    suite, root, outcomes = finished_run
    cells = plan(suite, registry)
    assert [o.status for o in outcomes] == ["done"] * len(cells), [o.error for o in outcomes if o.error]
    results = {r.key: r for r in read_results([root])}
    assert set(results) == {c.key for c in cells}
    probe = next(r for r in results.values() if r.cell.stage == "linear_probe" and r.cell.task == "stenosis.70"
                 and r.cell.fraction == 0.5)
    assert probe.metric == "auroc" and 0 <= probe.value <= 1
    low, high = probe.ci["auroc"]
    assert low <= probe.value <= high
    assert len(probe.bootstrap["values"]) == 50
    assert probe.train["patients"] < results[next(k for k, r in results.items() if r.cell.stage == "linear_probe"
                                                   and r.cell.task == "stenosis.70" and r.cell.fraction == 1.0
                                                   and r.cell.objective == probe.cell.objective)].train["patients"]
    assert len(probe.train["sampled_ids_hash"]) == 16 and probe.dataset_fingerprint
    assert probe.versions["stence-bench"] and probe.device and probe.wall_s > 0
    # the control's paired difference is derived for every other objective
    others = [r for r in results.values() if r.cell.stage != "pretrain" and r.cell.objective != "none"]
    paired = paired_differences(results.values())
    assert others and all(paired[r.key].control == "none" for r in others)


def test_result_files_are_written_once_and_never_hold_what_is_derived_from_several(finished_run):
    """The runner used to rewrite every evaluation result after the run to add its paired difference to the control
    (``vs_control``); it is derived where it is shown now, so a file holds what its cell wrote, and nothing else."""
    _, root, _ = finished_run
    files = sorted((root / "results").glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        assert "vs_control" not in data, path.name
        assert data["schema_version"] == SCHEMA_VERSION == "3"


def test_checkpoints_load_without_code_and_carry_their_config(finished_run, registry):
    suite, root, _ = finished_run
    pretrain = next(c for c in plan(suite, registry) if c.stage == "pretrain" and c.objective == "patient_contrastive")
    path = root / "checkpoints" / f"{pretrain.key}.safetensors"
    encoder = registry.encoders.get("resnet1d_wang").build("tiny")
    stored = load_checkpoint(path, encoder)
    assert stored["cell"]["objective"] == "patient_contrastive" and stored["info"]["records"] > 0
    fresh = registry.encoders.get("resnet1d_wang").build("tiny")
    assert any(not torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), fresh.state_dict().values()))


def test_a_killed_run_resumes_without_recomputing_finished_cells(tmp_path, registry):
    suite = parse_suite(SUITE.replace('objectives = ["patient_contrastive"]', 'objectives = ["none"]').replace(
        "draws = 2", "draws = 1"))
    stopper = StopAfter(3)
    interrupted = Registry.load(extra=[stopper], environ=BUILTINS_ONLY)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, interrupted, tmp_path, echo=lambda line: None)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    assert len(first) == 3
    outcomes = run_suite(suite, registry, tmp_path, echo=lambda line: None)
    assert sum(o.status == "cached" for o in outcomes) == 3
    assert all(o.status in ("done", "cached") for o in outcomes)
    again = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    assert all(again[name] == mtime for name, mtime in first.items())  # a finished cell's file is never rewritten
    rerun = run_suite(suite, registry, tmp_path, echo=lambda line: None)
    assert {o.status for o in rerun} == {"cached"}


def test_a_failing_objective_is_isolated_and_the_exit_status_says_so(tmp_path):
    broken = ObjectiveSpec(name="broken", factory="test_protocol:broken_objective", modalities=("ecg",))
    registry = Registry.load(extra=[Plugin("p", objectives=[broken])], environ=BUILTINS_ONLY)
    suite_path = tmp_path / "s.toml"
    suite_path.write_text(SUITE.replace('"patient_contrastive"', '"broken"').replace("draws = 2", "draws = 1")
                          .replace('tasks = ["stenosis.70", "ptbxl.superdiagnostic"]', 'tasks = ["stenosis.70"]'))
    result = CliRunner().invoke(cli, ["run", str(suite_path), "--out", str(tmp_path / "run")], obj=registry)
    assert result.exit_code == 1, result.output
    # the site is built before the exit status: its index page is the last line
    assert result.output.splitlines()[-1] == f"leaderboard: {tmp_path / 'run' / 'site' / 'index.html'}"
    assert (tmp_path / "run" / "site" / "index.html").is_file()
    results = read_results([tmp_path / "run"])
    failed = [r for r in results if r.status == "failed"]
    assert {r.cell.objective for r in failed} == {"broken"}
    pretrain = next(r for r in failed if r.cell.stage == "pretrain")
    assert "this objective is broken on purpose" in pretrain.error and "Traceback" in pretrain.error
    assert all("its pretraining cell" in r.error for r in failed if r.cell.stage != "pretrain")
    assert {r.cell.objective for r in results if r.status == "done"} == {"none", "supervised"}
    assert "failed" in result.output and "this objective is broken on purpose" in result.output
    shown = CliRunner().invoke(cli, ["results", "show", str(tmp_path / "run")], obj=registry)
    assert shown.exit_code == 0 and "stenosis.70" in shown.output and "0/1" in shown.output


def test_results_show_prints_the_table(finished_run, registry):
    _, root, _ = finished_run
    out = CliRunner().invoke(cli, ["results", "show", str(root), "--task", "stenosis.*"], obj=registry).output
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["task", "stage", "encoder"]
    assert all(line.startswith("stenosis.70") for line in lines[2:-2] if line.strip())
    assert any(" patient_contrastive " in line for line in lines)


def test_results_show_names_a_bad_folder_and_a_bad_file(tmp_path, registry):
    missing = CliRunner().invoke(cli, ["results", "show", str(tmp_path / "nope")], obj=registry)
    assert missing.exit_code == 2 and "no such folder" in missing.output
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text(json.dumps({"key": "x"}))
    bad = CliRunner().invoke(cli, ["results", "show", str(tmp_path)], obj=registry)
    assert bad.exit_code == 2 and "x.json: not a stence-bench result" in bad.output


def test_zero_shot_scores_classes_by_their_descriptions(tmp_path, registry):
    suite = parse_suite(SUITE.replace('objectives = ["patient_contrastive"]', 'objectives = ["clip_text"]')
                        .replace("controls = true", "controls = false")
                        .replace('stages = ["linear_probe", "finetune"]', 'stages = ["zero_shot"]')
                        .replace('tasks = ["stenosis.70", "ptbxl.superdiagnostic"]',
                                 'tasks = ["stenosis.70", "ptbxl.superdiagnostic", "lvef.35"]'))
    cells = plan(suite, registry)
    # lvef.35 has no class descriptions: no zero-shot cell for it
    assert sorted((c.stage, c.task) for c in cells) == [("pretrain", None), ("zero_shot", "ptbxl.superdiagnostic"),
                                                        ("zero_shot", "stenosis.70")]
    outcomes = run_suite(suite, registry, tmp_path, echo=lambda line: None)
    assert [o.status for o in outcomes] == ["done"] * 3, [o.error for o in outcomes]
    results = [r for r in read_results([tmp_path]) if r.cell.stage == "zero_shot"]
    for r in results:
        assert r.train == {"records": 0, "patients": 0} and 0 <= r.value <= 1
    superclass = next(r for r in results if r.cell.task == "ptbxl.superdiagnostic")
    assert set(superclass.selected["prompts"]) == {"NORM", "MI", "STTC", "CD", "HYP"}
    pretrain = next(c for c in cells if c.stage == "pretrain")
    assert (tmp_path / "checkpoints" / f"{pretrain.key}.objective.safetensors").is_file()


def test_lead_one_alone_is_evaluated_with_the_other_leads_zeroed(tmp_path, registry):
    from stence_bench.protocol.data import Workspace, lead_mask

    suite = parse_suite(SUITE.replace('objectives = ["patient_contrastive"]', 'objectives = ["none"]')
                        .replace("controls = true", "controls = false")
                        .replace('stages = ["linear_probe", "finetune"]', 'stages = ["linear_probe"]')
                        .replace("fractions = [0.5, 1.0]", "fractions = [1.0]")
                        .replace('tasks = ["stenosis.70", "ptbxl.superdiagnostic"]', 'tasks = ["stenosis.70"]')
                        .replace("[protocol]", '[protocol]\nleads = ["all", "I"]'))
    outcomes = run_suite(suite, registry, tmp_path, echo=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done"]
    by_leads = {r.cell.leads: r for r in read_results([tmp_path])}
    assert set(by_leads) == {"all", "I"} and by_leads["all"].value != by_leads["I"].value
    spec = registry.encoders.get("resnet1d_wang")
    mask = lead_mask(spec, "I")
    assert mask.tolist() == [1.0] + [0.0] * 11
    windows = Workspace(suite, registry, tmp_path, echo=lambda line: None).windows("mimic-iv-ecg", spec)
    x, _ = windows.sliding(np.arange(2), mask)
    assert x[:, 1:].abs().sum() == 0 and x[:, 0].abs().sum() > 0


def test_windows_cut_random_centred_and_sliding_windows_as_the_contract_says(registry):
    from stence_bench.data.views import Standardizer
    from stence_bench.data.windows import Windows

    spec = registry.encoders.get("resnet1d_wang")  # 250 samples, dataset z-scoring
    data = [torch.randn(12, 1000).numpy() for _ in range(4)] + [torch.randn(12, 300).numpy()]
    scaler = Standardizer(leads=spec.leads)
    for record in data:
        scaler.partial_fit(record)
    windows = Windows.of_arrays(spec, list("abcde"), data, scaler)

    def scaled(record: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((record - scaler.mean[:, None]) / (scaler.std[:, None] + scaler.eps)).astype(np.float32))

    rows = np.array([0, 3, 4, 4])
    crops = windows.crops(rows, np.random.default_rng(0))
    lengths = np.array([1000, 1000, 1000, 1000, 300])
    offsets = (np.random.default_rng(0).random(4) * (np.maximum(lengths[rows] - 250, 0) + 1)).astype(int)
    assert offsets[2] <= 50 and offsets[3] <= 50  # a 300-sample record has 50 samples to spare
    expected = torch.stack([scaled(data[r][:, o:o + 250]) for r, o in zip(rows, offsets)])
    assert torch.allclose(crops, expected, atol=1e-6)
    centre = windows.centre(np.array([0, 4]))
    assert torch.allclose(centre[0], scaled(data[0][:, 375:625]), atol=1e-6)
    assert torch.allclose(centre[1], scaled(data[4][:, 25:275]), atol=1e-6)
    slid, counts = windows.sliding(np.array([1, 4]))
    assert counts.tolist() == [7, 1]  # stride of half a window, inside each record's own length
    assert torch.allclose(slid[6], scaled(data[1][:, 750:1000]), atol=1e-6)
    assert torch.allclose(slid[7], scaled(data[4][:, 0:250]), atol=1e-6)
    record = spec.model_copy(update={"normalization": "zscore_record"})
    z = Windows.of_arrays(record, list("abcde"), data).centre(np.array([0]))
    assert torch.allclose(z.mean(dim=-1), torch.zeros(1, 12), atol=1e-5)
    assert torch.allclose(z.std(dim=-1, unbiased=False), torch.ones(1, 12), atol=1e-4)


def test_clip_pretrains_on_the_cohorts_precomputed_angiography_embeddings(tmp_path, registry):
    suite = parse_suite(SUITE.replace('objectives = ["patient_contrastive"]',
                                      'objectives = [{name = "clip", options = {modality_encoders = '
                                      '{angiography = "angio_embedding"}}}]')
                        .replace("controls = true", "controls = false")
                        .replace('stages = ["linear_probe", "finetune"]', 'stages = ["linear_probe"]')
                        .replace("fractions = [0.5, 1.0]", "fractions = [1.0]")
                        .replace('tasks = ["stenosis.70", "ptbxl.superdiagnostic"]', 'tasks = ["stenosis.70"]'))
    outcomes = run_suite(suite, registry, tmp_path, echo=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    pretrain = next(r for r in read_results([tmp_path]) if r.cell.stage == "pretrain")
    assert pretrain.pretrain["modality_encoders"] == {"angiography": "angio_embedding"}
    losses = pretrain.pretrain["losses"]
    assert len(losses) == 1 and losses[0] > 0
