"""``stence-bench data``: ingest sources into an ECG store, and describe a store."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import StenceBenchError

if TYPE_CHECKING:  # the CLI starts without pandas or numpy; data commands import them when they run
    from .layouts.base import Layout


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (``100``, ``true``) is taken as such, else as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise StenceBenchError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def make_layout(ctx: click.Context, name: str, options: dict[str, Any]) -> Layout:
    from ..cli_context import get_registry
    from .layouts.base import build_layout

    return build_layout(get_registry(ctx), name, options, option_prefix="--option ", name_prefix="--layout: ")


class ProgressBar:
    """A click progress bar on stderr for work that learns its size once started: pass :meth:`start` and
    :meth:`update` as the work's callbacks; the bar is closed however the work ends."""

    def __init__(self, label: str):
        self.label = label
        self._bar: Any = None

    def start(self, total: int | None) -> None:
        """``total``: how many items, or ``None`` when the work does not know yet (a layout that yields its
        records as it finds them): then the bar counts without a percentage."""
        size: dict[str, Any] = {"length": total} if total is not None else {"iterable": iter(())}
        self._bar = click.progressbar(**size, label=self.label, show_pos=True, show_eta=True, file=sys.stderr)
        self._bar.__enter__()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@click.group("data")
def data_group() -> None:
    """Read ECG sources into a store, and describe stores."""


@data_group.command("ingest")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--layout", "layout_name", required=True, metavar="NAME",
              help="The source's layout: wfdb, ptbxl, cinc2021, mimic-iv-ecg, echonext, code15, chapman-ningbo, dicom "
                   "(stence-bench list datasets).")
@click.option("--store", required=True, type=click.Path(path_type=Path), help="The store folder (created if new).")
@click.option("--workers", type=click.IntRange(min=1), default=min(4, os.cpu_count() or 1), show_default=True,
              help="Reader processes.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Records per shard (the unit that is committed atomically).")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="A layout option, e.g. -o rate=100 for ptbxl, -o group=median for dicom.")
@click.pass_context
def ingest_command(ctx: click.Context, source: Path, layout_name: str, store: Path, workers: int, chunk_size: int,
                   options: tuple[str, ...]) -> None:
    """Read SOURCE into the store: in parallel, resumable, bad records quarantined with a reason.

    Running it again skips records already in the store whose files have not changed, so an interrupted ingest
    resumes where it stopped. One ingest writes a store at a time (STORE/ingest.lock); reader processes end with
    this command, however it ends.
    """
    from ..processes import exit_code, stop_on_signals
    from .ingest import ingest

    layout = make_layout(ctx, layout_name, parse_options(options))
    with stop_on_signals():
        try:
            with ProgressBar("ingesting") as bar:
                report = ingest(source, layout, store, workers=workers, chunk_size=chunk_size, on_start=bar.start,
                                progress=bar.update, wait_s=0, echo=lambda line: click.echo(line, err=True))
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: the readers are stopped, committed chunks kept
            click.echo(f"interrupted: the records committed so far are kept in {store}; run the same command to "
                       "resume", err=True)
            sys.exit(exit_code(exc))
    for line in report.lines():
        click.echo(line)


@data_group.command("info")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info_command(store: Path, as_json: bool) -> None:
    """Describe a store: records, patients, sampling rates, leads, quarantine."""
    from .store import ECGStore

    summary = ECGStore(store).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"store        {summary['store']}")
    click.echo(f"layout       {summary['layout']} from {summary['source']}")
    click.echo(f"records      {summary['records']}  ({summary['patients']} patients)")
    click.echo(f"units        {summary['units']}" + ("" if summary["units"] == "mV" else
                                                      "  (standardised by the publisher: not millivolts)"))
    click.echo("fs (Hz)      " + ", ".join(f"{fs}: {n}" for fs, n in summary["sampling_rates"].items()))
    for leads, n in summary["leads"].items():
        click.echo(f"leads        {leads}: {n}")
    click.echo(f"fingerprint  {summary['fingerprint']}")
    groups = summary["duplicate_signals"]
    if groups:
        shown = "; ".join(", ".join(group) for group in groups[:5]) + ("; ..." if len(groups) > 5 else "")
        click.echo(f"duplicates   {sum(map(len, groups))} records share {len(groups)} signal(s), each group counted as "
                   f"one patient: {shown}")
    click.echo(f"quarantined  {summary['quarantined']}" + (f"  (reasons: {summary['quarantine_report']})"
                                                         if summary["quarantined"] else ""))


@data_group.command("labels")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("table", type=click.Path(path_type=Path))
@click.option("--key", type=click.Choice(["record", "patient", "study"]), required=True,
              help="What the table's rows are keyed by.")
@click.option("--key-column", help="The table's key column (default: record_id, patient_id or study_id).")
@click.option("--time-column", help="The label's time column: join each record to the row nearest in time.")
@click.option("--within", help="With --time-column: the largest gap accepted, e.g. 12h, 3D.")
@click.option("--direction", type=click.Choice(["nearest", "backward", "forward"]), default="nearest",
              show_default=True, help="With --time-column: the nearest row, the latest before, or the first after.")
