"""The ``stence-bench`` command line. User errors print one line and exit 2; only bugs show a traceback."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from .api import RUN_LOCK, resume_command, with_cluster  # noqa: F401 - RUN_LOCK, resume_command: as before
from .cli_context import get_registry
from .errors import PluginError, StenceBenchError, SuiteError, did_you_mean
from .log import configure as configure_logging
from .log import echo as log_echo
from .log import printed
from .processes import exit_code
from .registry import KINDS, Entry
from .results.text import format_table
from .suite import find_suites, left_out_notices, load_suite, plan, suite_summary, validate_suite
from .trackers import TRACKERS


class StenceGroup(click.Group):
    """The root group: adds the commands plugins register, and reports user errors in one line."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except StenceBenchError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"Error: {line}", err=True)
            sys.exit(exc.exit_code)

    def plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        """Commands added through ``register_commands``; one that takes a built-in name is an error."""
        found = get_registry(ctx).commands()
        for name, (_, info) in found.items():
            if name in self.commands:
                raise PluginError(
                    f"plugin {info.name!r} of {info.origin} registers the command {name!r}, "
                    "which is a built-in command; rename it"
                )
        return {name: command for name, (command, _) in found.items()}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "plugins":  # the command that diagnoses plugin conflicts runs whatever the plugins register
            return super().get_command(ctx, cmd_name)
        plugin_commands = self.plugin_commands(ctx)
        return super().get_command(ctx, cmd_name) or plugin_commands.get(cmd_name)


