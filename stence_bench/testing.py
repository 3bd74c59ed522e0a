"""Test helpers for plugin authors; pytest loads this module as a plugin (entry point ``pytest11``).

In a plugin package's tests::

    from stence_bench.testing import assert_encoder_contract

    def test_my_encoder():
        assert_encoder_contract("my_net")          # the registered name; uses the "tiny" preset if there is one

Fixtures: ``stence_registry`` (the registry as installed), ``ecg_batch`` (a factory of deterministic inputs
shaped by an encoder's contract). Nothing here imports torch until a helper runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .registry import Registry
from .specs import EncoderSpec

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
    the batch; in train mode every trainable parameter receives a finite gradient (DistributedDataParallel
    needs that). ``preset`` defaults to ``"tiny"`` when the encoder has one, so tests stay fast.
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
        y = module(x)
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