@click.option("--name", help="The joined table's name in the store (default: the CSV's file name).")
@click.option("--replace", is_flag=True, help="Replace a label table of that name joined earlier.")
def labels_command(store: Path, table: Path, key: str, key_column: str | None, time_column: str | None,
                   within: str | None, direction: str, name: str | None, replace: bool) -> None:
    """Join a CSV label table to the store's records and keep it in the store (tables/NAME.csv). Says how many
    records got a label, how many did not, and how many of the table's rows match no record."""
    import pandas as pd

    from ..files import write_atomic
    from .store import TABLE_DIR, ECGStore
    from .tables import check_table_name, join_labels, join_summary, read_label_table

    name = check_table_name(name if name is not None else table.stem)
    if within and not time_column:
        raise StenceBenchError("--within needs --time-column")
    if within:
        try:
            pd.Timedelta(within)
        except ValueError:
            raise StenceBenchError(f"--within {within!r}: not a duration (examples: 12h, 30min, 3D)") from None
    opened = ECGStore(store)
    target = store / TABLE_DIR / f"{name}.csv"
    about = target.with_name(f"{name}.labels.json")  # what `data labels` joined; a table without one is the layout's
    if target.exists() and not about.exists():
        raise StenceBenchError(f"{target}: a table of the {opened.info.layout} layout has that name; choose another "
                               "--name")
    if target.exists() and not replace:
        earlier = json.loads(about.read_text()).get("table", "?")
        raise StenceBenchError(f"{target}: a label table of that name exists (joined from {earlier}); add --replace "
                               "to replace it, or choose another --name")
    if key == "patient" and not (opened.manifest["patient_id"].astype(str).str.strip() != "").any():
        raise StenceBenchError(f"{store}: its records have no patient ids (layout {opened.info.layout}); join by "
                               "--key record or --key study")
    labels = read_label_table(table, key=key, key_column=key_column, time_column=time_column)  # type: ignore[arg-type]
    joined = join_labels(opened.manifest, labels, key=key, key_column=key_column, time_column=time_column,  # type: ignore[arg-type]
                         within=within, direction=direction)  # type: ignore[arg-type]
    counts = join_summary(opened.manifest, labels, joined, key=key, key_column=key_column)  # type: ignore[arg-type]
    write_atomic(target, joined.to_csv(index=False))
    write_atomic(about, json.dumps({"table": str(table), "key": key, "key_column": key_column,
                                    "time_column": time_column, "within": within, "direction": direction,
                                    **counts}, indent=2, default=str))
    click.echo(f"{target}: {counts['labelled']} of {counts['records']} records labelled, {counts['unlabelled']} "
               f"without a label; {counts['unknown_rows']} row(s) of {table} match no {key} of the store"
               + (f" (e.g. {', '.join(map(repr, counts['unknown_examples']))})" if counts["unknown_rows"] else ""))


@data_group.command("croissant")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the JSON-LD here (default: print it).")
@click.pass_context
def croissant_command(ctx: click.Context, store: Path, out: Path | None) -> None:
    """The store's metadata as Croissant 1.0 JSON-LD (ML Commons): the dataset card of its layout (licence,
    access, units, leads, patient ids, splits), its files with their sha256, and the record set of its manifest."""
    from ..cli_context import get_registry
    from ..errors import UnknownNameError
    from .croissant import croissant
    from ..files import write_atomic
    from .store import ECGStore

    opened = ECGStore(store)
    try:
        spec = get_registry(ctx).datasets.get(opened.info.layout)
    except UnknownNameError:
        spec = None  # a third-party layout not installed here: described without its card
    text = json.dumps(croissant(opened, spec), indent=2)
    if out is None:
        click.echo(text)
        return
    write_atomic(out, text + "\n")
    click.echo(f"{out}: Croissant metadata of {store} ({len(opened)} records)")


@data_group.group("recipe")
def recipe_group() -> None:
    """Build a clinical task's label table from a public source's own tables (MIMIC-IV).

    The table goes into OUT (the folder a suite names in [data.sources.NAME] tables = "OUT"), with
    NAME.recipe.json beside it saying what it was built from. See docs/data.md, "Recipes".
    """


