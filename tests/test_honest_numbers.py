"""What keeps the numbers honest (docs/protocol.md): each guard on a real-data situation, with hand-computed
expectations. Records of different lengths, datasets with their own folds, duplicated signals, a second plugin
with the same name, stale data under an unchanged cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.data.windows import apply_contract
from stence_bench.data.wfdb_io import read_wfdb, write_wfdb
from stence_bench.data.windows import Windows
from stence_bench.protocol.data import Workspace
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def quiet(line: str) -> None:
    """An echo that prints nothing."""


def source_suite(path: Path, layout: str = "wfdb", extra: str = "") -> str:
    return f"""
name = "mixed"
tasks = ["stenosis.70"]
encoders = ["resnet1d_wang"]
objectives = ["none"]
{extra}
[data]
pretrain = "mixed"
[data.sources.mixed]
path = "{path}"
layout = "{layout}"
"""


@pytest.fixture
def mixed_lengths(realdata, tmp_path) -> Path:
    """A WFDB folder of real records of different lengths: a 10 s Georgia record as published (MATLAB v4) and a
    60 s record made of six consecutive 10 s Chapman-Shaoxing records (CinC 2021 has 6-60 s records)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for suffix in (".hea", ".mat"):
        shutil.copy(realdata / "cinc2021" / f"E07500{suffix}", folder / f"E07500{suffix}")
    parts = [read_wfdb(realdata / "cinc2021" / f"JS2000{i}")[0] for i in range(6)]
    long = np.concatenate([p.physical() for p in parts], axis=1)
    assert long.shape == (12, 30000)
    write_wfdb(folder / "LONG60", long, 500)
    return folder


# -- 1. every window of a record lies inside that record ------------------------------------------------------


def test_sliding_windows_of_a_record_stay_inside_its_own_length(registry):
    """A 10 s record beside a 60 s one: 7 windows of 2.5 s every 1.25 s, not the 47 of the longer record
    (39 of them zeros) that the padded tensor gave."""
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "none"})  # 250 samples
    rng = np.random.default_rng(0)
    short, long = rng.normal(size=(12, 1000)).astype(np.float32), rng.normal(size=(12, 6000)).astype(np.float32)
    windows = Windows.of_arrays(spec, ["short", "long"], [short, long])
    x, counts = windows.sliding(np.array([0, 1]))
    assert counts.tolist() == [7, 47]  # (1000 - 250) / 125 + 1 and (6000 - 250) / 125 + 1
    assert x.shape == (54, 12, 250)
    for k in range(7):
        assert torch.equal(x[k], torch.from_numpy(short[:, 125 * k : 125 * k + 250]))
    assert torch.equal(x[7 + 46], torch.from_numpy(long[:, 5750:6000]))
    assert (x.abs().sum(dim=(1, 2)) > 0).all()  # no window of padding


def test_a_record_shorter_than_a_window_is_normalised_over_its_own_samples(registry):
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "zscore_record"})
    record = np.arange(2 * 100, dtype=np.float32).reshape(1, 200).repeat(12, axis=0)  # 200 < 250 samples
    windows = Windows.of_arrays(spec, ["r"], [record])
    x, counts = windows.sliding(np.array([0]))
    assert counts.tolist() == [1]
    signal = record[0]
    expected = (signal - signal.mean()) / (signal.std() + 1e-6)  # statistics of the 200 samples, not of 250
    assert np.allclose(x[0, 0, :200].numpy(), expected, atol=1e-5)
    assert x[0, :, 200:].abs().sum() == 0
    assert torch.equal(windows.centre(np.array([0])), x)


