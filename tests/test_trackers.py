"""Experiment trackers against the real libraries, writing into the test's folder, read back with their own readers
(MlflowClient, TensorBoard's EventAccumulator): per-step pretraining losses, each cell's scores and config, the
results table; a run that is interrupted, then resumed; a missing library."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench import hookimpl
from stence_bench.cli import cli
from stence_bench.protocol.pretrain import read_log
from stence_bench.results import read_results as load_results
from stence_bench.protocol.runner import run_suite
from stence_bench.results.text import results_table
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan

mlflow = pytest.importorskip("mlflow", reason="the trackers extra: pip install 'stence-bench[trackers]'")
pytest.importorskip("tensorboard", reason="the trackers extra: pip install 'stence-bench[trackers]'")
from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

#: One pretraining (2 epochs of several steps) and the linear probe of its encoder.
SUITE = """name = "tracked"
tasks = ["stenosis.70"]
objectives = ["patient_contrastive"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
draws = 1
bootstrap = 20
pretrain = {epochs = 2, batch_size = 16}
[data]
synthetic = {patients = 60, seed = 2, angiograms = false}
[trackers.mlflow]
experiment = "ecg"
[trackers.tensorboard]
log_dir = "tb"
"""


class StopAfterPretraining:
    """Interrupts the run (as Ctrl-C would) once the pretraining cell has finished."""

    __name__ = "stop-after-pretraining"

    @hookimpl
    def cell_finished(self, cell, outcome):
        if cell.stage == "pretrain" and outcome.status == "done":
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The suite run twice into one folder: interrupted after its pretraining, then resumed to the end by the CLI."""
    root = tmp_path_factory.mktemp("tracked")
    suite = parse_suite(SUITE)
    registry = Registry.load(environ=BUILTINS_ONLY)
    stopping = Registry.load(extra=[StopAfterPretraining()], environ=BUILTINS_ONLY)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, stopping, root, echo=lambda line: None, workers=1)
    path = root / "suite.toml"
    path.write_text(SUITE)
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(root), "--workers", "1"], obj=registry)
    assert result.exit_code == 0, result.output
    cells = {cell.stage: cell for cell in plan(suite, registry)}
    return root, cells, {r.cell.stage: r for r in load_results([root])}


def _mlflow(root):
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("ecg")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                for p in parents}
    return client, parents, children


def test_mlflow_logs_steps_scores_config_and_the_leaderboard(tracked):
    root, cells, results = tracked
    client, parents, children = _mlflow(root)
    assert [p.info.run_name for p in parents] == ["tracked", "tracked"]  # one MLflow run per `stence-bench run`
    first, second = parents
    # the interrupted run: the pretraining logged and finished, the linear probe never reached, the run killed
    assert first.info.status == "KILLED"
    by_stage = {r.data.tags["stence_bench.stage"]: r for r in children[first.info.run_id]}
    assert by_stage["pretrain"].info.status == "FINISHED" and by_stage["linear_probe"].info.status == "KILLED"
    pretrain = by_stage["pretrain"]
    assert pretrain.data.tags["stence_bench.key"] == cells["pretrain"].key
    assert pretrain.info.run_name == cells["pretrain"].label
    steps = read_log(root / "logs" / f"{cells['pretrain'].key}.jsonl")
    per_epoch = max(s["step"] for s in steps)
    assert per_epoch > 1
    history = client.get_metric_history(pretrain.info.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        ((s["epoch"] - 1) * per_epoch + s["step"], s["loss"]) for s in steps]
    epochs = client.get_metric_history(pretrain.info.run_id, "epoch/loss")
    assert [(m.step, m.value) for m in sorted(epochs, key=lambda m: m.step)] == [
        (i, v) for i, v in enumerate(results["pretrain"].pretrain["losses"], start=1)]
    # the config: flattened parameters, and whole as an artifact
    params = pretrain.data.params
    assert params["stage"] == "pretrain" and params["encoder"] == "resnet1d_wang" and params["preset"] == "tiny"
    assert json.loads(params["settings.pretrain.epochs"]) == 2 and params["key"] == cells["pretrain"].key
    with open(client.download_artifacts(pretrain.info.run_id, "cell.json")) as fh:
        cell_json = json.load(fh)
    assert cell_json == {"key": cells["pretrain"].key, **cells["pretrain"].model_dump(mode="json")}

    # the resumed run: the pretraining reused (its epoch losses from its result), the probe run and scored
    assert second.info.status == "FINISHED"
    by_stage = {r.data.tags["stence_bench.stage"]: r for r in children[second.info.run_id]}
    assert by_stage["pretrain"].data.tags["stence_bench.status"] == "cached"
    assert by_stage["pretrain"].data.metrics["epoch/loss"] == results["pretrain"].pretrain["losses"][-1]
    probe, result = by_stage["linear_probe"], results["linear_probe"]
    assert probe.data.tags["stence_bench.status"] == "done" and probe.info.status == "FINISHED"
    assert probe.data.tags["stence_bench.main_metric"] == result.metric == "auroc"
    for split in ("val", "test"):
        for metric, value in result.scores[split].items():
            if value is not None:
                assert probe.data.metrics[f"{split}/{metric}"] == value
    assert probe.data.metrics["test/auroc_ci_low"] == result.ci["auroc"][0]
    assert probe.data.metrics["test/auroc_ci_high"] == result.ci["auroc"][1]
    assert probe.data.params["task"] == "stenosis.70" and probe.data.params["fraction"] == "1.0"
    assert second.data.metrics == {"cells/done": 1.0, "cells/cached": 1.0, "cells/failed": 0.0}
    # the leaderboard: the run's results table, as `stence-bench results show` prints it
    board = client.download_artifacts(second.info.run_id, "leaderboard.txt")
    assert open(board).read() == results_table(load_results([root])) + "\n"
    assert "stenosis.70" in open(board).read()