@recipe_group.command("potassium")
@click.argument("labevents", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The tables folder: writes OUT/labs.csv (subject_id, charttime, potassium).")
@click.option("--itemid", "itemids", multiple=True, type=int, metavar="ID",
              help="A labevents itemid to take (repeat for several; default 50971, serum potassium).")
def recipe_potassium(labevents: Path, out: Path, itemids: tuple[int, ...]) -> None:
    """Serum potassium draws from MIMIC-IV hosp/labevents.csv.gz, for the potassium.* tasks (each ECG takes the
    patient's draw nearest in time within the task's `within`, 4 h by default)."""
    from .recipes import SERUM_POTASSIUM_ITEMIDS, potassium_table, write_table

    chosen = list(itemids) or list(SERUM_POTASSIUM_ITEMIDS)
    table = potassium_table(labevents, itemids=chosen)
    target = write_table(table, out, "labs", {"recipe": "potassium", "source": str(labevents), "itemids": chosen,
                                               "range_mmol_l": "(0, 30]"})
    click.echo(f"{target}: {len(table)} potassium draws of {table['subject_id'].nunique()} patients "
               f"(itemids {', '.join(map(str, chosen))})")


@recipe_group.command("lvef")
@click.argument("measurements", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The tables folder: writes OUT/echo.csv (subject_id, echo_time, lvef).")
@click.option("--measurement", "names", multiple=True, metavar="NAME",
              help="A measurement name that holds the LVEF, in order of preference (repeat; default: lvef, "
                   "biplane_lvef).")
def recipe_lvef(measurements: Path, out: Path, names: tuple[str, ...]) -> None:
    """One LVEF per echo study from MIMIC-IV-ECHO structured_measurement.csv, for the lvef.* tasks (each ECG takes
    the patient's echo nearest in time within the task's `within`, 14 days by default)."""
    from .recipes import LVEF_MEASUREMENTS, lvef_table, write_table

    chosen = list(names) or list(LVEF_MEASUREMENTS)
    table = lvef_table(measurements, measurements=chosen)
    target = write_table(table, out, "echo", {"recipe": "lvef", "source": str(measurements), "measurements": chosen,
                                              "range_pct": "[0, 100]"})
    used = ", ".join(f"{name} {n}" for name, n in table["measurement"].value_counts().items()) or "none"
    click.echo(f"{target}: {len(table)} echo studies of {table['subject_id'].nunique()} patients with an LVEF "
               f"(from: {used})")


@data_group.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--patients", type=click.IntRange(min=1), default=200, show_default=True, help="Patients to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--no-angiograms", is_flag=True, help="Skip the DICOM angiograms (faster).")
@click.option("--side", "side", multiple=True, metavar="MODALITY.KNOB=SHARE",
              help="Noise or dropout of a paired modality (report, angiography, angiography_embeddings, metadata, "
                   "risk), a share from 0 to 1: report.dropout=1 leaves every report empty, "
                   "angiography_embeddings.noise=1 gives each patient another's. Repeat for several. Default: none.")
def synth_command(out: Path, patients: int, seed: int, no_angiograms: bool, side: tuple[str, ...]) -> None:
    """Generate the built-in synthetic cohort into OUT (a new folder).

    ECGs from a physiological dipole model driven by latent coronary stenosis, LVEF, potassium, mPCWP and
    PTB-XL-like findings, written in the MIMIC-IV-ECG and PTB-XL layouts, with the paired tables (patients,
    stenosis, echo, labs, catheter) and DICOM angiograms. See docs/synthetic.md.
    """
    from ..synth.cohort import synthesize
    from ..synth.side import SideInformation

    knobs = SideInformation.from_assignments(side)
    with ProgressBar("synthesizing") as bar:
        summary = synthesize(out, patients, seed, angiograms=not no_angiograms, on_start=bar.start,
                             progress=bar.update, side=knobs)
    click.echo(f"{out}: {summary['patients']} patients, {summary['ecgs']} ECGs, {summary['angiograms']} angiograms")
    click.echo(f"  stence-bench data ingest {out / 'mimic-iv-ecg'} --layout mimic-iv-ecg --store STORE")
    click.echo(f"  stence-bench data ingest {out / 'ptbxl'} --layout ptbxl --store STORE")


@data_group.command("compare-real")
@click.option("--realdata", type=click.Path(path_type=Path, file_okay=False), default=Path("../shared/realdata"),
              show_default=True, help="Folder of real records (cinc2021/, ptb-xl/, dicom/ as in ../shared/realdata).")
@click.option("--patients", type=click.IntRange(min=1), default=60, show_default=True,
              help="Synthetic patients to generate and measure.")
@click.option("--seed", type=int, default=0, show_default=True)
def compare_real_command(realdata: Path, patients: int, seed: int) -> None:
    """Compare synthetic ECGs with real records: heart rate, PR, QRS, QT, R and T amplitudes per lead, spectral
    power bands. Prints a markdown table; exits 1 when a statistic's synthetic median or interquartile range
    leaves the real range."""
    from ..synth import realism

    if not realdata.is_dir():
        raise StenceBenchError(f"--realdata {realdata}: no such folder")
    real = realism.real_reference(realdata)
    if real.empty:
        raise StenceBenchError(f"--realdata {realdata}: no real records found (expected cinc2021/, ptb-xl/, dicom/)")
    table = realism.compare(realism.synthetic_measurements(patients, seed), real)
    click.echo(realism.format_report(table))
    if not table["cohort_inside"].dropna().all():
        sys.exit(1)
