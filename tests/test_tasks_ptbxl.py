"""PTB-XL label sets against the real statement table and records in ../shared/realdata."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import BUILTINS_ONLY
from stence_bench_tasks import ptbxl

from stence_bench.registry import Registry
from stence_bench.specs import import_object


@pytest.fixture
def tables(realdata):
    statements = pd.read_csv(realdata / "ptb-xl" / "scp_statements.csv", index_col=0)
    records = pd.read_csv(realdata / "ptb-xl" / "ptbxl_database_extract.csv", index_col="ecg_id")
    return records, statements


def test_class_counts_match_the_ptbxl_benchmark(tables):
    _, statements = tables
    counts = {level: len(ptbxl.classes(statements, level)) for level in ptbxl.LEVELS}
    assert counts == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
    assert ptbxl.classes(statements, "superdiagnostic") == ["CD", "HYP", "MI", "NORM", "STTC"]


def test_label_sets_of_real_records(tables):
    records, statements = tables
    assert ptbxl.label_sets(records, statements, level="all")[1] == ("LVOLT", "NORM", "SR")
    superdiag = ptbxl.label_sets(records, statements, level="superdiagnostic")
    assert superdiag[6001] == ("STTC",) and superdiag[6002] == ("CD", "NORM")
    form = ptbxl.label_sets(records, statements, level="form")
    assert form.to_dict() == {1: ("LVOLT",), 6000: ("NT_",), 6001: ("NST_",)}  # records without form dropped
    assert ptbxl.label_sets(records, statements, level="rhythm")[6003] == ("STACH",)


def test_registered_tasks_point_at_the_label_function_and_card(tables):
    records, statements = tables
    registry = Registry.load(environ=BUILTINS_ONLY)
    spec = registry.tasks.get("ptbxl.subdiagnostic")
    labels = import_object(spec.labels, what="task")(records, statements, **spec.options)
    assert labels[6002] == ("IRBBB", "NORM")
    package, _, card = spec.card.partition(":")
    from importlib.resources import files

    assert "PTB-XL" in files(package).joinpath(card).read_text()


def test_bad_inputs_name_what_is_wrong(tables):
    records, statements = tables
    with pytest.raises(ValueError, match="unknown PTB-XL label level 'super'"):
        ptbxl.label_sets(records, statements, level="super")
    with pytest.raises(ValueError, match="lacks column 'scp_codes'"):
        ptbxl.label_sets(records.drop(columns="scp_codes"), statements, level="all")
    with pytest.raises(ValueError, match="lacks column\\(s\\) diagnostic_class"):
        ptbxl.statement_map(statements.drop(columns="diagnostic_class"), "form")


# -- the label function the tasks name: a TaskSource in, a multi-hot frame out ---------------------------------


@pytest.fixture
def source(realdata):
    """The TaskSource the runner builds for a PTB-XL store: the layout's records and its two tables."""
    from stence_bench.data.layouts.ptbxl import PtbxlLayout
    from stence_bench.task_data import TaskSource

    scan = PtbxlLayout(rate=100, database="ptbxl_database_extract.csv").scan(realdata / "ptb-xl")
    records = pd.DataFrame([{"record_id": r.record_id, "patient_id": r.patient_id, "time": r.time or "",
                             "meta": r.meta} for r in scan.refs])
    return TaskSource("ptbxl", records, scan.tables)


def test_ptbxl_labels_is_the_multi_hot_form_of_label_sets(source, tables):
    records, statements = tables
    for level in ptbxl.LEVELS:
        frame = ptbxl.ptbxl_labels(source, level=level)
        assert list(frame.columns) == ptbxl.classes(statements, level)  # the fixed vocabulary, every class
        assert frame.index.name == "record_id" and (frame.dtypes == "float64").all()
        sets = ptbxl.label_sets(records, statements, level=level)
        assert list(frame.index) == [str(i) for i in sets.index]
        for ecg_id, labels in sets.items():
            row = frame.loc[str(ecg_id)]
            assert tuple(row.index[row == 1]) == labels and row.sum() == len(labels)
    assert list(ptbxl.ptbxl_labels(source, level="form").index) == ["1", "6000", "6001"]


def test_ptbxl_labels_through_the_registered_spec_keeps_only_the_sources_records(source):
    registry = Registry.load(environ=BUILTINS_ONLY)
    spec = registry.tasks.get("ptbxl.superdiagnostic")
    assert spec.labels == "stence_bench_tasks.ptbxl:ptbxl_labels"
    from stence_bench.task_data import TaskSource

    subset = TaskSource("ptbxl", source.records[source.records["record_id"].isin(["6001", "6002"])],
                        {name: source.table(name) for name in source.table_names})
    frame = import_object(spec.labels, what="task")(subset, **spec.options)
    assert frame.to_dict("index") == {"6001": {"CD": 0.0, "HYP": 0.0, "MI": 0.0, "NORM": 0.0, "STTC": 1.0},
                                      "6002": {"CD": 1.0, "HYP": 0.0, "MI": 0.0, "NORM": 1.0, "STTC": 0.0}}
    for column in spec.source_columns:
        table, _, name = column.partition(".")
        assert name in source.table(table).columns, column


def test_ptbxl_labels_names_a_missing_table_or_column(source):
    from stence_bench.task_data import TaskDataError, TaskSource

    no_statements = TaskSource("ptbxl", source.records, {"ptbxl_database": source.table("ptbxl_database")})
    with pytest.raises(TaskDataError, match="dataset 'ptbxl': needs table 'scp_statements'.*it has: ptbxl_database"):
        ptbxl.ptbxl_labels(no_statements, level="all")
    no_codes = TaskSource("ptbxl", source.records, {"ptbxl_database": source.table("ptbxl_database").drop(columns="scp_codes"),
                                                     "scp_statements": source.table("scp_statements")})
    with pytest.raises(TaskDataError, match="table 'ptbxl_database' lacks column\\(s\\) scp_codes"):
        ptbxl.ptbxl_labels(no_codes, level="all")
    no_class = TaskSource("ptbxl", source.records, {"ptbxl_database": source.table("ptbxl_database"),
                                                     "scp_statements": source.table("scp_statements").drop(columns="diagnostic_class")})
    with pytest.raises(TaskDataError, match="table 'scp_statements' lacks column\\(s\\) diagnostic_class"):
        ptbxl.ptbxl_labels(no_class, level="superdiagnostic")