def test_tensorboard_logs_steps_scores_config_and_the_leaderboard(tracked):
    root, cells, results = tracked
    log_dir = root / "tb"
    pretrain = EventAccumulator(str(log_dir / "pretrain" / next(
        p.name for p in (log_dir / "pretrain").iterdir() if p.name.endswith(cells["pretrain"].key)))).Reload()
    steps = read_log(root / "logs" / f"{cells['pretrain'].key}.jsonl")
    per_epoch = max(s["step"] for s in steps)
    logged = pretrain.Scalars("loss")
    assert [e.step for e in logged] == [(s["epoch"] - 1) * per_epoch + s["step"] for s in steps]
    assert [e.value for e in logged] == pytest.approx([s["loss"] for s in steps], rel=1e-6)  # float32 events
    epochs = [(e.step, e.value) for e in pretrain.Scalars("epoch/loss")]
    # the interrupted run logged both epochs as they ended; the resumed one, both again from the cached result
    losses = results["pretrain"].pretrain["losses"]
    expected = sorted([(i, v) for i, v in enumerate(losses, start=1)] * 2)
    assert [step for step, _ in sorted(epochs)] == [step for step, _ in expected] == [1, 1, 2, 2]
    assert [value for _, value in sorted(epochs)] == pytest.approx([value for _, value in expected], rel=1e-6)
    config = pretrain.Tensors("config/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert json.loads("\n".join(line[4:] for line in config.splitlines())) == {
        "key": cells["pretrain"].key, **cells["pretrain"].model_dump(mode="json")}

    folder = next(p for p in (log_dir / "linear_probe").iterdir() if p.name.endswith(cells["linear_probe"].key))
    probe = EventAccumulator(str(folder)).Reload()
    result = results["linear_probe"]
    assert probe.Scalars("test/auroc")[-1].value == pytest.approx(result.scores["test"]["auroc"], rel=1e-6)
    assert probe.Scalars("test/auroc_ci_low")[-1].value == pytest.approx(result.ci["auroc"][0], rel=1e-6)
    status = probe.Tensors("status/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert status == "done (main metric: auroc)"

    table = results_table(load_results([root])) + "\n"
    assert (log_dir / "leaderboard.txt").read_text() == table
    run = EventAccumulator(str(log_dir / "run")).Reload()
    shown = run.Tensors("leaderboard/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "\n".join(line[4:] for line in shown.splitlines()) + "\n" == table


SMALL = """name = "small"
tasks = ["stenosis.70"]
objectives = ["none"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
draws = 1
bootstrap = 10
[data]
synthetic = {patients = 60, seed = 1, angiograms = false}
"""


def test_run_tracker_turns_one_on_without_a_suite_table(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(SMALL)
    registry = Registry.load(environ=BUILTINS_ONLY)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["-v", "run", str(suite), "--out", str(out), "--workers", "1",
                                      "--tracker", "mlflow"], obj=registry)
    assert result.exit_code == 0, result.output
    assert "debug: tracker mlflow: on" in result.output
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())  # the default: a file store in the run folder
    experiment = client.get_experiment_by_name("small")  # the default experiment: the suite's name
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags.get("stence_bench.stage", "suite") for r in runs) == ["linear_probe", "suite"]
    assert not (out / "tensorboard").exists()  # only the tracker asked for


