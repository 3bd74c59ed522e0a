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
