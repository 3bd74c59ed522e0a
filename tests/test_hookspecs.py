"""The contract: every hook is typed, documented in docs/plugins.md and tested here (test_hook_<name>)."""

from __future__ import annotations

import inspect
import json
import re

import click
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, REPO
from plugin_fixtures import Plugin, encoder, objective, task

from stence_bench import hookimpl, hookspecs
from stence_bench.cli import cli
from stence_bench.errors import DuplicateNameError, PluginError
from stence_bench.registry import Registry
from stence_bench.specs import DatasetSpec, ModalitySpec
from stence_bench.cells import Cell, CellOutcome
from stence_bench.results.schema import CellResult
from stence_bench.suite import parse_suite, plan

HOOKS = sorted(name for name, obj in vars(hookspecs).items() if hasattr(obj, f"{hookspecs.PROJECT}_spec"))


def test_the_contract_has_the_expected_hooks():
    assert HOOKS == sorted([
        "register_encoders", "register_objectives", "register_tasks", "register_datasets", "register_modalities",
        "register_commands", "run_started", "cell_finished", "epoch_finished", "run_finished",
    ])


def test_the_observers_models_sit_below_the_registry_and_keep_their_documented_path():
    """``Cell`` and ``CellOutcome`` live in ``stence_bench.cells`` (which imports neither the registry nor the planner,
    so the contract can name them); ``stence_bench.suite`` still exports them, as docs/plugins.md first said."""
    import ast

    import stence_bench.cells
    import stence_bench.suite

    assert stence_bench.suite.Cell is Cell and stence_bench.suite.CellOutcome is CellOutcome
    tree = ast.parse(open(stence_bench.cells.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"registry", "suite", "plugin_loader", "hookspecs"}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_typed_documented_and_tested(hook):
    function = getattr(hookspecs, hook)
    assert inspect.getdoc(function), f"{hook} has no docstring"
    for name, param in inspect.signature(function).parameters.items():
        assert param.annotation is not inspect.Parameter.empty, f"{hook}({name}) has no type"
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### `{hook}`", docs, re.MULTILINE), f"docs/plugins.md has no section '### `{hook}`'"
    tests = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert re.search(rf"^def test_hook_{hook}\b", tests, re.MULTILINE), f"no test named test_hook_{hook}"


def load(*plugins) -> Registry:
    return Registry.load(extra=plugins, environ=BUILTINS_ONLY)


def test_hook_register_encoders():
    registry = load(Plugin("p", encoders=[encoder("my_net", sampling_rate=250, window_s=4, leads=("I",))]))
    entry = registry.encoders.entry("my_net")
    assert entry.spec.n_samples == 1000 and entry.plugin.name == "p"
    module = entry.spec.build("tiny")
    assert module.embed_dim == 32


def test_hook_register_objectives():
    registry = load(Plugin("p", objectives=[objective("my_clip", modalities=("ecg", "angiography"),
                                                      gathers_across_ranks=True,
                                                      modality_encoders={"angiography": "angio_cnn"})]))
    spec = registry.objectives.get("my_clip")
    assert spec.pretrains and spec.gathers_across_ranks and spec.modalities == ("ecg", "angiography")
    out = CliRunner().invoke(cli, ["list", "objectives", "my_clip"], obj=registry).output
    assert out.splitlines()[2].split() == ["my_clip", "<in-process>", "ecg,angiography", "angio_cnn", "yes", "yes", "no"]


def test_hook_register_tasks():
    registry = load(Plugin("p", tasks=[task("my_task.35", dataset="echo", metric="auprc")]))
    assert registry.tasks.get("my_task.35").dataset == "echo"
    text = 'name="s"\ntasks=["my_task.35"]\nobjectives=["none"]\nencoders=["resnet1d18"]\n'
    from stence_bench.suite import check_names

    # the task's dataset needs a source (here a WFDB folder), else validate says so before a run fails on it
    assert check_names(parse_suite(text), registry)[0].startswith(
        "<suite>: tasks[0]: task 'my_task.35' reads dataset 'echo', which has no source: add [data.sources.echo]")
    suite = parse_suite(text + '[data]\nsynthetic = {}\n[data.sources.echo]\npath = "echo"\nlayout = "wfdb"\n')
    assert check_names(suite, registry) == []


def test_hook_register_datasets():
    registry = load(Plugin("p", datasets=[DatasetSpec(name="hospital-xml", reader="m:read", formats=("xml",))]))
    assert registry.datasets.get("hospital-xml").formats == ("xml",)
    assert CliRunner().invoke(cli, ["list", "datasets", "hospital"], obj=registry).output.splitlines()[2].split() == [
        "hospital-xml", "<in-process>", "xml", "ecg", "-", "-", "-", "-"]  # no card: access, rates, units, licence


def test_hook_register_modalities():
    spec = ModalitySpec(name="my_angio", modality="angiography", factory="torch.nn:Identity", embed_dim=128,
                        description="identity")
    registry = load(Plugin("p", modalities=[spec]))
    assert registry.modalities.get("my_angio").embed_dim == 128
    assert CliRunner().invoke(cli, ["list", "modalities", "my_"], obj=registry).output.splitlines()[2].split() == [
        "my_angio", "<in-process>", "angiography", "128", "identity"]


def _command(name: str, text: str) -> click.Command:
    @click.command(name)
    def command():
        """A plugin's command."""
        click.echo(text)

    return command


def test_hook_register_commands():
    registry = load(Plugin("p", commands=[_command("hello", "hello from a plugin")]))
    result = CliRunner().invoke(cli, ["hello"], obj=registry)
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"
    assert "hello" in CliRunner().invoke(cli, ["--help"], obj=registry).output

    twice = load(Plugin("a", commands=[_command("hello", "a")]), Plugin("b", commands=[_command("hello", "b")]))
    with pytest.raises(DuplicateNameError, match=r"command 'hello' is registered twice: by <in-process> \(a\)"):
        twice.commands()
    clash = CliRunner().invoke(cli, ["run", "x"], obj=load(Plugin("c", commands=[_command("run", "mine")])))
    assert clash.exit_code == 2 and "registers the command 'run', which is a built-in command" in clash.output


class Recorder:
    """An observer plugin, as a logger (MLflow, W&B) would be."""

    __name__ = "recorder"

    def __init__(self):
        self.calls = []

    @hookimpl
    def run_started(self, suite, cells):
        self.calls.append(("run_started", suite.name, [c.key for c in cells]))

    @hookimpl
    def cell_finished(self, cell, outcome, result):
        self.calls.append(("cell_finished", cell.key, outcome.status, None if result is None else result.error))

    @hookimpl
    def epoch_finished(self, cell, epoch, metrics):
        self.calls.append(("epoch_finished", cell.key, epoch, dict(metrics)))

    @hookimpl
    def run_finished(self, suite, outcomes):
        self.calls.append(("run_finished", suite.name, [o.status for o in outcomes]))


SUITE = parse_suite('name="s"\ntasks=["ptbxl.form"]\nobjectives=["none"]\nencoders=["resnet1d18"]\n')
CELL = Cell(stage="linear_probe", task="ptbxl.form", encoder="resnet1d18", objective="none", seed=0, fraction=1.0, draw=0)


def test_hook_run_started():
    recorder = Recorder()
    load(recorder).plugins.manager.hook.run_started(suite=SUITE, cells=[CELL])
    assert recorder.calls == [("run_started", "s", [CELL.key])]


def test_hook_cell_finished():
    recorder = Recorder()
    outcome = CellOutcome(key=CELL.key, status="failed", wall_s=1.5, error="ValueError: bad")
    result = CellResult(key=CELL.key, cell=CELL, status="failed", started="", finished="", wall_s=1.5,
                        error="ValueError: bad")
    load(recorder).plugins.manager.hook.cell_finished(cell=CELL, outcome=outcome, result=result)
    assert recorder.calls == [("cell_finished", CELL.key, "failed", "ValueError: bad")]

    class OutcomeOnly:  # an observer written before the hook had ``result`` (a subset of the arguments)
        __name__ = "outcome-only"
        seen: list[str] = []

        @hookimpl
        def cell_finished(self, outcome):
            self.seen.append(outcome.status)

    load(OutcomeOnly()).plugins.manager.hook.cell_finished(cell=CELL, outcome=outcome, result=None)
    assert OutcomeOnly.seen == ["failed"]

    class WrongArgument:
        __name__ = "wrong"

        @hookimpl
        def cell_finished(self, cell, results):  # the argument is called result
            pass

    with pytest.raises(PluginError, match="wrong.*results"):
        load(WrongArgument())


def test_hook_epoch_finished(tmp_path):
    """Called once per pretraining epoch, after that epoch's training state is on disk."""
    from stence_bench.protocol.pretrain import training_state_path
    from stence_bench.protocol.runner import run_suite

    seen, step_losses = [], []

    class Watcher(Recorder):
        @hookimpl
        def epoch_finished(self, cell, epoch, metrics, steps):
            seen.append((cell.stage, epoch, training_state_path(tmp_path, cell).is_file(), sorted(metrics)))
            if cell.stage == "pretrain":
                step_losses.append([(s["step"], s["loss"]) for s in steps])

    suite = parse_suite("""name="e"\ntasks=["stenosis.70"]\nobjectives=["patient_contrastive"]
encoders=[{name="resnet1d_wang", preset="tiny"}]\ncontrols=false
[protocol]\nstages=["finetune"]\nfractions=[1.0]\nbootstrap=10
pretrain={epochs=2, batch_size=16}\nfinetune={max_epochs=2, patience=5, batch_size=32}
[data]\nsynthetic={patients=30, seed=1, angiograms=false}\n""")
    run_suite(suite, load(Watcher()), tmp_path, echo=lambda line: None)
    assert seen == [("pretrain", 1, True, ["loss"]), ("pretrain", 2, True, ["loss"]),
                    ("finetune", 1, False, ["val_loss"]), ("finetune", 2, False, ["val_loss"])]
    # each pretraining step once, numbered over the whole pretraining, as the run's step log has them
    [pretrain] = [c for c in plan(suite, load()) if c.stage == "pretrain"]
    logged = [json.loads(line) for line in (tmp_path / "logs" / f"{pretrain.key}.jsonl").read_text().splitlines()]
    per_epoch = len(step_losses[0])
    assert per_epoch >= 1 and [len(s) for s in step_losses] == [per_epoch, per_epoch]
    assert [s for epoch in step_losses for s in epoch] == [
        ((line["epoch"] - 1) * per_epoch + line["step"], line["loss"]) for line in logged]


def test_hook_run_finished():
    recorder = Recorder()
    outcomes = [CellOutcome(key=CELL.key, status="cached")]
    load(recorder).plugins.manager.hook.run_finished(suite=SUITE, outcomes=outcomes)
    assert recorder.calls == [("run_finished", "s", ["cached"])]
