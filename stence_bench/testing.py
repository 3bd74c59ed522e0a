"""Test helpers for plugin authors; pytest loads this module as a plugin (entry point ``pytest11``).

In a plugin package's tests::

    from stence_bench.testing import assert_encoder_contract

    def test_my_encoder():
        assert_encoder_contract("my_net")          # the registered name; uses the "tiny" preset if there is one
    assert_objective_contract("my_loss")       # builds it around a tiny encoder, checks loss and gradients

Fixtures: ``stence_registry`` (the registry as installed), ``ecg_batch`` (a factory of deterministic inputs
shaped by an encoder's contract). Nothing here imports torch until a helper runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .registry import Registry
from .specs import EncoderSpec, ObjectiveSpec

if TYPE_CHECKING:
    import torch


def _encoder_spec(encoder: str | EncoderSpec, registry: Registry | None) -> EncoderSpec:
    if isinstance(encoder, EncoderSpec):
        return encoder
    return (registry or Registry.load()).encoders.get(encoder)


def make_ecg_batch(spec: EncoderSpec, batch_size: int = 2, *, seed: int = 0, n_leads: int | None = None) -> torch.Tensor:
    """Deterministic float32 ``[batch_size, n_leads, n_samples]`` noise in the encoder's input shape."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    leads = len(spec.leads) if n_leads is None else n_leads
    return torch.randn(batch_size, leads, spec.n_samples, generator=generator, dtype=torch.float32)


def assert_encoder_contract(
    encoder: str | EncoderSpec,
    *,
    preset: str | None = None,
    registry: Registry | None = None,
    batch_size: int = 3,
    atol: float = 1e-4,
) -> Any:
    """Build ``encoder`` and check the module contract; returns the module.

    Checks: the factory returns a ``torch.nn.Module`` with ``embed_dim`` equal to the spec's (for the preset);
    ``forward`` maps float32 ``[B, n_leads, n_samples]`` to finite float32 ``[B, embed_dim]`` without changing its
    input; in eval mode the output is deterministic and each sample's embedding does not depend on the rest of
    the batch; two builds under the same seed give the same output; in train mode every trainable parameter
    receives a finite gradient (DistributedDataParallel needs that). ``preset`` defaults to ``"tiny"`` when the encoder has one, so tests stay fast.
    """
    import torch

    spec = _encoder_spec(encoder, registry)
    if preset is None and "tiny" in spec.presets:
        preset = "tiny"
    expected_dim = spec.preset(preset).embed_dim
    where = f"encoder {spec.name!r}" + (f" (preset {preset!r})" if preset else "")

    torch.manual_seed(0)
    module = spec.build(preset)
    assert isinstance(module, torch.nn.Module), f"{where}: factory returned {type(module).__name__}, not a torch.nn.Module"
    assert getattr(module, "embed_dim", None) == expected_dim, (
        f"{where}: module.embed_dim is {getattr(module, 'embed_dim', None)!r}, the spec says {expected_dim}"
    )

    x = make_ecg_batch(spec, batch_size)
    x_before = x.clone()
    module.eval()
    with torch.no_grad():
        try:
            y = module(x)
        except Exception as exc:  # a factory at odds with the declared contract: say which, and what it was fed
            raise AssertionError(
                f"{where}: forward failed on input {tuple(x.shape)} built from the declared contract ({len(spec.leads)} "
                f"leads {','.join(spec.leads)}, {spec.sampling_rate:g} Hz x {spec.window_s:g} s = {spec.n_samples} "
                f"samples; factory {spec.factory}): {type(exc).__name__}: {exc}"
            ) from exc
        again = module(x)
        first_alone = module(x[:1])
    assert torch.equal(x, x_before), f"{where}: forward modified its input in place"
    assert isinstance(y, torch.Tensor), f"{where}: forward returned {type(y).__name__}, not a tensor"
    want = (batch_size, expected_dim)
    assert tuple(y.shape) == want, f"{where}: forward gave shape {tuple(y.shape)} for input {tuple(x.shape)}, expected {want}"
    assert y.dtype == torch.float32, f"{where}: forward gave {y.dtype}, expected torch.float32"
    assert torch.isfinite(y).all(), f"{where}: forward gave non-finite values"
    assert torch.allclose(y, again, atol=atol), f"{where}: two forwards of the same input differ in eval mode"
    assert torch.allclose(y[:1], first_alone, atol=atol, rtol=1e-3), (
        f"{where}: in eval mode a sample's embedding depends on the other samples of its batch"
    )

    torch.manual_seed(0)
    twin = spec.build(preset).eval()
    with torch.no_grad():
        assert torch.equal(twin(x), y), f"{where}: two builds with the same seed give different outputs"

    module.train()
    module.zero_grad(set_to_none=True)
    module(x).float().pow(2).mean().backward()
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        assert param.grad is not None, f"{where}: parameter {name!r} gets no gradient (unused parameters break DDP)"
        assert torch.isfinite(param.grad).all(), f"{where}: parameter {name!r} has a non-finite gradient"
    module.eval()
    return module