def test_embeddings_of_mixed_length_records_average_only_their_own_windows(mixed_lengths, registry, tmp_path):
    """Through the harness (ingest, view cache, windows, embedding): the 10 s record's embedding is the mean over
    its 7 own windows, computed here by hand from the record with the encoder contract."""
    from stence_bench.protocol.evaluate import window_mean

    suite = parse_suite(source_suite(mixed_lengths))
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "zscore_record"})
    ws = Workspace(suite, registry, tmp_path / "run", echo=quiet)
    windows = ws.windows("mixed", spec)
    assert windows.lengths.tolist() == [1000, 6000]  # 100 Hz: 10 s and 60 s

    class Amplitude(torch.nn.Module):
        """A fixed 'encoder': each lead's mean absolute value."""

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x.abs().mean(dim=-1)

    emb = window_mean(Amplitude(), windows, np.array([0, 1]), None)
    record, _ = read_wfdb(mixed_lengths / "E07500")
    by_hand = np.mean([np.abs(apply_contract(record.physical(), 500, record.leads, spec, offset=125 * k)).mean(axis=-1)
                       for k in range(7)], axis=0)
    assert np.allclose(emb[0], by_hand, atol=1e-4)


def test_the_dataset_scaler_is_fitted_on_every_sample_of_the_training_records(mixed_lengths, registry, tmp_path):
    """``zscore_dataset`` (the PTB-XL benchmark's one global scaler): per-lead mean and std over all samples of the
    training records, whole records of any length, not one centred window of each."""
    suite = parse_suite(source_suite(mixed_lengths))
    spec = registry.encoders.get("resnet1d_wang")
    ws = Workspace(suite, registry, tmp_path / "run", echo=quiet)
    windows = ws.windows("mixed", spec)
    dataset = ws.dataset("mixed")
    split = dict(zip(dataset.records["record_id"], dataset.split("patient", 0)))
    train = [rid for rid in windows.record_ids if split[rid] == "train"] or windows.record_ids
    signals = []
    for rid in train:
        record, _ = read_wfdb(mixed_lengths / rid)
        signals.append(apply_contract(record.physical(), 500, record.leads, spec.model_copy(
            update={"window_s": record.physical().shape[1] / 500}), normalize=False))
    samples = np.concatenate(signals, axis=1).astype(np.float64)
    assert np.allclose(windows.scaler.mean, samples.mean(axis=1), atol=1e-5)
    assert np.allclose(windows.scaler.std, samples.std(axis=1), atol=1e-5)


# -- 2. lead geometry in millivolts, normalisation after ------------------------------------------------------


@pytest.mark.parametrize("normalization", ["none", "zscore_record", "zscore_dataset"])
def test_an_identity_vcg_augmentation_gives_the_harness_input_back(mixed_lengths, registry, tmp_path, normalization):
    """Inside the harness's own pipeline (pretraining batch -> objective views), a VCG rotation of 0 and scale 1
    give exactly the input the encoder gets without augmentation, for every normalisation. Applied to normalised
    leads (as before), the re-derived limb leads III/aVR/aVL/aVF changed by 10-64 % RMS."""
    from stence_bench.protocol.pretrain import ecg_inputs, pretraining_cut
    from stence_bench_plugins.objectives import augment
    from stence_bench_plugins.objectives.contrastive import PatientContrastive

    suite = parse_suite(source_suite(mixed_lengths))
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": normalization})
    windows = Workspace(suite, registry, tmp_path / "run", echo=quiet).windows("mixed", spec)
    encoder = spec.build("tiny")
    objective = PatientContrastive(encoder, leads=spec.leads, vcg=True, max_rotation_deg=0.0, max_scale=0.0,
                                   blank_p=0.0, noise_std=0.0, segment_positives=True)
    assert objective.physical_units
    rows = np.array([0, 1, 1, 0])
    batch = ecg_inputs(windows.take(pretraining_cut(windows, rows, np.random.default_rng(7), slice(None), objective)),
                       objective)
    first, second = objective.views(batch)
    plain = np.random.default_rng(7)
    expected_first, expected_second = windows.crops(rows, plain), windows.crops(rows, plain)
    # the real leads obey Einthoven to the files' 1 uV rounding (a few uV after resampling): the identity up to that,
    # back in millivolts
    if normalization == "zscore_record":
        units = batch["ecg"].std(dim=-1, unbiased=False, keepdim=True)  # mV per normalised unit
    elif normalization == "zscore_dataset":
        units = torch.as_tensor(windows.scaler.std, dtype=torch.float32)[None, :, None]
    else:
        units = torch.ones(1)
    assert ((first - expected_first) * units).abs().max() <= 5e-3
    units_second = (batch["ecg_segment"].std(dim=-1, unbiased=False, keepdim=True)
                    if normalization == "zscore_record" else units)
    assert ((second - expected_second) * units_second).abs().max() <= 5e-3

    if normalization != "none":  # the old order: the geometry applied to normalised leads is not the identity
        vcg = augment.VCGAugment(spec.leads)
        old = vcg.transform(expected_first, torch.eye(3).expand(4, 3, 3), torch.ones(4))
        limb = [spec.leads.index(lead) for lead in ("III", "aVR", "aVL", "aVF")]
        change = (old - expected_first)[:, limb].pow(2).mean().sqrt() / expected_first[:, limb].pow(2).mean().sqrt()
        assert change > 0.05


