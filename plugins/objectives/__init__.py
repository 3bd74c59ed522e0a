"""Built-in pretraining objectives. Registration only: the losses live in sibling modules."""

from __future__ import annotations

from stence_bench import ObjectiveSpec, hookimpl


@hookimpl
def register_objectives(register):
    register(
        ObjectiveSpec(
            name="none",
            description="random initialisation, no pretraining: the control every matrix includes",
            factory=None,
            modalities=("ecg",),
            control=True,
            citation="Evaluation of ECG Representations Must Be Fixed (ICML 2026 position paper)",
        )
    )