_WORDS = ("sinus", "rhythm", "normal", "ecg", "inferior", "infarction", "left", "axis", "deviation", "st",
          "depression", "t", "wave", "inversion", "peaked", "low", "voltage", "bundle", "branch", "block")


def make_modality_items(modality: str, module: Any, batch_size: int, *, seed: int = 0) -> list[Any]:
    """Deterministic raw examples of a paired modality, as a data loader would hand them to ``module.collate``:
    angiogram frames (or precomputed vectors when the module has ``input_dim``), report strings, metadata rows
    with missing values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if modality == "angiography":
        if hasattr(module, "input_dim"):
            return [rng.standard_normal(module.input_dim).astype(np.float32) for _ in range(batch_size)]
        return [rng.integers(0, 256, size=(int(rng.integers(3, 7)), 32, 32), dtype=np.uint8) for _ in range(batch_size)]
    if modality == "text":
        return [" ".join(rng.choice(_WORDS, size=int(rng.integers(3, 9)))) for _ in range(batch_size)]
    if modality == "metadata":
        values = rng.standard_normal((batch_size, 6)).astype(np.float32)
        values[rng.random(values.shape) < 0.3] = np.nan
        return list(values)
    raise ValueError(f"no example items for modality {modality!r}")


def build_objective(
    objective: str | ObjectiveSpec,
    *,
    encoder: str = "resnet1d_wang",
    registry: Registry | None = None,
    batch_size: int = 8,
    n_labels: int = 4,
    seed: int = 0,
    **options: Any,
) -> tuple[Any, dict[str, Any]]:
    """Build a registered objective around ``encoder``'s tiny preset, with its modality encoders fitted on
    generated examples, and a matching batch (see :mod:`stence_bench.pretraining` for the keys)."""
    import torch

    registry = registry or Registry.load()
    spec = objective if isinstance(objective, ObjectiveSpec) else registry.objectives.get(objective)
    enc_spec = registry.encoders.get(encoder)
    torch.manual_seed(seed)
    module = enc_spec.build("tiny" if "tiny" in enc_spec.presets else None)
    generator = torch.Generator().manual_seed(seed)
    batch: dict[str, Any] = {
        "ecg": make_ecg_batch(enc_spec, batch_size, seed=seed),
        "ecg_segment": make_ecg_batch(enc_spec, batch_size, seed=seed + 1),
        "patient_id": torch.arange(batch_size) // 2,
        "labels": (torch.rand(batch_size, n_labels, generator=generator) < 0.4).float(),
        "risk": torch.rand(batch_size, generator=generator),
    }
    modality_encoders: dict[str, Any] = {}
    for modality in ("angiography", "text", "metadata"):
        if modality not in spec.modalities:
            continue
        name = spec.modality_encoders.get(modality)
        candidates = [m for m in registry.modalities if m.modality == modality]
        mod_spec = registry.modalities.get(name) if name else (candidates[0] if candidates else None)
        if mod_spec is None:
            raise AssertionError(f"objective {spec.name!r} needs {modality}, and no modality encoder is registered for it")
        mod = mod_spec.build()
        items = make_modality_items(modality, mod, batch_size, seed=seed)
        if hasattr(mod, "fit"):
            mod.fit(items)
        modality_encoders[modality] = mod
        batch[modality] = mod.collate(items)
    if "metadata" in spec.modalities and "metadata" not in batch:
        batch["metadata"] = torch.where(torch.rand(batch_size, 6, generator=generator) < 0.3, float("nan"), 0.0)
    target_columns = None
    if "targets" in spec.modalities:  # per target task: 3 columns for a multi-label task, else 1
        target_columns, parts = [], []
        for name in registry.targets_for(spec, options):
            kind = registry.tasks.get(name).task_kind if name in registry.tasks else "binary"
            width = 3 if kind == "multilabel" else 1
            target_columns.append(tuple(f"{name}:{i}" for i in range(width)))
            draw = torch.rand(batch_size, width, generator=generator)
            parts.append(5 + 30 * draw if kind == "regression" else (draw < 0.4).float())
        batch["targets"] = torch.cat(parts, dim=1)
    options = {k: v for k, v in options.items() if k != "targets"}  # read by the harness, not the factory
    built = spec.build(module, leads=enc_spec.leads, modality_encoders=modality_encoders, n_labels=n_labels,
                       target_columns=target_columns, **options)
    if getattr(built, "physical_units", False):  # the generated windows stand for millivolts: add the contract's step
        from .data.views import Standardizer
        from .data.windows import Normalizer

        scaler = Standardizer(leads=enc_spec.leads)
        for record in batch["ecg"].numpy():
            scaler.partial_fit(record)
        batch["normalize"] = Normalizer(enc_spec, scaler, [enc_spec.n_samples] * batch_size)
    return built, batch


def assert_objective_contract(objective: str | ObjectiveSpec, *, registry: Registry | None = None, **options: Any) -> Any:
    """Build ``objective`` (see :func:`build_objective`) and check the objective contract; returns it.

    Checks: ``forward(batch)`` returns an ``ObjectiveOutput`` whose loss is a finite scalar and whose logs are
    floats; backward gives finite gradients, and the encoder's parameters receive them; the same seed gives
    the same loss.
    """
    import torch

    from .pretraining import Objective, ObjectiveOutput

    registry = registry or Registry.load()
    spec = objective if isinstance(objective, ObjectiveSpec) else registry.objectives.get(objective)
    where = f"objective {spec.name!r}"
    built, batch = build_objective(spec, registry=registry, **options)
    assert isinstance(built, Objective), f"{where}: factory returned {type(built).__name__}, not an Objective"
    torch.manual_seed(1)
    out = built(batch)
    assert isinstance(out, ObjectiveOutput), f"{where}: forward returned {type(out).__name__}, not ObjectiveOutput"
    assert out.loss.ndim == 0 and torch.isfinite(out.loss), f"{where}: loss is {out.loss!r}, not a finite scalar"
    assert all(isinstance(v, float) for v in out.logs.values()), f"{where}: logs must be floats: {out.logs}"
    out.loss.backward()
    grads = [p.grad for p in built.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{where}: no gradient reaches the encoder"
    for name, param in built.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), f"{where}: parameter {name!r} has a non-finite gradient"
    again, batch = build_objective(spec, registry=registry, **options)
    torch.manual_seed(1)
    assert torch.allclose(again(batch).loss, out.loss), f"{where}: the same seed gave a different loss"
    return built


@pytest.fixture(scope="session")
def stence_registry() -> Registry:
    """The registry of the installed plugins (built-ins and entry points, as the environment allows)."""
    return Registry.load()


@pytest.fixture
def ecg_batch(stence_registry: Registry):
    """``ecg_batch(encoder, batch_size=2, seed=0)``: a deterministic input batch in the encoder's contract shape."""

    def make(encoder: str | EncoderSpec, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
        return make_ecg_batch(_encoder_spec(encoder, stence_registry), batch_size, seed=seed)

    return make