# -- 3, 4. no validation or test patient of any task is pretraining data ---------------------------------------


SYNTH_SUITE = """
name = "leak"
tasks = {tasks}
encoders = [{{name = "resnet1d_wang", preset = "tiny"}}]
objectives = ["patient_contrastive"]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 10
split_seed = {split_seed}
pretrain = {{epochs = 1, batch_size = 32}}
[data]
pretrain = "{pretrain}"
synthetic = {{patients = 60, seed = 5, angiograms = false}}
"""


def held_out_patients(ws: Workspace, dataset_name: str, task_names: list[str]) -> set[str]:
    """By hand: the patients of the records of ``dataset_name`` that are validation or test records of a task."""
    out: set[str] = set()
    for name in task_names:
        task = ws.registry.tasks.get(name)
        dataset = ws.dataset(task.dataset)
        if task.split == "strat_fold":
            folds = {rid: meta["strat_fold"] for rid, meta in zip(dataset.records["record_id"], dataset.records["meta"])}
            held = [rid for rid, fold in folds.items() if fold in (9, 10)]
        else:
            split = dict(zip(dataset.records["record_id"], dataset.split("patient", ws.suite.protocol.split_seed)))
            held = [rid for rid, s in split.items() if s != "train"]
        out |= set(dataset.patients.reindex(held))
    return out


@pytest.mark.parametrize(("pretrain", "split_seed", "tasks"), [
    ("ptbxl", 1, ["ptbxl.superdiagnostic"]),  # PTB-XL's own folds vs the pretraining's patient split
    ("mimic-iv-ecg", 1, ["ptbxl.superdiagnostic", "lvef.40"]),  # the cohort's PTB-XL folds are fixed; seed 1
])
def test_pretraining_reads_no_validation_or_test_patient_of_any_task(tmp_path, registry, pretrain, split_seed, tasks):
    """The pretraining result's record count is the training split less every held-out patient, counted by hand
    (before: PTB-XL pretraining used ~80 % of fold-10 patients; with split_seed = 1 the cohort's PTB-XL test ECGs
    were pretraining records)."""
    from stence_bench.results import read_results
    from stence_bench.protocol.runner import run_suite

    suite = parse_suite(SYNTH_SUITE.format(tasks=tasks, split_seed=split_seed, pretrain=pretrain))
    run_suite(suite, registry, tmp_path, echo=quiet, cells=[c for c in __import__("stence_bench.suite").suite.plan(
        suite, registry) if c.stage == "pretrain"])
    ws = Workspace(suite, registry, tmp_path, echo=quiet)
    dataset = ws.dataset(pretrain)
    held = held_out_patients(ws, pretrain, tasks)
    assert held, "the test needs held-out patients"
    train = dataset.split("patient", split_seed) == "train"
    patients = dataset.patients.reindex(dataset.records["record_id"]).to_numpy()
    expected = int((train & ~np.isin(patients, list(held))).sum())
    leaked = int((train & np.isin(patients, list(held))).sum())
    assert leaked > 0, "the situation must be one where the training split holds held-out patients"
    (result,) = [r for r in read_results([tmp_path]) if r.cell.stage == "pretrain"]
    assert result.status == "done", result.error
    assert result.pretrain["records"] == expected
    assert result.pretrain["excluded_held_out_patients"] == leaked
    chosen = set(ws.pretraining_records().record_ids)
    assert not chosen & set(dataset.patients.index[dataset.patients.isin(held)])


