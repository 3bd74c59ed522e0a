"""Bring your own model, end to end: a suite names a checkpoint file; the run evaluates it as loaded beside the
random-init control of the same architecture; the leaderboard row has its paired difference, the file's hash and
the contamination flag its declared pretraining data gives; a changed file is new cells; continued pretraining
starts from the file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from conftest import BUILTINS_ONLY
from safetensors.torch import load_file, save_file

from stence_bench.protocol.data import Workspace
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def quiet(line: str) -> None:
    """An echo that prints nothing."""


def write_weights(path, seed: int) -> dict[str, torch.Tensor]:
    """A tiny ResNet's tensors, drawn with ``seed`` (not the suite's seed), as safetensors."""
    from stence_bench_plugins.encoders.resnet1d import resnet1d_wang

    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in resnet1d_wang(n_leads=12, width=16).state_dict().items()}
    save_file(state, str(path))
    return state


def byom_suite(path, objectives='["pretrained", "none"]', pretrain="") -> str:
    return f"""
name = "byom"
tasks = ["stenosis.70", "ptbxl.superdiagnostic"]
objectives = {objectives}
controls = false
[[encoders]]
name = "resnet1d_wang"
preset = "tiny"
weights = {{path = "{path}", pretrained_on = ["ptbxl"]}}
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 50
{pretrain}
[data]
synthetic = {{patients = 60, seed = 3, angiograms = false}}
"""


def test_a_checkpoint_gets_a_row_with_its_paired_difference_provenance_and_contamination_flag(registry, tmp_path):
    from stence_bench.leaderboard.build import build, load_suites
    from stence_bench.protocol.evaluate import cached_embeddings, window_mean
    from stence_bench.protocol.pretrain import build_encoder
    from stence_bench.results import paired_differences, read_results
    from stence_bench.protocol.runner import run_suite
    from stence_bench_plugins.encoders.resnet1d import resnet1d_wang

    weights = tmp_path / "mine.safetensors"
    state = write_weights(weights, seed=11)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    suite = parse_suite(byom_suite(weights))
    root = tmp_path / "run"
    outcomes = run_suite(suite, registry, root, echo=quiet)
    assert [o.status for o in outcomes] == ["done"] * 4

    results = {(r.cell.task, r.cell.objective): r for r in read_results([root])}
    given, control = results[("ptbxl.superdiagnostic", "pretrained")], results[("ptbxl.superdiagnostic", "none")]
    # provenance: both cells name the file by its hash; only the 'pretrained' one loaded it
    assert given.cell.weights.sha256 == sha == control.cell.weights.sha256
    assert given.weights == {"file": "mine.safetensors", "path": str(weights), "sha256": sha, "loaded": len(state),
                             "missing": 0, "unexpected": 0, "other_shape": 0, "first_missing": [],
                             "first_unexpected": [], "first_other_shape": {}}
    assert control.weights is None
    assert given.inputs["weights"] == sha and "weights" not in control.inputs
    # the paired difference to the random init of the same architecture, on the same resamples
    vs_control = paired_differences(results.values())[given.key]
    assert vs_control.control_key == control.key
    diffs = np.array(given.bootstrap["values"]) - np.array(control.bootstrap["values"])
    assert vs_control.mean == pytest.approx(float(np.mean(diffs)), abs=1e-9)

    # the embeddings probed are those of the file's weights, computed here by hand; the control's are the seeded
    # initialisation
    ws = Workspace(suite, registry, root, echo=quiet)
    task = registry.tasks.get("ptbxl.superdiagnostic")
    windows = ws.windows(task.dataset, registry.encoders.get("resnet1d_wang"))
    by_hand = resnet1d_wang(n_leads=12, width=16)
    by_hand.load_state_dict(load_file(str(weights)))
    rows = np.arange(len(windows.record_ids))
    assert np.allclose(cached_embeddings(given.cell, ws, registry, root, task), window_mean(by_hand, windows, rows, None),
                       atol=1e-5)
    init = build_encoder(control.cell, registry)
    assert np.allclose(cached_embeddings(control.cell, ws, registry, root, task), window_mean(init, windows, rows, None),
                       atol=1e-5)

    # the leaderboard: a row per objective of the entry, with its difference, hash and contamination flag
    site = build(load_suites([root]), registry)
    (page,) = site.suites
    (encoder,) = page.encoders
    assert encoder.label == "resnet1d_wang[tiny] @ mine.safetensors"
    assert encoder.weights == {"file": "mine.safetensors", "sha256": sha} and "ptbxl" in encoder.pretrained_on
    tasks = {t.name: t for t in page.tasks}
    rows = {r.objective: r for r in tasks["ptbxl.superdiagnostic"].rows}
    assert set(rows) == {"none", "pretrained"}
    assert rows["pretrained"].cells[0].diff == pytest.approx(vs_control.mean)
    assert rows["pretrained"].contamination.status == "overlap"  # the weights' declared pretraining data
    assert {r.contamination.status for r in tasks["stenosis.70"].rows} == {"none"}
    (cell,) = [p for p in tasks["ptbxl.superdiagnostic"].provenance if p.objective == "pretrained"]
    assert cell.config["weights"]["sha256"] == sha

    # other contents under the same name: new cells (never 'finished earlier'), rows told apart by the hash
    write_weights(weights, seed=12)
    again = run_suite(suite, registry, root, echo=quiet)
    assert [o.status for o in again] == ["done"] * 4
    new_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    labels = {e.label for e in build(load_suites([root]), registry).suites[0].encoders}
    assert labels == {f"resnet1d_wang[tiny] @ mine.safetensors {sha[:8]}",
                      f"resnet1d_wang[tiny] @ mine.safetensors {new_sha[:8]}"}


def test_continued_pretraining_starts_from_the_given_weights(registry, tmp_path):
    """Any pretraining objective continues from the file: with a learning rate near zero the pretrained encoder's
    weights are the file's (and, without the file, the seeded initialisation's)."""
    from stence_bench.protocol.pretrain import checkpoint_path
    from stence_bench.results import read_results
    from stence_bench.protocol.runner import run_suite

    weights = tmp_path / "start.safetensors"
    state = write_weights(weights, seed=21)
    settings = "pretrain = {epochs = 1, batch_size = 16, lr = 1e-12, weight_decay = 0.0}"
    text = byom_suite(weights, '["metric_learning"]', settings)
    suite = parse_suite(text)
    (cell,) = [c for c in plan(suite, registry) if c.stage == "pretrain"]
    assert cell.weights is not None
    run_suite(suite, registry, tmp_path / "run", echo=quiet, cells=[cell])
    (result,) = read_results([tmp_path / "run"])
    assert result.status == "done" and result.pretrain["weights"]["loaded"] == len(state)
    trained = load_file(str(checkpoint_path(tmp_path / "run", cell)))
    params = [k for k in state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for key in params:
        assert torch.allclose(trained[key], state[key], atol=1e-8), key

    plain = parse_suite(text.replace(f'weights = {{path = "{weights}", pretrained_on = ["ptbxl"]}}', ""))
    (from_scratch,) = [c for c in plan(plain, registry) if c.stage == "pretrain"]
    assert from_scratch.key != cell.key
    run_suite(plain, registry, tmp_path / "scratch", echo=quiet, cells=[from_scratch])
    scratch = load_file(str(checkpoint_path(tmp_path / "scratch", from_scratch)))
    assert not torch.allclose(scratch["stem.0.weight"], state["stem.0.weight"])


def test_stence_bench_run_on_a_suite_naming_a_checkpoint_gives_its_row(registry, tmp_path, monkeypatch):
    """The user's path: `stence-bench run` on a suite naming the file (relative to the folder it runs from), then
    `results show`: the row `@ file` with its difference to `none`, and the site listing the file's hash."""
    from click.testing import CliRunner

    from stence_bench.cli import cli

    monkeypatch.chdir(tmp_path)
    write_weights(tmp_path / "mine.safetensors", seed=31)
    sha = hashlib.sha256((tmp_path / "mine.safetensors").read_bytes()).hexdigest()
    text = byom_suite("mine.safetensors").replace('"stenosis.70", ', "")
    (tmp_path / "mine.toml").write_text(text)
    runner = CliRunner()
    out = runner.invoke(cli, ["run", "mine.toml", "--out", "run", "--workers", "1"], obj=registry)
    assert out.exit_code == 0, out.output
    shown = runner.invoke(cli, ["results", "show", "run"], obj=registry).output
    (row,) = [line for line in shown.splitlines() if " pretrained " in line]
    assert "resnet1d_wang[tiny] @ mine.safetensors" in row and "[" in row.split("auroc")[1]  # mean, CI, difference
    page = (tmp_path / "run" / "site" / "byom" / "index.html").read_text()  # the suite's page
    assert "mine.safetensors" in page and sha in page
    assert '"sha256": "' + sha in (tmp_path / "run" / "suite.json").read_text()
