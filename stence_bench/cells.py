"""Cells: the units of work a suite is planned into (:func:`stence_bench.suite.plan`), and how each ended.

A :class:`Cell` is a resolved config (stage, task, encoder, objective, seed, fraction, draw, leads, the specs'
fingerprints, the protocol settings and data it depends on); its key is the hash of that config. This module sits
below the plugin contract (:mod:`stence_bench.hookspecs` types its observers with these models) and imports neither
the registry nor the suite's planner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, JsonValue, StringConstraints

from .hashing import digest
from .specs import OmitWhenDefault, WeightsLayout

#: ``all`` (the encoder's own leads), or lead names joined by ``+``: ``I`` (lead I alone), ``I+II``, ``II+V5``.
LeadSet = Annotated[str, StringConstraints(pattern=r"^(all|[A-Za-z0-9]+(\+[A-Za-z0-9]+)*)$")]


class _Model(OmitWhenDefault):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CellWeights(_Model):
    """The given weights of a cell's encoder entry: the file's sha256 and how its tensors map onto the encoder (in
    the key), and where the file is (``path``: provenance, left out of the key, so a moved file is the same cell)."""

    path: str
    sha256: str
    prefix: str = ""
    ignore: tuple[str, ...] = ()
    rename: dict[str, str] = {}
    strict: bool = True

    @property
    def file(self) -> str:
        return Path(self.path).name

    def layout(self) -> WeightsLayout:
        return WeightsLayout(prefix=self.prefix, ignore=self.ignore, rename=self.rename)

    def identity(self) -> dict[str, Any]:
        """What the weights are, wherever the file lies: everything but the path."""
        return self.model_dump(mode="json", exclude={"path"})


class Cell(_Model):
    """One unit of work. ``pretrain`` cells make checkpoints; the others evaluate one on one task."""

    stage: Literal["pretrain", "linear_probe", "finetune", "zero_shot"]
    task: str | None = None
    encoder: str
    preset: str | None = None
    encoder_options: dict[str, JsonValue] = {}
    objective: str
    objective_options: dict[str, JsonValue] = {}
    seed: int
    fraction: float | None = None
    draw: int | None = None
    leads: LeadSet = "all"
    #: Versions of the specs involved (encoder, objective, task): a new version is a new cell.
    versions: dict[str, str] = {}
    #: Fingerprints of the specs' content and origin (:meth:`Registry.fingerprint`): the encoder, the objective
    #: and the modality encoders it pairs with, the task. Another plugin's spec under the same name is another cell.
    specs: dict[str, str] = {}
    #: The protocol settings the cell's numbers depend on (training, probe, bootstrap, split seed).
    settings: dict[str, JsonValue] = {}
    #: The suite's data section (which cohort or sources).
    data: dict[str, JsonValue] = {}
    #: The encoder entry's given weights (``weights =`` in the suite): loaded by every objective but the random-init
    #: control, whose cells name them only to sit beside them (:attr:`ObjectiveSpec.loads_weights`).
    weights: CellWeights | None = None
    #: External validation: the dataset tested on (trained and tuned on the task's own); None: the task's own test
    #: split.
    test_dataset: str | None = None

    _omit_when_default: ClassVar[tuple[str, ...]] = ("weights", "test_dataset")

    def pretrain_cell(self) -> Cell | None:
        """The pretraining cell whose checkpoint this evaluation starts from (``None`` without pretraining)."""
        if self.stage == "pretrain" or "pretrain" not in self.settings:
            return None
        return Cell(stage="pretrain", encoder=self.encoder, preset=self.preset, encoder_options=self.encoder_options,
                    objective=self.objective, objective_options=self.objective_options, seed=self.seed,
                    versions={k: v for k, v in self.versions.items() if k in ("encoder", "objective")},
                    specs={k: v for k, v in self.specs.items() if k != "task"},
                    settings={k: v for k, v in self.settings.items() if k in ("pretrain", "split_seed")},
                    data=self.data, weights=self.weights)

    @property
    def label(self) -> str:
        """A short human description: ``stage task encoder[preset] objective f=0.1 d=0 seed 0``."""
        enc = self.encoder if self.preset is None else f"{self.encoder}[{self.preset}]"
        if self.weights is not None:
            enc += f" @ {self.weights.file}"
        parts = [self.stage, *([self.task] if self.task else []), enc, self.objective]
        if self.fraction is not None:
            parts.append(f"f={self.fraction:g} d={self.draw}")
        parts.append(f"seed {self.seed}" + ("" if self.leads == "all" else f" lead {self.leads}"))
        if self.test_dataset is not None:
            parts.append(f"tested on {self.test_dataset}")
        return " ".join(parts)

    @property
    def key(self) -> str:
        """The hash of the resolved config: equal configs, equal keys (a weights file's path left out: its hash
        is in)."""
        return digest(self.model_dump(mode="json", exclude={"weights": {"path"}}))


class CellOutcome(_Model):
    """How a cell ended, as reported to the ``cell_finished`` and ``run_finished`` observers."""

    key: str
    status: Literal["done", "cached", "failed"]
    wall_s: float = 0.0
    result_path: str | None = None
    error: str | None = None