def test_the_synthetic_exports_share_one_patient_namespace(tmp_path, registry):
    suite = parse_suite(SYNTH_SUITE.format(tasks=["ptbxl.superdiagnostic"], split_seed=0, pretrain="mimic-iv-ecg"))
    ws = Workspace(suite, registry, tmp_path, echo=quiet)
    mimic, ptbxl = ws.dataset("mimic-iv-ecg"), ws.dataset("ptbxl")
    assert mimic.namespace == ptbxl.namespace
    assert set(ptbxl.patients) <= set(mimic.patients)  # the same subject ids


# -- duplicated signals: one patient, one split ---------------------------------------------------------------


@pytest.fixture
def cinc_with_a_duplicate(realdata, tmp_path) -> Path:
    """Real CinC 2021 Georgia records, one of them filed a second time under another id (as E07509/E07510 are)."""
    folder = tmp_path / "cinc"
    folder.mkdir()
    for name in [f"E075{i:02d}" for i in range(10)]:
        for suffix in (".hea", ".mat"):
            shutil.copy(realdata / "cinc2021" / f"{name}{suffix}", folder / f"{name}{suffix}")
    shutil.copy(folder / "E07509.mat", folder / "E07510.mat")
    (folder / "E07510.hea").write_text((folder / "E07509.hea").read_text().replace("E07509", "E07510"))
    return folder


def test_records_with_identical_signals_are_one_patient_and_share_a_split(cinc_with_a_duplicate, registry, tmp_path):
    suite = parse_suite(source_suite(cinc_with_a_duplicate, layout="cinc2021"))
    ws = Workspace(suite, registry, tmp_path / "run", echo=quiet)
    dataset = ws.dataset("mixed")
    assert dataset.patients["E07509"] == dataset.patients["E07510"]
    assert len(set(dataset.patients)) == 10  # 11 records, 10 signals
    for seed in range(20):  # whichever split the pair draws, it draws it together
        split = dict(zip(dataset.records["record_id"], dataset.split("patient", seed)))
        assert split["E07509"] == split["E07510"]


def test_data_info_reports_records_that_share_a_signal(cinc_with_a_duplicate, tmp_path):
    from click.testing import CliRunner

    from stence_bench.cli import cli

    registry = Registry.load(environ=BUILTINS_ONLY)
    store = tmp_path / "store"
    runner = CliRunner()
    out = runner.invoke(cli, ["data", "ingest", str(cinc_with_a_duplicate), "--layout", "cinc2021", "--store",
                              str(store)], obj=registry)
    assert out.exit_code == 0, out.output
    info = runner.invoke(cli, ["data", "info", str(store)], obj=registry)
    assert info.exit_code == 0, info.output
    assert "2 records share 1 signal(s)" in info.output and "E07509, E07510" in info.output


# -- signals of one dataset's held-out records in another's pretraining (CinC 2021 holds PTB-XL) ---------------


