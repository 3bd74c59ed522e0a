"""Build: result files -> the leaderboard's data model (no HTML here).

:func:`load_suites` reads run folders (the only I/O); :func:`build` is a pure function of what it read and of
the registry's specs (task datasets, encoders' declared pretraining data): the same result files give the same
:class:`Site`, whatever the order they were read in. The tables reuse :func:`stence_bench.results.aggregate.aggregate`
(draw-averaged means, bootstrap CIs, paired differences to the ``none`` control), so the site and
``stence-bench results show`` never disagree.

Missing cells are part of the model: every task's table is the grid of the suite's encoder x objective rows and
its stage x fraction columns, and a position without a finished result is ``missing`` or ``failed``, never left
out. A row's mean rank exists only when every one of its columns is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict

from ..errors import StenceBenchError
from ..results import RESULT_DIR, SUITE_FILE, CellResult, read_results
from ..results.aggregate import LOWER_IS_BETTER, Difference, Labels, Row, aggregate, compare, weights_tag
from ..results.export import CSV_COLUMNS, cell_order, dedupe  # noqa: F401 - CSV_COLUMNS: the download's columns
from ..results.export import csv_text as results_csv
from ..specs import OmitWhenDefault

CONTROL = "none"
STAGE_LABELS = {"linear_probe": "linear probe", "finetune": "finetune", "zero_shot": "zero-shot"}

#: ``absent``: a control the suite would have added but that cannot run on its pretraining data (left out of the
#: plan, :func:`stence_bench.suite.left_out_controls`), never counted as failed or missing.
CellStatus = Literal["done", "partial", "failed", "missing", "n/a", "absent"]


class _Model(OmitWhenDefault):
    model_config = ConfigDict(extra="forbid")


# --- the data model -----------------------------------------------------------------------------------------


class Contamination(_Model):
    """Whether an encoder's declared pretraining data (``EncoderSpec.pretrained_on``) overlaps a task's dataset."""

    status: Literal["none", "overlap", "unknown"]
    datasets: list[str] = []
    note: str = ""


class Column(_Model):
    """One column of a task table: a protocol stage (and lead set, and test dataset) at one label fraction."""

    id: str
    stage: str
    leads: str
    fraction: float | None
    label: str
    #: Cells a complete row has here (seeds x draws).
    expected: int
    #: external validation: the dataset tested on (None: the task's own test split)
    test_dataset: str | None = None

    _omit_when_default: ClassVar[tuple[str, ...]] = ("test_dataset",)


class StageGroup(_Model):
    """The columns of one stage (and lead set, and test dataset), the header spanning them, and the heatmap's
    fraction."""

    stage: str
    leads: str
    label: str
    columns: list[str]
    heatmap_fraction: float | None
    heatmap_column: str
    test_dataset: str | None = None

    _omit_when_default: ClassVar[tuple[str, ...]] = ("test_dataset",)


class TableCell(_Model):
    status: CellStatus
    n_done: int
    n_failed: int
    n_expected: int
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    spread: float | None = None
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    diff_excludes_zero: bool = False
    #: the paired difference's Holm-adjusted p-value (per task and stage) is at most 0.05: marked ``*``
    significant: bool = False
    p_holm: float | None = None
    #: share of bootstrap resamples in which this entry is the best of its column
    p_best: float | None = None
    #: cells kept by ``run --reuse-stale`` although their inputs changed
    n_stale: int = 0
    #: 1 = best in the column (ties share a rank); ``None`` when the cell has no value.
    rank: int | None = None
    title: str
    #: the worst prespecified subgroup with enough test patients, its mean and 95% CI (beside the overall score)
    worst_subgroup: str | None = None
    worst_mean: float | None = None
    worst_ci_low: float | None = None
    worst_ci_high: float | None = None

    _omit_when_default: ClassVar[tuple[str, ...]] = ("worst_subgroup", "worst_mean", "worst_ci_low", "worst_ci_high")


class TableRow(_Model):
    encoder: str
    objective: str
    control: bool
    contamination: Contamination
    cells: list[TableCell]
    n_done: int
    n_expected: int
    #: Mean of the column ranks; ``None`` unless every column of the row is complete.
    mean_rank: float | None
    mean_rank_title: str


class ProvenanceCell(_Model):
    key: str
    stage: str
    task: str | None
    encoder: str
    objective: str
    fraction: float | None
    draw: int | None
    seed: int
    leads: str
    status: str
    metric: str | None
    value: float | None
    wall_s: float
    started: str
    finished: str
    dataset_fingerprint: str | None
    git_commit: str | None
    device: str
    versions: dict[str, str]
    config: dict[str, Any]
    error: str | None
    #: what changed since the cell ran, when a run kept it with ``--reuse-stale``
    stale: str | None = None


class TaskPage(_Model):
    name: str
    slug: str
    registered: bool
    description: str
    dataset: str | None
    metric: str
    lower_is_better: bool
    columns: list[Column]
    stages: list[StageGroup]
    rows: list[TableRow]
    n_expected: int
    n_done: int
    n_failed: int
    n_missing: int
    wall_s: float
    notes: list[str]
    provenance: list[ProvenanceCell]
    #: the dataset card of the task's dataset (licence, access, rates, units, leads, patient ids, splits), when
    #: its layout is registered here and has one
    dataset_card: dict[str, Any] | None = None


class EncoderInfo(_Model):
    label: str
    name: str
    preset: str | None
    options: list[dict[str, Any]]
    registered: bool
    description: str
    pretrained_on: list[str]
    #: the entry's given weights (``weights =``): the file's name and sha256
    weights: dict[str, str] | None = None

    _omit_when_default: ClassVar[tuple[str, ...]] = ("weights",)


class ObjectiveInfo(_Model):
    name: str
    registered: bool
    control: bool
    description: str
    options: list[dict[str, Any]]
    #: evaluates given weights as loaded (``pretrained``): a row only for encoders with weights
    as_given: bool = False

    #: Why a control was left out of the suite's plan (it cannot run on the pretraining data); empty otherwise.
    absent: str = ""

    _omit_when_default: ClassVar[tuple[str, ...]] = ("as_given",)


class SuitePage(_Model):
    name: str
    slug: str
    description: str
    from_suite_file: bool
    sources: list[str]
    tasks: list[TaskPage]
    encoders: list[EncoderInfo]
    objectives: list[ObjectiveInfo]
    n_results: int
    n_expected: int
    n_done: int
    n_failed: int
    n_missing: int
    wall_s: float
    git_commits: list[str]
    dataset_fingerprints: list[str]
    stence_bench_versions: list[str]
    pretraining: list[ProvenanceCell]
    notes: list[str]
    #: the suite's comparisons (``comparisons =``): per task, then the means over tasks
    comparisons: list[Difference] = []

    _omit_when_default: ClassVar[tuple[str, ...]] = ("comparisons",)


class Site(_Model):
    suites: list[SuitePage]
    n_results: int
    notes: list[str]


# --- input: run folders -------------------------------------------------------------------------------------


@dataclass
class SuiteResults:
    """The results of one suite, as read from one or more run folders."""

    name: str
    description: str = ""
    results: list[CellResult] = field(default_factory=list)
    #: The folders' names (not their paths, so the model does not depend on where the files lie).
    sources: list[str] = field(default_factory=list)
    #: ``suite.json``'s content when a run folder has one and it validates (encoder/objective order, protocol).
    suite: dict[str, Any] | None = None
    #: Whether the name and description come from a ``suite.json`` (else the folder's name).
    from_suite_file: bool = False
    notes: list[str] = field(default_factory=list)
    #: Where each result was read (key -> files; a cell found in two folders has two), and the ``suite.json``
    #: files: the site's archive holds these files as they are.
    files: dict[str, list[Path]] = field(default_factory=dict)
    suite_files: list[Path] = field(default_factory=list)


def _run_folder(folder: Path) -> tuple[Path, Path]:
    """(run folder, results folder) of a folder given on the command line: a run folder or its ``results/``."""
    if (folder / RESULT_DIR).is_dir():
        return folder, folder / RESULT_DIR
    if folder.name == RESULT_DIR:
        return folder.parent, folder
    return folder, folder


def read_suite_file(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``suite.json`` as a validated suite (a dict), or ``None`` and a note saying why it is not used."""
    from ..suite import Suite

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StenceBenchError(f"{path}: not a readable suite file: {str(exc).splitlines()[0]}") from None
    if isinstance(data, dict) and isinstance(data.get("suite"), dict):
        data = data["suite"]
    try:
        return Suite.model_validate(data).model_dump(mode="json"), None
    except ValueError:
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            partial = {"name": data["name"], "description": str(data.get("description") or "")}
            return partial, f"{path.name} does not validate as a suite: only its name and description are used"
        raise StenceBenchError(f"{path}: not a stence-bench suite file (no name)") from None


