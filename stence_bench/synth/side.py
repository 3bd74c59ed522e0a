"""How much the synthetic cohort's paired modalities say: a noise and a dropout knob per modality.

Every paired modality of the cohort (the machine report, the angiograms, the precomputed angiography embeddings,
the clinical metadata, the SCORE2-style risk) is generated from the same patient latents as the labels, so each
carries label information of its own (docs/synthetic.md, "Side information", measures how much). A suite (or
``stence-bench data synth --side``) turns each down to make cross-modal pretraining harder, for example::

    [data]
    synthetic = { patients = 400, side = { report = { dropout = 0.5 }, angiography_embeddings = { noise = 1 } } }

- ``noise`` (0 to 1): the share of patients (of ECGs, for the report) whose modality is another patient's, drawn at
  random from the whole cohort (a mismatched pair); 1 makes the modality independent of the patient and so of every
  label, while keeping its distribution.
- ``dropout`` (0 to 1): the share of the modality left out: each statement of a report, each value of the metadata
  (on top of the values a registry misses anyway), each patient's risk, angiogram or embedding row.

Both default to 0: the cohort as generated, bit for bit, under the same folder name. A cohort with another setting
is another cohort: :meth:`SideInformation.key` names it (the run folder's cohort and its stores), and the suite's
data section, with its ``side`` table, is part of every cell's key.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import ConfigDict, Field

from ..errors import StenceBenchError
from ..hashing import digest
from ..specs import OmitWhenDefault

#: The paired modalities with a knob, in the order docs/synthetic.md describes them.
MODALITIES: tuple[str, ...] = ("report", "angiography", "angiography_embeddings", "metadata", "risk")

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class Knob(OmitWhenDefault):
    """One modality's knob: ``noise`` (share of mismatched patients) and ``dropout`` (share left out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    noise: Share = 0.0
    dropout: Share = 0.0

    _omit_when_default: ClassVar[tuple[str, ...]] = ("noise", "dropout")

    @property
    def is_default(self) -> bool:
        return self.noise == 0.0 and self.dropout == 0.0


class SideInformation(OmitWhenDefault):
    """The knobs of the cohort's paired modalities (default: the cohort as generated)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    report: Knob = Knob()
    angiography: Knob = Knob()
    angiography_embeddings: Knob = Knob()
    metadata: Knob = Knob()
    risk: Knob = Knob()

    _omit_when_default: ClassVar[tuple[str, ...]] = MODALITIES

    @property
    def is_default(self) -> bool:
        return all(getattr(self, m).is_default for m in MODALITIES)

    def key(self) -> str:
        """``""`` for the defaults (the cohort's folder name unchanged), else a short hash of the knobs that are set
        (``side-0123abcd``)."""
        return "" if self.is_default else f"side-{digest(self.model_dump(mode='json'), 8)}"

    def summary(self) -> dict[str, dict[str, float]]:
        """The knobs that are set, by modality (for ``cohort.json``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_assignments(cls, assignments: list[str] | tuple[str, ...]) -> SideInformation:
        """From ``MODALITY.KNOB=VALUE`` strings (the ``--side`` option): ``report.dropout=1``."""
        values: dict[str, dict[str, float]] = {}
        for text in assignments:
            name, sep, value = text.partition("=")
            modality, dot, knob = name.strip().partition(".")
            if not sep or not dot:
                raise StenceBenchError(f"--side {text!r}: write MODALITY.KNOB=VALUE, such as report.dropout=0.5")
            if modality not in MODALITIES:
                raise StenceBenchError(f"--side {text!r}: unknown modality {modality!r} (known: {', '.join(MODALITIES)})")
            if knob not in Knob.model_fields:
                raise StenceBenchError(f"--side {text!r}: unknown knob {knob!r} (known: noise, dropout)")
            try:
                number = float(value)
            except ValueError:
                raise StenceBenchError(f"--side {text!r}: {value!r} is not a number") from None
            if not 0.0 <= number <= 1.0:
                raise StenceBenchError(f"--side {text!r}: {knob} is a share, between 0 and 1")
            values.setdefault(modality, {})[knob] = number
        return cls.model_validate(values)