@pytest.fixture
def cinc_and_ptbxl(realdata, tmp_path) -> tuple[Path, Path]:
    """PTB-XL ecg_id 6000-6004 (their real database rows; 6000 and 6004 are fold 10) with their real signals,
    which CinC 2021 also publishes as HR06000-HR06004, beside a CinC folder holding those and Georgia records."""
    import pandas as pd

    cinc = tmp_path / "cinc"
    cinc.mkdir()
    for name in [*(f"HR0600{i}" for i in range(5)), *(f"E0750{i}" for i in range(5))]:
        for suffix in (".hea", ".mat"):
            shutil.copy(realdata / "cinc2021" / f"{name}{suffix}", cinc / f"{name}{suffix}")
    ptbxl = tmp_path / "ptbxl"
    database = pd.read_csv(realdata / "ptb-xl" / "ptbxl_database_extract.csv")
    database = database[database["ecg_id"].between(6000, 6004)]
    database.to_csv(ptbxl / "ptbxl_database.csv" if ptbxl.mkdir() is None else None, index=False)
    shutil.copy(realdata / "ptb-xl" / "scp_statements.csv", ptbxl / "scp_statements.csv")
    for ecg_id in range(6000, 6005):
        record, _ = read_wfdb(realdata / "cinc2021" / f"HR0{ecg_id}")
        write_wfdb(ptbxl / "records500" / "06000" / f"0{ecg_id}_hr", record.physical(), 500, record.leads)
    return cinc, ptbxl


def overlap_suite(cinc: Path, ptbxl: Path, policy: str | None, layout: str = "cinc2021") -> str:
    setting = f'\n[protocol.pretrain]\ntest_overlap = "{policy}"\nepochs = 1\nbatch_size = 4' if policy else (
        "\n[protocol.pretrain]\nepochs = 1\nbatch_size = 4")
    return f"""
name = "overlap"
tasks = ["ptbxl.superdiagnostic"]
encoders = [{{name = "resnet1d_wang", preset = "tiny"}}]
objectives = ["metric_learning"]
controls = false
{setting}
[data]
pretrain = "cinc2021"
[data.sources.cinc2021]
path = "{cinc}"
layout = "{layout}"
[data.sources.ptbxl]
path = "{ptbxl}"
"""


def test_a_pretraining_record_that_is_another_datasets_test_record_is_refused_excluded_or_flagged(
        cinc_and_ptbxl, registry, tmp_path):
    from stence_bench.protocol.data import HeldOutOverlapError

    cinc, ptbxl = cinc_and_ptbxl
    ws = Workspace(parse_suite(overlap_suite(cinc, ptbxl, None)), registry, tmp_path / "a", echo=quiet)
    train = set(ws.dataset("cinc2021").records["record_id"][ws.dataset("cinc2021").split("patient", 0) == "train"])
    test_copies = {"HR06000", "HR06004"} & train  # fold 10 in PTB-XL; pretraining only reads training records
    assert test_copies, "the situation needs a fold-10 copy in the pretraining's training split"
    with pytest.raises(HeldOutOverlapError, match=r"ptbxl\.superdiagnostic.*test_overlap"):
        ws.pretraining_records()

    ws = Workspace(parse_suite(overlap_suite(cinc, ptbxl, "exclude")), registry, tmp_path / "a", echo=quiet)
    chosen = ws.pretraining_records()
    assert set(chosen.record_ids) == train - test_copies
    assert chosen.test_overlap == {"ptbxl.superdiagnostic": len(test_copies)} and not chosen.test_overlap_kept

    ws = Workspace(parse_suite(overlap_suite(cinc, ptbxl, "allow")), registry, tmp_path / "a", echo=quiet)
    chosen = ws.pretraining_records()
    assert set(chosen.record_ids) == train and chosen.test_overlap_kept