def test_a_missing_library_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    suite = tmp_path / "s.toml"
    suite.write_text(SMALL + "[trackers.mlflow]\n")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    registry = Registry.load(environ=BUILTINS_ONLY)
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "run")], obj=registry)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == ["Error: tracker 'mlflow' needs mlflow-skinny, which is not installed: "
                      'pip install "stence-bench[trackers]"'] and "Traceback" not in result.output
    assert not (tmp_path / "run" / "results").exists()  # refused before any cell ran


def test_a_tracker_table_with_a_misspelled_field_is_refused():
    from stence_bench.errors import SuiteError

    with pytest.raises(SuiteError, match=r"trackers\.mlflow\.experimnt: unknown field; did you mean 'experiment'"):
        parse_suite(SMALL + '[trackers.mlflow]\nexperimnt = "x"\n')


def _two_seeds(extra: str = "") -> str:
    return SUITE.replace("fractions = [1.0]", "fractions = [1.0]\nseeds = [0, 1]") + extra


def test_cells_trained_in_forked_workers_log_their_steps(tmp_path):
    """--workers: each worker process opens its own MLflow client and TensorBoard writer for the epochs it trains."""
    suite = parse_suite(_two_seeds())
    registry = Registry.load(environ=BUILTINS_ONLY)
    lines: list[str] = []
    outcomes = run_suite(suite, registry, tmp_path, echo=lines.append, workers=2)
    assert {o.status for o in outcomes} == {"done"}
    assert any("pretraining cells in 2 worker processes" in line for line in lines)
    client, [parent], children = _mlflow(tmp_path)
    assert parent.info.status == "FINISHED"
    pretrainings = [c for c in plan(suite, registry) if c.stage == "pretrain"]
    assert len(pretrainings) == 2
    runs = {r.data.tags["stence_bench.key"]: r for r in children[parent.info.run_id]}
    for cell in pretrainings:
        steps = read_log(tmp_path / "logs" / f"{cell.key}.jsonl")
        per_epoch = max(s["step"] for s in steps)
        history = sorted(client.get_metric_history(runs[cell.key].info.run_id, "loss"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [((s["epoch"] - 1) * per_epoch + s["step"], s["loss"])
                                                        for s in steps]
        folder = next(p for p in (tmp_path / "tb" / "pretrain").iterdir() if p.name.endswith(cell.key))
        events = EventAccumulator(str(folder)).Reload().Scalars("loss")
        assert [e.step for e in events] == [m.step for m in history]


def test_slurm_jobs_cells_are_logged_by_the_submitting_process(tmp_path):
    """The jobs (submitit's local executor here) run without trackers; the launch logs each cell as its job ends,
    a pretraining's epoch losses from its result (its steps stay in logs/<key>.jsonl)."""
    from stence_bench.protocol.slurm import launch

    suite = parse_suite(SUITE)
    registry = Registry.load(environ=BUILTINS_ONLY)
    cells = plan(suite, registry)
    outcomes = launch(suite, registry, tmp_path, cells=cells, echo=lambda line: None, cluster="local")
    assert [o.status for o in outcomes] == ["done"] * len(cells), [o.error for o in outcomes]
    client, [parent], children = _mlflow(tmp_path)
    assert parent.info.status == "FINISHED"
    runs = {r.data.tags["stence_bench.stage"]: r for r in children[parent.info.run_id]}
    results = {r.cell.stage: r for r in load_results([tmp_path])}
    pretrain = runs["pretrain"].info.run_id
    assert [m.value for m in sorted(client.get_metric_history(pretrain, "epoch/loss"), key=lambda m: m.step)] == \
        results["pretrain"].pretrain["losses"]
    assert client.get_metric_history(pretrain, "loss") == []  # no step was seen here
    assert runs["linear_probe"].data.metrics["test/auroc"] == results["linear_probe"].scores["test"]["auroc"]
    board = client.download_artifacts(parent.info.run_id, "leaderboard.txt")
    assert open(board).read() == results_table(load_results([tmp_path])) + "\n"
