"""In-process plugins used by the tests (a class of hookimpls is a plugin as much as a module is)."""

from __future__ import annotations

from stence_bench import EncoderPreset, EncoderSpec, ObjectiveSpec, TaskSpec, hookimpl

RESNET = "stence_bench_plugins.encoders.resnet1d:resnet1d_wang"


def encoder(name: str, **kw) -> EncoderSpec:
    fields = dict(factory=RESNET, sampling_rate=100, window_s=2.5, embed_dim=32,
                  presets={"tiny": EncoderPreset(options={"width": 16}, embed_dim=32)})
    fields.update(kw)
    return EncoderSpec(name=name, **fields)


class Plugin:
    """A plugin registering the given specs from its registration hooks; ``__name__`` names it."""

    def __init__(self, name: str, encoders=(), objectives=(), tasks=(), datasets=(), modalities=(), commands=()):
        self.__name__ = name
        self._specs = dict(encoders=encoders, objectives=objectives, tasks=tasks, datasets=datasets,
                           modalities=modalities, commands=commands)

    def _emit(self, kind, register):
        for spec in self._specs[kind]:
            register(spec)

    @hookimpl
    def register_encoders(self, register):
        self._emit("encoders", register)

    @hookimpl
    def register_objectives(self, register):
        self._emit("objectives", register)

    @hookimpl
    def register_tasks(self, register):
        self._emit("tasks", register)

    @hookimpl
    def register_datasets(self, register):
        self._emit("datasets", register)

    @hookimpl
    def register_modalities(self, register):
        self._emit("modalities", register)

    @hookimpl
    def register_commands(self, register):
        self._emit("commands", register)


def objective(name: str, **kw) -> ObjectiveSpec:
    return ObjectiveSpec(name=name, factory="torch.nn:Identity", **kw)


def task(name: str, **kw) -> TaskSpec:
    fields = dict(dataset="ptbxl", task_kind="binary", labels="stence_bench_tasks.ptbxl:label_sets", metric="auroc")
    fields.update(kw)
    return TaskSpec(name=name, **fields)


# A third-party layout, as a plugin package would ship one: text files, one lead per line of comma-separated mV.
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from stence_bench.data.layouts.base import Layout, RecordRef, Scan  # noqa: E402
from stence_bench.data.records import BadRecord, Record  # noqa: E402


class TextLayout(Layout):
    name = "text-ecg"
    fs: float = 250.0

    def scan(self, source: Path) -> Scan:
        return Scan(refs=[RecordRef(record_id=p.stem, path=str(p), files=(str(p),)) for p in sorted(source.glob("*.txt"))])

    def read(self, ref: RecordRef) -> Record:
        try:
            rows = [[float(v) for v in line.split(",")] for line in Path(ref.path).read_text().splitlines() if line]
        except ValueError as exc:
            raise BadRecord(ref.path, "not numbers", str(exc)) from None
        if len({len(r) for r in rows}) != 1:
            raise BadRecord(ref.path, "ragged leads", "leads of different lengths")
        return Record(record_id=ref.record_id, signal=np.array(rows, dtype=np.float32), fs=self.fs,
                      leads=("I", "II", "III")[: len(rows)], source=ref.path)