def test_stence_bench_run_refuses_a_contaminated_pretraining_before_any_cell(cinc_and_ptbxl, tmp_path):
    from conftest import run_cli

    cinc, ptbxl = cinc_and_ptbxl
    suite = tmp_path / "overlap.toml"
    # a plain WFDB folder: nothing declares what it holds, so only the records' signals can tell
    suite.write_text(overlap_suite(cinc, ptbxl, None, layout="wfdb"))
    out = run_cli("run", str(suite), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "test_overlap" in errors[0] and "Traceback" not in out.stderr
    assert not list((tmp_path / "run").glob("results/*.json"))  # no cell ran


def test_validate_refuses_pretraining_on_a_dataset_that_republishes_a_tasks_dataset(registry, tmp_path):
    """PhysioNet/CinC 2021 contains PTB-XL's records: pretraining on it while testing on PTB-XL must say what to do
    with them (checked by signal when the run starts)."""
    from stence_bench.suite import check_names

    text = overlap_suite(tmp_path / "cinc", tmp_path / "ptbxl", None)
    problems = check_names(parse_suite(text), registry, "overlap.toml")
    assert len(problems) == 1 and "test_overlap" in problems[0] and "ptbxl.superdiagnostic" in problems[0]
    assert check_names(parse_suite(overlap_suite(tmp_path / "cinc", tmp_path / "ptbxl", "exclude")), registry) == []


# -- 5. caches and cells are keyed by everything their values depend on ---------------------------------------


PROBE_SUITE = """
name = "probe"
tasks = ["stenosis.70"]
encoders = [{name = "probe_net", preset = "tiny"}]
objectives = ["none"]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 20
[data]
synthetic = {patients = 60, seed = 3, angiograms = false}
"""


def vendor_registry(vendor: str, **contract):
    """The built-ins plus a plugin ``vendor`` registering encoder ``probe_net`` (a tiny ResNet) with ``contract``."""
    from plugin_fixtures import Plugin, encoder

    return Registry.load(extra=[Plugin(vendor, encoders=[encoder("probe_net", **contract)])], environ=BUILTINS_ONLY)


def test_another_plugins_encoder_under_the_same_name_is_another_cell_and_another_cache(tmp_path):
    """Two distributions register 'probe_net' with other input contracts (the first one uninstalled or blocked):
    same suite, same run folder. The second must not report the first one's numbers as 'finished earlier', and
    its random-init embeddings must not be the first one's cache."""
    from stence_bench.protocol.evaluate import cached_embeddings
    from stence_bench.results import read_results
    from stence_bench.protocol.runner import run_suite
    from stence_bench.suite import plan

    suite = parse_suite(PROBE_SUITE)
    first = vendor_registry("vendor_a", sampling_rate=100, window_s=2.5)
    second = vendor_registry("vendor_b", sampling_rate=50, window_s=5.0)
    (cell_a,), (cell_b,) = plan(suite, first), plan(suite, second)
    assert cell_a.key != cell_b.key

    outcomes_a = run_suite(suite, first, tmp_path, echo=quiet)
    outcomes_b = run_suite(suite, second, tmp_path, echo=quiet)
    assert [o.status for o in outcomes_a] == ["done"] and [o.status for o in outcomes_b] == ["done"]
    results = {r.key: r for r in read_results([tmp_path])}
    assert results[cell_a.key].value != results[cell_b.key].value

    task = first.tasks.get("stenosis.70")
    emb_a = cached_embeddings(cell_a, Workspace(suite, first, tmp_path, echo=quiet), first, tmp_path, task)
    emb_b = cached_embeddings(cell_b, Workspace(suite, second, tmp_path, echo=quiet), second, tmp_path, task)
    assert emb_a.shape == emb_b.shape and not np.allclose(emb_a, emb_b)


def test_a_changed_label_table_makes_finished_cells_stale(tmp_path, registry, monkeypatch):
    """Corrected labels at the same path, then a fix in the scoring code: the finished cells are run again and the
    run says why; with --reuse-stale they are kept and marked stale (the leaderboard shows it)."""
    import pandas as pd

    from stence_bench.protocol import inputs
    from stence_bench.results import read_results
    from stence_bench.protocol.runner import run_suite

    suite = parse_suite(PROBE_SUITE.replace("probe_net", "resnet1d_wang"))
    first = run_suite(suite, registry, tmp_path, echo=quiet)
    assert [o.status for o in first] == ["done"]
    before = read_results([tmp_path])[0]
    assert before.inputs["labels"] and before.inputs["code"]["scoring"] == inputs.CODE_VERSIONS["scoring"]

    lines: list[str] = []
    again = run_suite(suite, registry, tmp_path, echo=lines.append)
    assert [o.status for o in again] == ["cached"] and not any("stale" in line for line in lines)

    (path,) = tmp_path.glob("data/synthetic-*/tables/stenosis.csv")
    table = pd.read_csv(path)
    table["stenosis_pct"] = 100 - table["stenosis_pct"]  # a corrected table: other labels for the same records
    table.to_csv(path, index=False)
    lines.clear()
    rerun = run_suite(suite, registry, tmp_path, echo=lines.append)
    assert [o.status for o in rerun] == ["done"]
    assert any("1 finished cell(s) are stale" in line and "labels changed" in line for line in lines), lines
    after = read_results([tmp_path])[0]
    assert after.inputs["labels"] != before.inputs["labels"] and after.value != before.value

    monkeypatch.setitem(inputs.CODE_VERSIONS, "scoring", "999")
    lines.clear()
    kept = run_suite(suite, registry, tmp_path, echo=lines.append, reuse_stale=True)
    assert [o.status for o in kept] == ["cached"]
    assert any("code changed (scoring v" in line and "v999" in line for line in lines), lines
    (stale,) = read_results([tmp_path])
    assert stale.stale and "scoring" in stale.stale and stale.value == after.value


# -- results that can be re-scored ----------------------------------------------------------------------------


def test_every_number_can_be_recomputed_from_the_saved_predictions(tmp_path, registry):
    """Each evaluation result has its per-record predictions beside it; `results rescore` recomputes every metric
    and interval from them and agrees with the stored result, finds a tampered one, and --write mends it."""
    from click.testing import CliRunner

    from stence_bench.cli import cli
    from stence_bench.results import read_results, read_predictions, result_path, write_result
    from stence_bench.protocol.runner import run_suite

    suite = parse_suite(PROBE_SUITE.replace("probe_net", "resnet1d_wang").replace(
        'stages = ["linear_probe"]', 'stages = ["linear_probe", "finetune"]').replace(
        "[protocol]", "[protocol]\nfinetune = {max_epochs = 2, patience = 1, batch_size = 32}"))
    outcomes = run_suite(suite, registry, tmp_path, echo=quiet)
    assert [o.status for o in outcomes] == ["done", "done"]
    for r in read_results([tmp_path]):
        predictions = read_predictions(tmp_path / "results" / r.predictions)
        assert len(predictions["test_ids"]) == r.n["test"] and len(predictions["val_ids"]) == r.n["val"]
        assert predictions["test_pred"].shape == (r.n["test"], 1) and str(predictions["metric"]) == r.metric
    runner = CliRunner()
    out = runner.invoke(cli, ["results", "rescore", str(tmp_path)], obj=registry)
    assert out.exit_code == 0 and "2 result(s) rescored from their predictions: all agree" in out.output, out.output

    tampered = read_results([tmp_path])[0]
    original = tampered.value
    tampered.value = original + 0.01
    tampered.bootstrap = {**tampered.bootstrap, "values": [None if v is None else v + 0.01 for v in tampered.bootstrap["values"]]}
    write_result(tmp_path, tampered)
    out = runner.invoke(cli, ["results", "rescore", str(tmp_path)], obj=registry)
    assert out.exit_code == 1 and f"differs: {tampered.key}" in out.output and "value, bootstrap differ" in out.output
    out = runner.invoke(cli, ["results", "rescore", str(tmp_path), "--write"], obj=registry)
    assert out.exit_code == 0, out.output
    from stence_bench.results import read_result

    assert read_result(result_path(tmp_path, tampered.key)).value == original


# -- honest summaries: intervals over draws and seeds, multiplicity, rank uncertainty ---------------------------


def test_holm_adjusts_by_hand():
    from stence_bench.results.aggregate import holm

    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_two_level_bootstrap_and_p_values_by_hand():
    from stence_bench.results.aggregate import bootstrap_p_value, two_level

    one = np.array([[0.1, 0.2, 0.3]])
    assert np.array_equal(two_level(one, seed=0), one[0])
    cells = np.array([[1.0] * 4000, [3.0] * 4000])  # two draws that disagree, no patient noise
    boot = two_level(cells, seed=0)
    assert set(np.unique(boot)) == {1.0, 2.0, 3.0}  # both, or the same draw twice
    assert np.mean(boot == 2.0) == pytest.approx(0.5, abs=0.03) and np.mean(boot == 1.0) == pytest.approx(0.25, abs=0.03)
    # the draw-averaged patient bootstrap would be 2.0 on every resample: no between-draw variation at all
    assert bootstrap_p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.5)  # 2 * min(1/4, 3/4)
    assert bootstrap_p_value(np.array([1.0, 2.0])) == 0.0


