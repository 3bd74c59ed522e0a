"""Angiography encoders: a small per-frame 2-D CNN over X-ray angiograms, and a pass-through for precomputed embeddings.

``angio_cnn``: :meth:`AngioCNN.collate` turns each angiogram (``[frames, rows, cols]``, any length and size) into a
fixed ``[frames, 1, size, size]`` float tensor in [0, 1]: ``frames`` frames sampled evenly over the run (repeated when
the run is shorter), each resized (bilinear, antialiased) to ``size`` x ``size``. Intensities are divided by the
largest value of the pixel type's bit depth: 255 for 8 bits; for wider integers ``2**bits - 1`` with ``bits`` the
option when given, else the smallest depth (at least 8) that holds the run's largest value, so a 10-bit angiogram
stored in ``uint16`` is divided by 1023 (an :class:`~stence_bench.data.dicom.Angiogram` brings its own
``bits_stored``); float arrays already in [0, 1] are kept, others divided by their maximum. A 2-D CNN (3x3
convolutions, GroupNorm: no batch statistics) embeds every frame, the frame features are averaged (``temporal =
"mean"``) or attention-pooled over time with a learned position per sampled frame (``"attention"``), and a linear
layer maps them to ``embed_dim``.

``angio_embedding``: the embeddings are computed elsewhere (one vector per study, as StenCE uses); ``collate``
stacks them, checking their length, and ``forward`` is the identity or a linear projection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AngioCNN", "AngioEmbedding", "angio_cnn", "angio_embedding"]


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _conv_block(in_channels: int, channels: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False), _group_norm(channels),
            nn.ReLU(inplace=True)]


class AngioCNN(nn.Module):
    """Per-frame 2-D CNN with temporal pooling; ``forward`` maps ``[B, frames, 1, size, size]`` to ``[B, embed_dim]``."""

    def __init__(self, *, size: int = 64, frames: int = 8, widths: Sequence[int] = (16, 32, 64), embed_dim: int = 64,
                 temporal: str = "mean", bits: int | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"angio_cnn: size must be an integer >= 8, not {size!r}")
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"angio_cnn: frames must be an integer >= 1, not {frames!r}")
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"angio_cnn: widths must be positive integers, not {widths!r}")
        if temporal not in ("mean", "attention"):
            raise ValueError(f"angio_cnn: temporal must be 'mean' or 'attention', not {temporal!r}")
        if bits is not None and not (isinstance(bits, int) and 1 <= bits <= 32):
            raise ValueError(f"angio_cnn: bits must be an integer in 1..32 or None, not {bits!r}")
        self.size, self.frames, self.temporal, self.bits = size, frames, temporal, bits
        layers: list[nn.Module] = _conv_block(1, widths[0], 2)
        in_channels = widths[0]
        for width in widths:
            layers += _conv_block(in_channels, width, 2) + _conv_block(width, width, 1)
            in_channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.frame_encoder = nn.Sequential(*layers)
        if temporal == "attention":
            self.frame_position = nn.Parameter(torch.zeros(frames, in_channels))
            nn.init.normal_(self.frame_position, std=0.02)
            self.attention = nn.Linear(in_channels, 1)
        self.head = nn.Sequential(nn.LayerNorm(in_channels), nn.Dropout(dropout), nn.Linear(in_channels, embed_dim))
        self.embed_dim = embed_dim

    # -- collate -------------------------------------------------------------------------------------------------

    def prepare(self, item: Any) -> torch.Tensor:
        """One angiogram as float32 ``[frames, 1, size, size]`` in [0, 1]."""
        bits = self.bits
        if hasattr(item, "frames"):  # an Angiogram
            bits = bits or getattr(item, "bits_stored", None)
            item = item.frames
        arr = np.asarray(item)
        if arr.ndim == 4 and arr.shape[-1] in (3, 4):  # colour: mean of R, G, B
            grey = arr[..., :3].mean(axis=-1)
            arr = grey if arr.dtype.kind == "f" else np.rint(grey).astype(arr.dtype)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or min(arr.shape) < 1:
            raise ValueError(f"angio_cnn: expected frames [n_frames, rows, cols], got an array of shape {arr.shape}")
        idx = np.linspace(0, arr.shape[0] - 1, self.frames).round().astype(np.int64)
        x = torch.from_numpy(self._scale(arr, bits)[idx]).unsqueeze(1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return x.clamp_(0.0, 1.0)

    @staticmethod
    def _scale(arr: np.ndarray, bits: int | None) -> np.ndarray:
        if arr.dtype.kind in "ui":
            if bits is None:
                bits = 8 if arr.dtype.itemsize == 1 else max(8, int(max(arr.max(), 0)).bit_length())
            return (arr.astype(np.float32) / np.float32(2**bits - 1)).clip(0.0, 1.0)
        if arr.dtype.kind == "b":
            return arr.astype(np.float32)
        if arr.dtype.kind != "f":
            raise ValueError(f"angio_cnn: frames must be numbers, not {arr.dtype}")
        out = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(out.max())
        return (out / top if top > 1.0 else out).clip(0.0, 1.0)

    def collate(self, items: Sequence[Any]) -> torch.Tensor:
        """Angiograms of any frame count and size as float32 ``[B, frames, 1, size, size]``."""
        if len(items) == 0:
            raise ValueError("angio_cnn: collate needs at least one angiogram")
        return torch.stack([self.prepare(item) for item in items])

    def fit(self, items: Sequence[Any]) -> None:
        """Nothing to learn from the data before training."""

    # -- forward -------------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.frames or x.shape[2] != 1:
            raise ValueError(f"angio_cnn: expected [B, {self.frames}, 1, H, W] from collate, got {tuple(x.shape)}")
        b, t = x.shape[:2]
        h = self.frame_encoder(((x.float() - 0.5) / 0.25).flatten(0, 1)).view(b, t, -1)
        if self.temporal == "attention":
            h = h + self.frame_position
            weights = torch.softmax(self.attention(h), dim=1)  # [B, T, 1]
            pooled = (weights * h).sum(dim=1)
        else:
            pooled = h.mean(dim=1)
        return self.head(pooled)


class AngioEmbedding(nn.Module):
    """Precomputed angiography embeddings: identity when ``embed_dim == input_dim``, else a linear projection."""

    def __init__(self, *, input_dim: int, embed_dim: int | None = None, project: bool | None = None):
        super().__init__()
        if not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"angio_embedding: input_dim must be a positive integer, not {input_dim!r}")
        embed_dim = input_dim if embed_dim is None else embed_dim
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"angio_embedding: embed_dim must be a positive integer, not {embed_dim!r}")
        if project is None:
            project = embed_dim != input_dim
        elif not project and embed_dim != input_dim:
            raise ValueError(f"angio_embedding: project=False needs embed_dim == input_dim, "
                             f"got embed_dim={embed_dim}, input_dim={input_dim}")
        self.input_dim, self.embed_dim = input_dim, embed_dim
        self.proj: nn.Module = nn.Linear(input_dim, embed_dim) if project else nn.Identity()

    def collate(self, items: Sequence[Any]) -> torch.Tensor:
        """1-D vectors of length ``input_dim`` stacked as float32 ``[B, input_dim]``."""
        if len(items) == 0:
            raise ValueError("angio_embedding: collate needs at least one embedding")
        rows = []
        for i, item in enumerate(items):
            v = np.asarray(item.detach().cpu() if isinstance(item, torch.Tensor) else item, dtype=np.float32)
            if v.ndim != 1:
                raise ValueError(f"angio_embedding: item {i} has shape {v.shape}; expected a 1-D vector of length "
                                 f"input_dim={self.input_dim}")
            if v.shape[0] != self.input_dim:
                raise ValueError(f"angio_embedding: item {i} has length {v.shape[0]}, expected input_dim="
                                 f"{self.input_dim}")
            if not np.isfinite(v).all():
                raise ValueError(f"angio_embedding: item {i} has non-finite values")
            rows.append(v)
        return torch.from_numpy(np.stack(rows))

    def fit(self, items: Sequence[Any]) -> None:
        """Nothing to learn from the data before training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"angio_embedding: expected [B, {self.input_dim}], got {tuple(x.shape)}")
        return self.proj(x.float())


def angio_cnn(**options: Any) -> AngioCNN:
    """Factory of the ``angio_cnn`` modality (options: size, frames, widths, embed_dim, temporal, bits, dropout)."""
    if "widths" in options:
        options["widths"] = tuple(options["widths"])
    return AngioCNN(**options)


def angio_embedding(**options: Any) -> AngioEmbedding:
    """Factory of the ``angio_embedding`` modality (options: input_dim, embed_dim, project)."""
    return AngioEmbedding(**options)