@click.group(cls=StenceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stence-bench", prog_name="stence-bench")
@click.option("-v", "--verbose", count=True, help="Show debug lines too (each cell as it starts, trackers, ...).")
@click.option("-q", "--quiet", count=True, help="Progress lines off: only warnings and results (-qq: errors only).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """stence-bench: benchmark ECG encoders x pretraining objectives x clinical tasks.

    Encoders, objectives, tasks and dataset readers are plugins; `stence-bench list` shows what is installed.
    Set STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD=1 to load only the built-ins, and
    STENCE_BENCH_BLOCK_PLUGINS=name,name to skip plugins, for reproducible runs. -v / -q (before the command:
    stence-bench -q run SUITE) set how much progress is printed; a run also logs every line, debug lines
    included, to <run folder>/logs/run.log.
    """
    configure_logging(verbose - quiet)
    registry = get_registry(ctx)
    for warning in registry.plugins.warnings:
        click.echo(f"Warning: {warning}", err=True)
    # Every command sees the whole registry, so a broken or conflicting plugin fails every command alike; but for
    # `plugins`, the command that diagnoses a conflict (it lists the plugins and marks the clash).
    if ctx.invoked_subcommand != "plugins":
        registry.check()


# --- list ---------------------------------------------------------------------------------------------------


def _leads(leads: Sequence[str]) -> str:
    return f"{len(leads)} ({leads[0]}..{leads[-1]})" if len(leads) > 2 else ",".join(leads)


#: kind -> (headers, row function) for `stence-bench list KIND`: name, origin, key fields.
_COLUMNS: dict[str, tuple[list[str], Callable[[Any], list[Any]]]] = {
    "encoder": (
        ["fs Hz", "window s", "leads", "dim", "presets", "normalization"],
        lambda s: [f"{s.sampling_rate:g}", f"{s.window_s:g}", _leads(s.leads), s.embed_dim,
                   ",".join(s.presets) or "-", s.normalization],
    ),
    "objective": (
        ["modalities", "modality encoders", "pretrains", "gathers", "control"],
        lambda s: [",".join(s.modalities), ",".join(s.modality_encoders.values()) or "-",
                   "yes" if s.pretrains else "no", "yes" if s.gathers_across_ranks else "no",
                   "yes" if s.control else "no"],
    ),
    "task": (
        ["dataset", "kind", "metric", "split", "version"],
        lambda s: [s.dataset, s.task_kind, s.metric, s.split, s.version],
    ),
    "dataset": (["formats", "modalities", "access", "fs Hz", "units", "licence"],
                lambda s: [",".join(s.formats) or "-", ",".join(s.modalities), *_card_columns(s.card)]),
    "modality": (["modality", "dim", "description"], lambda s: [s.modality, s.embed_dim, textwrap.shorten(s.description, 60, placeholder=" ...")]),
}


def _card_columns(card: Any) -> list[str]:
    """access, sampling rates, units and licence from a dataset card (``-`` without one)."""
    if card is None:
        return ["-", "-", "-", "-"]
    rates = ",".join(f"{fs:g}" for fs in card.sampling_rates) or "any"
    return [card.access, rates, card.units, textwrap.shorten(card.licence, 30, placeholder=" ...")]


def _origin(entry: Entry[Any]) -> str:
    return f"{entry.plugin.distribution} {entry.plugin.version}".strip()


@cli.group("list")
def list_group() -> None:
    """List what the installed plugins registered, or the suites found."""


def _make_list_command(kind: str) -> click.Command:
    headers, row = _COLUMNS[kind]
    plural = "modalities" if kind == "modality" else f"{kind}s"

    @click.command(plural, help=f"List registered {plural} whose name matches PATTERN (a glob or a substring).")
    @click.argument("pattern", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the full specs and origins as JSON.")
    @click.pass_context
    def command(ctx: click.Context, pattern: str | None, as_json: bool) -> None:
        entries = get_registry(ctx).catalog(kind).entries(pattern)
        if as_json:
            payload = [{"spec": e.spec.model_dump(mode="json"), "origin": e.origin} for e in entries]
            click.echo(json.dumps(payload, indent=2))
            return
        if not entries:
            click.echo(f"no {plural} match {pattern!r}" if pattern else f"no {plural} registered")
            return
        click.echo(format_table(["name", "origin", *headers], [[e.name, _origin(e), *row(e.spec)] for e in entries]))

    return command


for _kind in KINDS:
    list_group.add_command(_make_list_command(_kind))


@list_group.command("suites")
@click.argument("pattern", required=False)
@click.pass_context
def list_suites(ctx: click.Context, pattern: str | None) -> None:
    """List suite files in ./leaderboards and those shipped with stence-bench, matching PATTERN."""
    rows = []
    for name, path in find_suites().items():
        if pattern and pattern not in name:
            continue
        try:
            suite, _ = load_suite(path)
        except SuiteError as exc:
            rows.append([name, path, "-", "-", "-", f"invalid: {exc.problems[0]}"])
            continue
        rows.append([name, path, len(suite.tasks), len(suite.encoders), len(suite.objectives), suite.description])
    if not rows:
        click.echo(f"no suites match {pattern!r}" if pattern else "no suites found")
        return
    click.echo(format_table(["name", "path", "tasks", "encoders", "objectives", "description"], rows))


# --- plugins ------------------------------------------------------------------------------------------------


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List the loaded plugins: distribution, version, module and the hooks each implements. Names registered by
    two plugins (which every other command refuses) are marked, with what to do."""
    from .plugin_loader import ENV_BLOCK

    registry = get_registry(ctx)
    loaded = registry.plugins
    pm = loaded.manager
    clashes = registry.clashes()
    marks: dict[str, list[str]] = {}
    for kind, name, infos in clashes:
        for info in infos:
            marks.setdefault(info.name, []).append(f"{kind} {name}")
    rows = []
    for info in loaded.plugins:
        hooks = sorted(h.name for h in pm.get_hookcallers(pm.get_plugin(info.name)) or [])
        status = "built-in" if info.builtin else "loaded"
        rows.append({"plugin": info.name, "distribution": info.distribution, "version": info.version,
                     "module": info.module, "status": status + (" CLASH" if info.name in marks else ""),
                     "hooks": hooks, "clashes": marks.get(info.name, [])})
    for info in loaded.blocked:
        rows.append({"plugin": info.name, "distribution": info.distribution, "version": info.version,
                     "module": info.module, "status": "blocked", "hooks": [], "clashes": []})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(format_table(
        ["plugin", "distribution", "version", "status", "hooks"],
        [[r["plugin"], r["distribution"], r["version"], r["status"], ",".join(r["hooks"]) or "-"] for r in rows],
    ))
    for kind, name, infos in clashes:
        click.echo(f"clash: {kind} {name!r} is registered by {' and by '.join(i.origin for i in infos)}; uninstall "
                   f"one, or block one with {ENV_BLOCK}={infos[-1].distribution}")


# --- suites -------------------------------------------------------------------------------------------------

_SUITE_ARG = click.argument("suite", metavar="SUITE")


@cli.command("validate")
@_SUITE_ARG
@click.pass_context
def validate_command(ctx: click.Context, suite: str) -> None:
    """Check a suite file (a path, or the name of a suite in ./leaderboards) against the installed plugins."""
    registry = get_registry(ctx)
    parsed, path = validate_suite(suite, registry)
    cells = plan(parsed, registry)
    click.echo(f"{path}: ok: suite {parsed.name!r}: {suite_summary(parsed, registry)}; {len(cells)} cells")
    for line in left_out_notices(parsed, registry):
        click.echo(f"note: {line}")


@cli.command("run")
@_SUITE_ARG
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="The run folder (data, checkpoints, logs, embeddings, results). Default: runs/<suite name>.")
@click.option("--plan", "plan_only", is_flag=True, help="Print the planned cells and stop: nothing is trained.")
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: cells run here (in --workers processes, or as one DDP job under torchrun). slurm: every "
                   "cell is a SLURM job submitted through submitit, pretraining first; this command waits for them.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="local: processes running cells side by side (default: the CPU count, at most 4; 1 on a GPU).")
@click.option("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
              help="The device of a local run (default auto: a GPU when there is one). Same as STENCE_BENCH_DEVICE.")
@click.option("--partition", default=None, help="slurm: the partition (overrides the suite's [cluster]).")
@click.option("--time-min", type=click.IntRange(min=1), default=None, help="slurm: each job's time limit in minutes.")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=None,
              help="slurm: GPUs of a pretraining job (one DDP process each).")