def _result(task: str, objective: str, draw: int, value: float, values: list[float], fraction: float = 0.1):
    from stence_bench.results import CellResult
    from stence_bench.cells import Cell

    cell = Cell(stage="linear_probe", task=task, encoder="e", objective=objective, seed=0, fraction=fraction, draw=draw)
    return CellResult(key=f"{objective}{draw}{fraction}", cell=cell, status="done", started="", finished="", wall_s=0.0,
                      metric="auroc", value=value, bootstrap={"values": values})


def test_rows_with_several_draws_get_a_two_level_interval_holm_marks_and_the_chance_of_being_best():
    from stence_bench.results.aggregate import aggregate

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, 500)
    results = [
        _result("t", "none", 0, 0.60, list(0.60 + noise)), _result("t", "none", 1, 0.70, list(0.70 + noise)),
        _result("t", "good", 0, 0.80, list(0.80 + noise)), _result("t", "good", 1, 0.90, list(0.90 + noise)),
        _result("t", "same", 0, 0.60, list(0.60 + noise)), _result("t", "same", 1, 0.70, list(0.70 + noise)),
    ]
    rows = {r.objective: r for r in aggregate(results)}
    good, same, control = rows["good"], rows["same"], rows["none"]
    assert good.ci_kind == "cells+patients" and good.mean == pytest.approx(0.85)
    # the draws disagree by 0.1: the two-level interval holds that; the patient-only one (noise 0.01) does not
    assert good.ci_high - good.ci_low > 0.08 and good.ci_patients_high - good.ci_patients_low < 0.05
    assert good.diff == pytest.approx(0.2, abs=1e-9) and good.significant and good.p_holm == 0.0
    assert same.diff == pytest.approx(0.0, abs=1e-9) and not same.significant and same.p_holm == 1.0
    assert good.p_best == pytest.approx(1.0) and control.p_best == pytest.approx(0.0, abs=1e-9)
    assert same.p_best + control.p_best + good.p_best == pytest.approx(1.0)