def load_suites(folders: Sequence[Path]) -> list[SuiteResults]:
    """Read the result files of ``folders`` (run folders or their ``results/``), grouped by suite.

    A folder's suite is the ``name`` in its run folder's ``suite.json`` when there is one, else the run folder's
    name; folders of the same suite are merged (a cell found twice keeps its finished, latest result).
    """
    if not folders:
        raise StenceBenchError("no results folder given")
    by_name: dict[str, SuiteResults] = {}
    for folder in map(Path, folders):
        if not folder.exists():
            raise StenceBenchError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise StenceBenchError(f"{folder}: not a folder")
        run, res = _run_folder(folder)
        results = read_results([res])
        if not results:
            raise StenceBenchError(f"{folder}: no result files (expected {RESULT_DIR}/*.json)")
        suite_data, note = (read_suite_file(run / SUITE_FILE) if (run / SUITE_FILE).is_file() else (None, None))
        name = suite_data["name"] if suite_data else (run.resolve().name or "results")
        entry = by_name.setdefault(name, SuiteResults(name=name))
        if suite_data:
            entry.from_suite_file = True
            entry.description = entry.description or suite_data.get("description", "")
            if "protocol" in suite_data and entry.suite is None:
                entry.suite = suite_data
        if note:
            entry.notes.append(f"{run.name}/{note}")
        entry.sources.append(run.resolve().name)
        entry.results.extend(results)
        for r in results:
            entry.files.setdefault(r.key, []).append(res / f"{r.key}.json")
        if suite_data and (run / SUITE_FILE) not in entry.suite_files:
            entry.suite_files.append(run / SUITE_FILE)
    return list(by_name.values())