@click.option("--cells-per-job", type=click.IntRange(min=1), default=None,
              help="slurm: evaluation cells per job.")
@click.option("--loader-workers", type=click.IntRange(min=0), default=None,
              help="Processes cutting batches ahead of training and embedding (default: 4 with a GPU, 0 on CPU: "
                   "cut in the training process). Results do not depend on it (beyond float rounding). Same as "
                   "STENCE_BENCH_LOADER_WORKERS.")
@click.option("--reuse-stale", is_flag=True,
              help="Keep finished cells whose inputs (data, labels, pretraining, scoring code) changed since they "
                   "ran, marked stale on the leaderboard, instead of running them again.")
@click.option("--tracker", "trackers", multiple=True, type=click.Choice(sorted(TRACKERS)),
              help="Log the run to this experiment tracker too (repeatable), with its defaults where the suite has "
                   "no [trackers.NAME] table: mlflow (file store <run>/mlruns), tensorboard (<run>/tensorboard). "
                   "Needs pip install 'stence-bench[trackers]'. See docs/suites.md.")
@click.pass_context
def run_command(ctx: click.Context, suite: str, out: Path | None, plan_only: bool, launcher: str,
                workers: int | None, device: str | None, partition: str | None, time_min: int | None,
                gpus_per_job: int | None, cells_per_job: int | None, loader_workers: int | None,
                reuse_stale: bool, trackers: tuple[str, ...]) -> None:
    """Run a suite: every cell (pretraining, then linear probes and finetuning per task x fraction x draw),
    each once. A re-run skips finished cells whose inputs are unchanged (a stale one runs again, or is kept with
    --reuse-stale) and resumes a pretraining from its last epoch; a failing cell is
    recorded and the others go on (exit status 1 at the end when any failed). Under torchrun
    (torchrun --nproc_per_node N -m stence_bench run SUITE) pretraining and finetuning use DDP over the
    processes. Ctrl-C or SIGTERM stops the run (exit 130 / 143), keeping finished cells and each pretraining's
    last epoch, and prints the command to resume; one run at a time writes a run folder (run.lock). See
    docs/protocol.md and docs/cluster.md."""
    registry = get_registry(ctx)
    if loader_workers is not None:  # read by every stage, and inherited by the processes that run cells
        from .data.windows import ENV_LOADER_WORKERS

        os.environ[ENV_LOADER_WORKERS] = str(loader_workers)
    parsed, path = validate_suite(suite, registry)
    cluster = {"partition": partition, "time_min": time_min, "gpus_per_job": gpus_per_job,
               "cells_per_job": cells_per_job}
    planned, _ = with_cluster(parsed, launcher, cluster)
    if trackers:
        planned = planned.model_copy(update={"trackers": planned.trackers.turn_on(trackers)})
    cells = plan(planned, registry)
    if plan_only:
        parsed = planned
        click.echo(f"suite {parsed.name!r} ({path}): {suite_summary(parsed, registry)}")
        for line in left_out_notices(parsed, registry):
            click.echo(f"note: {line}")
        n_pre = sum(c.stage == "pretrain" for c in cells)
        rows = [
            [c.key, c.stage, c.task or "-", (c.encoder if c.preset is None else f"{c.encoder}[{c.preset}]")
             + ("" if c.weights is None else f" @ {c.weights.file}"),
             c.objective, c.seed, "-" if c.fraction is None else f"{c.fraction:g}",
             "-" if c.draw is None else c.draw, c.leads]
            for c in cells
        ]
        click.echo(format_table(["key", "stage", "task", "encoder", "objective", "seed", "fraction", "draw", "leads"],
                                rows))
        click.echo(f"{len(cells)} cells planned ({n_pre} pretraining, {len(cells) - n_pre} evaluation).")
        if launcher == "slurm":
            from .protocol.slurm import job_plan, pretraining_tasks

            jobs = job_plan(cells, parsed.cluster)
            n_jobs = sum(j.cells[0].stage == "pretrain" for j in jobs)
            size = (f"{parsed.cluster.gpus_per_job} GPU(s)" if parsed.cluster.gpus_per_job
                    else f"no GPU, {pretraining_tasks(parsed.cluster)} process(es)")
            click.echo(f"--launcher slurm: {len(jobs)} jobs if nothing is finished yet: {n_jobs} pretraining "
                       f"({size} each), {len(jobs) - n_jobs} evaluation (at most "
                       f"{parsed.cluster.cells_per_job} cells each), partition {parsed.cluster.partition or 'default'}, "
                       f"{parsed.cluster.time_min} min each.")
        return
    from .api import run_validated

    try:
        report = run_validated(parsed, path, registry, out=out, launcher=launcher, workers=workers, device=device,
                               reuse_stale=reuse_stale, cluster=cluster, cells=cells, trackers=trackers,
                               say=printed, echo=log_echo("stence_bench.run"))
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: the command to resume was said
        sys.exit(exit_code(exc))
    if not report.main or report.site is None:
        sys.exit(1 if report.failed or report.main else 0)
    if report.failed:
        sys.exit(1)