def test_the_leaderboard_flags_rows_whose_pretraining_kept_test_records_and_marks_stale_cells(registry):
    """A pretraining allowed to keep a task's held-out records (test_overlap = "allow") flags its rows on that
    task's page as contaminated; a cell kept by --reuse-stale is shown stale."""
    from stence_bench.leaderboard import build
    from stence_bench.leaderboard.build import SuiteResults
    from stence_bench.results import CellResult
    from stence_bench.cells import Cell

    pre = Cell(stage="pretrain", encoder="resnet1d_wang", objective="metric_learning", seed=0)
    pretraining = CellResult(key="p", cell=pre, status="done", started="", finished="", wall_s=1.0,
                             pretrain={"test_overlap": {"stenosis.70": 3}, "test_overlap_kept": True})
    cells = [_result("stenosis.70", objective, 0, value, [value] * 20, fraction=1.0)
             for objective, value in (("none", 0.6), ("metric_learning", 0.7))]
    cells = [c.model_copy(update={"cell": c.cell.model_copy(update={"encoder": "resnet1d_wang"})}) for c in cells]
    cells[1].stale = "labels changed"
    site = build([SuiteResults(name="s", results=[pretraining, *cells])], registry)
    (page,) = site.suites[0].tasks
    rows = {r.objective: r for r in page.rows}
    assert rows["metric_learning"].contamination.status == "overlap"
    assert "kept 3 record(s)" in rows["metric_learning"].contamination.note
    assert rows["none"].contamination.status != "overlap"
    assert rows["metric_learning"].cells[0].n_stale == 1 and any("stale" in note for note in page.notes)