# --- helpers ------------------------------------------------------------------------------------------------


def slugify(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique slug: the name itself when it is safe, else a cleaned name and a short hash."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "x"
    if slug != name or slug in taken or slug in ("index", "static"):
        slug = f"{slug[:40]}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    taken.add(slug)
    return slug


def encoder_label(encoder: str, preset: str | None) -> str:
    return encoder if preset is None else f"{encoder}[{preset}]"


def fraction_label(fraction: float | None) -> str:
    if fraction is None:
        return "no labels"
    pct = fraction * 100
    return f"{pct:g} %" if pct >= 1 else f"{pct:.2g} %"


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _dataset_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _provenance(r: CellResult) -> ProvenanceCell:
    c = r.cell
    return ProvenanceCell(
        key=r.key, stage=c.stage, task=c.task, encoder=encoder_label(c.encoder, c.preset), objective=c.objective,
        fraction=c.fraction, draw=c.draw, seed=c.seed, leads=c.leads, status=r.status, metric=r.metric,
        value=r.value, wall_s=r.wall_s, started=r.started, finished=r.finished,
        dataset_fingerprint=r.dataset_fingerprint, git_commit=r.git_commit, device=r.device,
        versions=dict(r.versions), config=c.model_dump(mode="json"), error=r.error, stale=r.stale,
    )


def _registry_lookup(registry: Any, kind: str, name: str) -> Any | None:
    if registry is None:
        return None
    catalog = registry.catalog(kind)
    return catalog.get(name) if name in catalog else None


def _rank(values: list[tuple[int, float]], lower_is_better: bool) -> dict[int, int]:
    """Competition ranks (1 = best; ties share a rank) of (row index, value) pairs."""
    ordered = sorted(values, key=lambda iv: iv[1] if lower_is_better else -iv[1])
    ranks: dict[int, int] = {}
    for pos, (i, v) in enumerate(ordered):
        prev = ordered[pos - 1] if pos else None
        tie = prev is not None and math.isclose(prev[1], v, rel_tol=0, abs_tol=1e-12)
        ranks[i] = ranks[prev[0]] if tie else pos + 1  # type: ignore[index]
    return ranks


# --- build --------------------------------------------------------------------------------------------------


def build(suites: Sequence[SuiteResults], registry: Any = None) -> Site:
    """The site's data model from the suites' results; ``registry`` gives task datasets and encoders' declared
    pretraining data (``None``: everything unknown, no contamination flag)."""
    taken: set[str] = set()
    pages = [_build_suite(s, registry, slugify(s.name, taken)) for s in sorted(suites, key=lambda s: s.name)]
    notes: list[str] = []
    if registry is None:
        notes.append("no plugin registry: task datasets and encoders' pretraining data are unknown")
    return Site(suites=pages, n_results=sum(p.n_results for p in pages), notes=notes)


def _order(seen: Iterable[str], preferred: Sequence[str], first: Sequence[str] = ()) -> list[str]:
    seen = set(seen)
    head = list(dict.fromkeys(x for x in first if x in seen))
    pref = [x for x in preferred if x in seen and x not in head]
    return head + pref + sorted(seen - set(head) - set(pref))


def _build_suite(s: SuiteResults, registry: Any, slug: str) -> SuitePage:
    results = dedupe(s.results)
    notes = list(s.notes)
    suite = s.suite or {}
    protocol = suite.get("protocol") or {}
    evaluations = [r for r in results if r.cell.stage != "pretrain" and r.cell.task is not None]
    pretraining = [r for r in results if r.cell.stage == "pretrain"]

    # rows: every encoder x objective of the suite (those in suite.json and those with results), on every task;
    # one name with several option sets (a suite edited between runs) gets one row per set, never an average
    suite_encoders = [(e["name"], e.get("preset"), e.get("options") or {}, e.get("weights"))
                      for e in suite.get("encoders", [])]
    suite_objectives = [(o["name"], o.get("options") or {}) for o in suite.get("objectives", [])]
    labels = Labels([*suite_encoders, *((r.cell.encoder, r.cell.preset, r.cell.encoder_options, r.cell.weights)
                                        for r in results)],
                    [*suite_objectives, *((r.cell.objective, r.cell.objective_options) for r in results)])
    encoders: dict[str, EncoderInfo] = {}
    objectives: dict[str, ObjectiveInfo] = {}

    def add_encoder(name: str, preset: str | None, options: dict[str, Any], weights: Any = None) -> None:
        label = labels.encoder(name, preset, options, weights)
        if label not in encoders:
            spec = _registry_lookup(registry, "encoder", name)
            encoders[label] = EncoderInfo(
                label=label, name=name, preset=preset, options=[], registered=spec is not None,
                description=spec.description if spec else "", pretrained_on=list(spec.pretrained_on) if spec else [],
                weights=weights_tag(weights))
        if options and options not in encoders[label].options:
            encoders[label].options.append(options)
        declared = weights.get("pretrained_on") if isinstance(weights, dict) else None  # the suite's, for its weights
        for dataset in declared or []:
            if dataset not in encoders[label].pretrained_on:
                encoders[label].pretrained_on.append(dataset)

    def add_objective(name: str, options: dict[str, Any]) -> None:
        label = labels.objective(name, options)
        if label not in objectives:
            spec = _registry_lookup(registry, "objective", name)
            objectives[label] = ObjectiveInfo(
                name=label, registered=spec is not None, control=bool(spec.control) if spec else name == CONTROL,
                description=spec.description if spec else "", options=[],
                as_given=bool(getattr(spec, "as_given", False)))
        if options and options not in objectives[label].options:
            objectives[label].options.append(options)

    for r in results:
        add_encoder(r.cell.encoder, r.cell.preset, r.cell.encoder_options, r.cell.weights)
        add_objective(r.cell.objective, r.cell.objective_options)
    for name, preset, options, weights in suite_encoders:  # listed in the suite, with or without a result
        add_encoder(name, preset, options, weights)
    for name, options in suite_objectives:
        add_objective(name, options)
    for name, why in _left_out_controls(suite, registry).items():
        label = labels.objective(name, {})
        if label not in objectives:  # (an earlier run's results of it are shown as they are)
            add_objective(name, {})
            objectives[label].absent = why
            notes.append(f"control {name!r} left out: it {why}")
    if registry is not None:
        for info in encoders.values():
            if not info.registered:
                notes.append(f"encoder {info.name!r} is not registered here: its pretraining data is unknown "
                             "(no contamination flag)")
        for info in objectives.values():
            if not info.registered:
                notes.append(f"objective {info.name!r} is not registered here")
    enc_order = _order(encoders, [labels.encoder(*e) for e in suite_encoders])
    controls = [o for o in sorted(objectives) if objectives[o].control]
    obj_order = _order(objectives, [labels.objective(*o) for o in suite_objectives], first=[CONTROL, *controls])
    zero_shot_objectives = {labels.objective_of(r.cell) for r in evaluations if r.cell.stage == "zero_shot"}

    rows_by_task: dict[str, list[Row]] = defaultdict(list)
    for row in aggregate(evaluations, control=CONTROL, labels=labels):
        rows_by_task[row.task].append(row)
    # pretrainings that kept a task's validation or test records (protocol.pretrain.test_overlap = "allow")
    overlaps: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for r in pretraining:
        if r.status == "done" and r.pretrain.get("test_overlap_kept") and isinstance(r.pretrain.get("test_overlap"), dict):
            for task, n in r.pretrain["test_overlap"].items():  # type: ignore[union-attr]
                row_key = (labels.encoder_of(r.cell), labels.objective_of(r.cell))
                overlaps[row_key][str(task)] = overlaps[row_key].get(str(task), 0) + int(n)  # type: ignore[arg-type]
    cells_by_task: dict[str, list[CellResult]] = defaultdict(list)
    for r in evaluations:
        cells_by_task[r.cell.task].append(r)  # type: ignore[index]
    task_order = _order(cells_by_task, suite.get("tasks", []))
    for t in suite.get("tasks", []):
        if t not in cells_by_task:
            notes.append(f"task {t!r} is in the suite but has no result file")
    taken: set[str] = set()
    tasks = [
        _build_task(t, rows_by_task[t], cells_by_task[t], enc_order, obj_order, encoders, objectives,
                    zero_shot_objectives, protocol, registry, slugify(t, taken), labels, overlaps)
        for t in task_order
    ]
    n_expected = sum(t.n_expected for t in tasks)
    n_done_eval = sum(t.n_done for t in tasks)
    return SuitePage(
        name=s.name, slug=slug, description=s.description, from_suite_file=s.from_suite_file,
        sources=sorted(set(s.sources)), tasks=tasks, encoders=[encoders[e] for e in enc_order],
        objectives=[objectives[o] for o in obj_order], n_results=len(results),
        n_expected=n_expected + len(pretraining), n_done=n_done_eval + sum(r.status == "done" for r in pretraining),
        n_failed=sum(t.n_failed for t in tasks) + sum(r.status == "failed" for r in pretraining),
        n_missing=sum(t.n_missing for t in tasks), wall_s=round(sum(r.wall_s for r in results), 3),
        git_commits=sorted({r.git_commit for r in results if r.git_commit}),
        dataset_fingerprints=sorted({r.dataset_fingerprint for r in results if r.dataset_fingerprint}),
        stence_bench_versions=sorted({r.versions.get("stence-bench", "") for r in results} - {""}),
        pretraining=[_provenance(r) for r in sorted(pretraining, key=cell_order)], notes=notes,
        comparisons=_comparisons(suite, evaluations, labels),
    )


def _comparisons(suite: dict[str, Any], evaluations: list[CellResult], labels: Labels) -> list[Difference]:
    """The suite's comparisons (its ``suite.json``'s ``comparisons``) on its results."""
    from ..suite_schema import Comparison

    listed = [Comparison.model_validate(c) for c in suite.get("comparisons") or []]
    if not listed:
        return []
    return compare(evaluations, listed, labels=labels)


def _left_out_controls(suite: dict[str, Any], registry: Any) -> dict[str, str]:
    """The controls the suite's plan left out (see :func:`stence_bench.suite.left_out_controls`), by name."""
    if registry is None or "protocol" not in suite:
        return {}
    from ..suite import Suite, left_out_controls

    return left_out_controls(Suite.model_validate(suite), registry)


def _build_task(task: str, agg: list[Row], cells: list[CellResult], enc_order: list[str], obj_order: list[str],
                encoders: dict[str, EncoderInfo], objectives: dict[str, ObjectiveInfo], zero_shot_objectives: set[str],
                protocol: dict[str, Any], registry: Any, slug: str, labels: Labels,
                overlaps: dict[tuple[str, str], dict[str, int]] | None = None) -> TaskPage:
    notes: list[str] = []
    spec = _registry_lookup(registry, "task", task)
    if registry is not None and spec is None:
        notes.append(f"task {task!r} is not registered here: its dataset is unknown (no contamination flag)")
    metric = spec.metric if spec is not None else next((r.metric for r in cells if r.metric), "")
    lower = metric in LOWER_IS_BETTER

    # columns: every stage x leads x fraction (x test dataset) seen, and those the suite's protocol plans; an
    # external test set's columns beside the internal ones of the same stage and lead set
    keys: set[tuple[str, str, float | None, str | None]] = {
        (r.cell.stage, r.cell.leads, r.cell.fraction, r.cell.test_dataset) for r in cells}
    p_stages = [st for st in protocol.get("stages", []) if st != "zero_shot"]
    externals = [d for e in protocol.get("external", []) if e.get("task") == task for d in e.get("datasets", [])]
    for st in p_stages:
        for leads in protocol.get("leads", ["all"]):
            for fr in protocol.get("fractions", []):
                for test in (None, *externals):
                    keys.add((st, leads, float(fr), test))
    stage_rank = {st: i for i, st in enumerate(["linear_probe", "finetune", "zero_shot"])}
    ordered = sorted(keys, key=lambda k: (stage_rank.get(k[0], 9), k[0], k[1] != "all", k[1], k[3] is not None,
                                          k[3] or "", -1.0 if k[2] is None else k[2]))
    count: dict[tuple[str, str, str, str, float | None, str | None], list[CellResult]] = defaultdict(list)
    for r in cells:
        c = r.cell
        count[(labels.encoder_of(c), labels.objective_of(c), c.stage, c.leads, c.fraction, c.test_dataset)].append(r)
    columns: list[Column] = []
    for st, leads, fr, test in ordered:
        seen = max((len(v) for k, v in count.items() if k[2:] == (st, leads, fr, test)), default=0)
        planned = 0
        if st in protocol.get("stages", []) and leads in protocol.get("leads", []) and (
                fr is None or fr in [float(x) for x in protocol.get("fractions", [])]) and (
                test is None or test in externals):
            draws = 1 if fr is None or fr == 1.0 else int(protocol.get("draws", 1))
            planned = len(protocol.get("seeds", [0])) * draws
        col_id = f"{st}|{leads}|{'-' if fr is None else f'{fr:g}'}" + ("" if test is None else f"|{test}")
        columns.append(Column(id=col_id, stage=st, leads=leads, fraction=fr,
                              label=fraction_label(fr) if st != "zero_shot" else "zero-shot",
                              expected=max(seen, planned, 1), test_dataset=test))
    groups: list[StageGroup] = []
    for col in columns:
        if not groups or (groups[-1].stage, groups[-1].leads, groups[-1].test_dataset) != (
                col.stage, col.leads, col.test_dataset):
            label = STAGE_LABELS.get(col.stage, col.stage) + ("" if col.leads == "all" else f", lead {col.leads}")
            if col.test_dataset is not None:
                label += f", external: {col.test_dataset}"
            elif externals:
                label += ", internal"
            groups.append(StageGroup(stage=col.stage, leads=col.leads, label=label, columns=[], heatmap_fraction=None,
                                     heatmap_column="", test_dataset=col.test_dataset))
        groups[-1].columns.append(col.id)
    by_id = {c.id: c for c in columns}
    for g in groups:
        fractions = [by_id[c].fraction for c in g.columns]
        known = [f for f in fractions if f is not None]
        g.heatmap_fraction = min(known) if known else None
        g.heatmap_column = g.columns[fractions.index(g.heatmap_fraction)]

    def count_of(enc: str, obj: str) -> int:
        return sum(len(v) for k, v in count.items() if k[:2] == (enc, obj))

    agg_by: dict[tuple[str, str, str, str, float | None, str | None], Row] = {
        (row.encoder, row.objective, row.stage, row.leads, row.fraction, row.test_dataset): row for row in agg}
    dataset = spec.dataset if spec is not None else None
    rows: list[TableRow] = []
    for enc in enc_order:
        declared = _contamination(encoders[enc], dataset, registry is not None and spec is not None, registry)
        for obj in obj_order:
            if objectives[obj].as_given and encoders[enc].weights is None and not count_of(enc, obj):
                continue  # nothing given to evaluate: no row
            contamination = declared
            kept = (overlaps or {}).get((enc, obj), {}).get(task, 0)
            if kept:
                contamination = Contamination(
                    status="overlap", datasets=sorted({*declared.datasets, *([dataset] if dataset else [])}),
                    note=(f"its pretraining kept {kept} record(s) that are validation or test records of this task "
                          "(protocol.pretrain.test_overlap = allow)" + (f"; {declared.note}" if declared.status ==
                                                                        "overlap" else "")))
            table_cells = []
            if objectives[obj].absent:
                title = f"absent: control {obj!r} left out of the suite: it {objectives[obj].absent}"
                table_cells = [TableCell(status="absent", n_done=0, n_failed=0, n_expected=0, title=title)
                               for _ in columns]
            for col in columns if not objectives[obj].absent else ():
                n_expected = col.expected
                if col.stage == "zero_shot" and obj not in zero_shot_objectives:
                    n_expected = 0
                where = (enc, obj, col.stage, col.leads, col.fraction, col.test_dataset)
                table_cells.append(_table_cell(agg_by.get(where), count.get(where, []), n_expected, metric,
                                               obj == CONTROL))
            rows.append(TableRow(encoder=enc, objective=obj, control=objectives[obj].control,
                                 contamination=contamination, cells=table_cells,
                                 n_done=sum(c.n_done for c in table_cells),
                                 n_expected=sum(c.n_expected for c in table_cells), mean_rank=None, mean_rank_title=""))
    # ranks per column, then mean rank of complete rows
    for j in range(len(columns)):
        values = [(i, row.cells[j].mean) for i, row in enumerate(rows) if row.cells[j].mean is not None]
        for i, rank in _rank(values, lower).items():  # type: ignore[arg-type]
            rows[i].cells[j].rank = rank
    for row in rows:
        applicable = [c for c in row.cells if c.status not in ("n/a", "absent")]
        incomplete = [columns[j].label for j, c in enumerate(row.cells) if c.status not in ("done", "n/a", "absent")]
        if applicable and not incomplete:
            row.mean_rank = round(sum(c.rank for c in applicable if c.rank is not None) / len(applicable), 6)
            row.mean_rank_title = f"mean of the {len(applicable)} column ranks"
        else:
            row.mean_rank_title = (f"no mean rank: {len(incomplete)} of {len(applicable)} columns incomplete"
                                   if applicable else "no applicable column")
    n_expected = sum(r.n_expected for r in rows)
    n_done = sum(r.status == "done" for r in cells)
    n_failed = sum(r.status == "failed" for r in cells)
    if any(r.contamination.status == "overlap" for r in rows):
        notes.append(f"contamination: some rows' pretraining data include this task's dataset ({dataset}): the "
                     "encoder's declared pretraining data, or records the suite's pretraining kept "
                     "(protocol.pretrain.test_overlap = allow)")
    n_stale = sum(r.stale is not None for r in cells)
    if n_stale:
        notes.append(f"{n_stale} cell(s) are stale: kept by run --reuse-stale although their data, labels, "
                     "pretraining or scoring code changed since they ran (see their provenance)")
    return TaskPage(
        name=task, slug=slug, registered=spec is not None, description=spec.description if spec else "",
        dataset=dataset, metric=metric, lower_is_better=lower, columns=columns, stages=groups, rows=rows,
        n_expected=n_expected, n_done=n_done, n_failed=n_failed, n_missing=max(0, n_expected - len(cells)),
        wall_s=round(sum(r.wall_s for r in cells), 3), notes=notes,
        provenance=[_provenance(r) for r in sorted(cells, key=cell_order)],
        dataset_card=_dataset_card(registry, dataset),
    )


def _dataset_card(registry: Any, dataset: str | None) -> dict[str, Any] | None:
    spec = _registry_lookup(registry, "dataset", dataset) if dataset else None
    card = getattr(spec, "card", None)
    return card.model_dump(mode="json") if card is not None else None


def _contamination(encoder: EncoderInfo, dataset: str | None, task_known: bool, registry: Any = None) -> Contamination:
    if not encoder.registered or not task_known or dataset is None:
        why = ("encoder not registered here" if not encoder.registered else "task not registered here")
        return Contamination(status="unknown", note=f"unknown: {why}")
    overlap = [d for d in encoder.pretrained_on if _pretrained_on_covers(d, dataset, registry)]
    if overlap:
        same = all(_dataset_key(d) == _dataset_key(dataset) for d in overlap)
        return Contamination(status="overlap", datasets=overlap,
                             note=f"the encoder's weights were pretrained on {', '.join(overlap)}, "
                                  + ("this task's dataset" if same else f"which holds records of {dataset}"))
    declared = ", ".join(encoder.pretrained_on) or "none declared"
    return Contamination(status="none", note=f"pretrained on: {declared}")


def _pretrained_on_covers(declared: str, dataset: str, registry: Any = None) -> bool:
    """Whether pretraining on ``declared`` saw records of ``dataset``: the same dataset, a part of it
    (``"cinc2021:chapman"``), or a registered dataset that republishes it (``cinc2021`` contains ``ptbxl``)."""
    whole, _, part = declared.partition(":")
    if _dataset_key(whole) == _dataset_key(dataset):
        return True
    if part or registry is None:
        return False
    spec = next((s for s in registry.datasets if _dataset_key(s.name) == _dataset_key(whole)), None)
    return spec is not None and any(_dataset_key(c) == _dataset_key(dataset) for c in spec.contains)


def _table_cell(row: Row | None, cells: list[CellResult], n_expected: int, metric: str, is_control: bool) -> TableCell:
    n_done = sum(r.status == "done" and r.value is not None for r in cells)
    n_failed = len(cells) - n_done
    n_expected = max(n_expected, len(cells))
    if n_expected == 0:
        return TableCell(status="n/a", n_done=0, n_failed=0, n_expected=0, title="not applicable")
    n_missing = n_expected - len(cells)
    if row is None or row.mean is None:
        status: CellStatus = "failed" if n_failed else "missing"
        parts = []
        if n_failed:
            parts.append(f"{n_failed} failed")
        if n_missing:
            parts.append(f"{n_missing} missing (no result file)")
        return TableCell(status=status, n_done=0, n_failed=n_failed, n_expected=n_expected,
                         title=f"{status}: {', '.join(parts)} of {n_expected} cell{'s' * (n_expected != 1)}")
    status = "done" if n_done == n_expected else "partial"
    title = [f"{metric} {_num(row.mean)}, mean of {n_done} of {n_expected} cell{'s' * (n_expected != 1)}"]
    if n_failed:
        title.append(f"{n_failed} failed (not averaged in)")
    if n_missing:
        title.append(f"{n_missing} missing (not averaged in)")
    if row.ci_low is not None:
        over = "draws, seeds and test patients" if row.ci_kind != "patients" else "test patients"
        title.append(f"95% CI [{_num(row.ci_low)}, {_num(row.ci_high)}] (bootstrap over {over})")
    if row.spread is not None:
        title.append(f"sd over draws {_num(row.spread)}")
    if row.p_best is not None:
        title.append(f"best of its column in {100 * row.p_best:.0f}% of resamples")
    if row.n_stale:
        title.append(f"{row.n_stale} stale (kept by --reuse-stale)")
    if row.worst_subgroup is not None:
        interval = f" [{_num(row.worst_low)}, {_num(row.worst_high)}]" if row.worst_low is not None else ""
        title.append(f"worst subgroup {row.worst_subgroup} {_num(row.worst_mean)}{interval}")
    if row.subgroups:
        title.append("subgroups: " + ", ".join(f"{name} {_num(v)}" for name, v in row.subgroups.items()))
    if not is_control:
        if row.diff is not None:
            interval = f"[{_num(row.diff_low, True)}, {_num(row.diff_high, True)}]"
            holm = f", Holm-adjusted p {row.p_holm:.3g}" if row.p_holm is not None else ""
            title.append(f"vs {CONTROL} {_num(row.diff, True)} {interval}{holm}"
                         + (" (significant)" if row.significant else ""))
        else:
            title.append(f"no paired difference to {CONTROL} (its cells are missing)")
    return TableCell(status=status, n_done=n_done, n_failed=n_failed, n_expected=n_expected, mean=row.mean,
                     ci_low=row.ci_low, ci_high=row.ci_high, spread=row.spread, diff=row.diff, diff_low=row.diff_low,
                     diff_high=row.diff_high, diff_excludes_zero=row.diff_excludes_zero, significant=row.significant,
                     p_holm=row.p_holm, p_best=row.p_best, n_stale=row.n_stale, title="; ".join(title),
                     worst_subgroup=row.worst_subgroup, worst_mean=row.worst_mean, worst_ci_low=row.worst_low,
                     worst_ci_high=row.worst_high)


# --- downloads ----------------------------------------------------------------------------------------------


def csv_text(suite: SuiteResults) -> str:
    """The suite's ``results.csv``: one row per cell (pretraining cells included, task and metric empty);
    columns :data:`CSV_COLUMNS` (:func:`stence_bench.results.export.csv_text`)."""
    return results_csv(suite.results, suite.name)


def json_results(suite: SuiteResults) -> bytes:
    """The suite's ``results.json``: every result file's content but its per-resample vectors, which stay in the
    per-cell files (the site's ``results.zip``), with the paired difference to the control; compact."""
    from ..results.export import summaries

    return json.dumps(summaries(suite.results), separators=(",", ":"), allow_nan=False).encode()


def archive(suite: SuiteResults) -> bytes:
    """The suite's complete results as a zip: ``<suite>/results/<key>.json``, every result file as it was read
    (bootstrap vectors included), one per cell (a finished one over a failed one, the latest), and
    ``<suite>/suite.json`` when the run folder had one. Deterministic: the same results give
    the same bytes. Per-record predictions are left out (they hold record and patient ids: a site publishes
    aggregates)."""
    import zipfile

    files: dict[str, bytes] = {}
    for r in dedupe(suite.results):
        files[f"{RESULT_DIR}/{r.key}.json"] = _file_of(r, suite.files.get(r.key, []))
    if suite.suite_files:
        files[SUITE_FILE] = suite.suite_files[0].read_bytes()
    elif suite.suite is not None and suite.from_suite_file:
        files[SUITE_FILE] = json.dumps(suite.suite, indent=1).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{slugify_archive(suite.name)}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buffer.getvalue()


def _file_of(result: CellResult, paths: Sequence[Path]) -> bytes:
    """The bytes of the file ``result`` was read from (of ``paths``, the one that holds it), else its JSON."""
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if CellResult.model_validate_json(data) == result:
            return data
    return result.model_dump_json(indent=1).encode()


def slugify_archive(name: str) -> str:
    """The archive's top folder: the suite's name, made file-name safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "results"