@cli.group("results")
def results_group() -> None:
    """Look at result files."""


@results_group.command("show")
@click.argument("folders", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--task", "task_pattern", default=None, help="Only tasks matching this glob.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the rows and the comparisons as JSON (the same numbers as the table, unrounded).")
def results_show(folders: tuple[Path, ...], task_pattern: str | None, as_json: bool) -> None:
    """Print the results of run folders as a table: mean and 95 % CI over draws per task x encoder x objective
    x stage x fraction, the paired difference to the random-init control and the worst subgroup; then the
    suite's comparisons (its suite.json's comparisons), per task and as means over tasks."""
    import fnmatch

    from .results import read_results
    from .results.aggregate import aggregate, compare
    from .results.export import plain_json
    from .results.text import comparisons_table, results_table

    results = read_results(folders)
    if not results:
        raise StenceBenchError(f"{', '.join(map(str, folders))}: no result files")
    if task_pattern is not None:
        tasks = sorted({r.cell.task for r in results if r.cell.task})
        if not fnmatch.filter(tasks, task_pattern):
            raise StenceBenchError(f"--task {task_pattern!r}: no task of the results matches"
                                   f"{did_you_mean(task_pattern, tasks)} (tasks: {', '.join(tasks) or 'none'})")
    comparisons = suite_comparisons(folders)
    selected = [r for r in results if task_pattern is None or (r.cell.task and fnmatch.fnmatch(r.cell.task,
                                                                                                task_pattern))]
    if as_json:
        from dataclasses import asdict

        rows = [asdict(r) for r in aggregate(results)
                if task_pattern is None or fnmatch.fnmatch(r.task, task_pattern)]
        payload = {"rows": rows, "comparisons": [d.model_dump(mode="json") for d in compare(selected, comparisons)]
                   if comparisons else []}
        click.echo(json.dumps(plain_json(payload), indent=1, allow_nan=False))
        return
    click.echo(results_table(results, task_pattern=task_pattern))
    if comparisons:
        click.echo("\n" + comparisons_table(compare(selected, comparisons)))


@results_group.command("export")
@click.argument("folders", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="The file to write: .csv, .json or .parquet (the format follows the suffix).")
def results_export(folders: tuple[Path, ...], out: Path) -> None:
    """Write the results of run folders as one row per cell (its config, scores, interval, paired difference to
    the control and provenance) to a CSV, JSON or Parquet file: the rows stence_bench.load_results(RUN_DIR)
    returns (docs/api.md)."""
    from .results import read_results
    from .results.export import export, export_format

    export_format(out)  # an unknown suffix fails before anything is read
    results = read_results(folders)
    if not results:
        raise StenceBenchError(f"{', '.join(map(str, folders))}: no result files")
    export(results, out)
    click.echo(f"{out}: {len({r.key for r in results})} cell(s)")


def suite_comparisons(folders: tuple[Path, ...]) -> list[Any]:
    """The comparisons of the suites whose run folders are given (their ``suite.json``), once each."""
    from .results import SUITE_FILE
    from .suite_schema import Comparison

    out: list[Any] = []
    for folder in folders:
        for base in (Path(folder), Path(folder).parent):
            path = base / SUITE_FILE
            if path.is_file():
                try:
                    listed = json.loads(path.read_text()).get("comparisons") or []
                    found = [Comparison.model_validate(c) for c in listed]
                except (ValueError, OSError) as exc:
                    raise StenceBenchError(f"{path}: unreadable comparisons: {str(exc).splitlines()[0]}") from None
                out += [c for c in found if c not in out]
                break
    return out


@results_group.command("rescore")
@click.argument("folders", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--write", is_flag=True, help="Store the recomputed numbers where they differ (after a fix in the "
                                            "scoring code); the paired differences to the control follow, as they "
                                            "are derived from the files.")
def results_rescore(folders: tuple[Path, ...], write: bool) -> None:
    """Recompute every metric and interval of the finished evaluation cells from the per-record predictions saved
    beside each result, and compare them with the stored numbers. Exit status 1 when any differs (without
    --write) or a result has no predictions file."""
    from .protocol.results import rescore

    bad = False
    for folder in folders:
        checked, disagree, missing = rescore(folder, write=write)
        for line in disagree:
            click.echo(("rewritten " if write else "differs: ") + line)
        for line in missing:
            click.echo(f"cannot rescore {line}")
        verdict = ("all agree" if not disagree else
                   f"{len(disagree)} differed and were rewritten" if write else f"{len(disagree)} differ")
        click.echo(f"{folder}: {checked} result(s) rescored from their predictions: {verdict}"
                   + (f"; {len(missing)} without predictions" if missing else ""))
        bad = bad or bool(missing) or (bool(disagree) and not write)
    if bad:
        sys.exit(1)


# --- leaderboard --------------------------------------------------------------------------------------------


@cli.command("leaderboard")
@click.argument("folders", metavar="RESULTS_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="The site folder to write (new, empty, or a site built earlier, which is replaced).")
@click.option("--templates", type=click.Path(path_type=Path), default=None,
              help="A folder of Jinja2 templates (and static/ files) used before the built-in ones.")
@click.pass_context
def leaderboard_command(ctx: click.Context, folders: tuple[Path, ...], out: Path, templates: Path | None) -> None:
    """Build the static HTML leaderboard of run folders (or their results/ folders): an index of suites, a
    table, label-efficiency curves and heatmaps per task, contamination flags, provenance per cell, and the
    results as CSV and JSON. One suite per folder (its suite.json's name, else the folder's name); the site
    loads nothing from outside itself, so any static host can publish it. See docs/leaderboards.md."""
    from .leaderboard import build_site

    index = build_site(folders, out, registry=get_registry(ctx), templates=templates)
    click.echo(f"leaderboard: {index}")


# --- data ---------------------------------------------------------------------------------------------------

from .data.cli import data_group

cli.add_command(data_group)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="stence-bench")


if __name__ == "__main__":  # python -m stence_bench.cli
    main()
