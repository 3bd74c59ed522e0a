"""PTB-XL label sets against the real statement table and records in ../shared/realdata."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import BUILTINS_ONLY

from stence_bench.registry import Registry
from stence_bench.specs import import_object
from stence_bench_tasks import ptbxl


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
