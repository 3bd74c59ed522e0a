"""Clinical metadata encoder: standardised fields, missing values filled and flagged, then an MLP.

Input: one 1-D float array per example (age, sex, BMI, blood pressure, ...), ``NaN`` where a value is missing
(infinite values count as missing too). :meth:`MetadataMLP.fit` learns each field's mean and standard deviation from
the training rows, ignoring missing values (a field never observed gets mean 0 and std 1, a constant field std 1).
``forward`` standardises, clips to ``[-clip, clip]``, puts the fill where a value is missing (0, the training mean, or
a learned value per field with ``fill = "learned"``) and concatenates the missingness mask, so the MLP sees
``[z, missing]`` of width ``2 * n_fields``: a missing value's stored number never reaches the network, and a row with
every field missing still gives a finite embedding.

``n_fields`` may be given, or learned by ``fit`` (which then creates the MLP: build the optimizer after ``fit``).
The statistics and ``n_fields`` are the module's extra state (plain lists), so ``load_state_dict`` into a module
built with the same options, even one without ``n_fields``, restores it exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["MetadataMLP", "metadata_mlp"]


class MetadataMLP(nn.Module):
    """``forward`` maps float ``[B, n_fields]`` (NaN = missing), or ``{"values", "missing"}``, to ``[B, embed_dim]``."""

    mean: torch.Tensor | None
    std: torch.Tensor | None

    def __init__(self, *, n_fields: int | None = None, hidden: int = 64, layers: int = 2, embed_dim: int = 32,
                 fill: str = "zero", dropout: float = 0.0, clip: float | None = 10.0):
        super().__init__()
        if fill not in ("zero", "learned"):
            raise ValueError(f"metadata_mlp: fill must be 'zero' or 'learned', not {fill!r}")
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"metadata_mlp: layers must be an integer >= 1, not {layers!r}")
        self.hidden, self.layers, self.embed_dim = hidden, layers, embed_dim
        self.fill, self.dropout, self.clip = fill, dropout, clip
        self.n_fields: int | None = None
        self.fitted = False
        self.mlp: nn.Module | None = None
        self.fill_value: nn.Parameter | None = None
        self.register_buffer("mean", None, persistent=False)
        self.register_buffer("std", None, persistent=False)
        if n_fields is not None:
            self._build(n_fields)

    def _build(self, n_fields: int) -> None:
        if not isinstance(n_fields, int) or n_fields < 1:
            raise ValueError(f"metadata_mlp: n_fields must be a positive integer, not {n_fields!r}")
        self.n_fields = n_fields
        self.mean = torch.zeros(n_fields)
        self.std = torch.ones(n_fields)
        if self.fill == "learned":
            self.fill_value = nn.Parameter(torch.zeros(n_fields))
        blocks: list[nn.Module] = []
        width = 2 * n_fields
        for _ in range(self.layers - 1):
            blocks += [nn.Linear(width, self.hidden), nn.GELU(), nn.Dropout(self.dropout)]
            width = self.hidden
        blocks.append(nn.Linear(width, self.embed_dim))
        self.mlp = nn.Sequential(*blocks)

    def _set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        device = self.mean.device if self.mean is not None else torch.device("cpu")
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=device)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=device)

    # -- data --------------------------------------------------------------------------------------------------

    def _rows(self, items: Sequence[Any]) -> np.ndarray:
        if len(items) == 0:
            raise ValueError("metadata_mlp: needs at least one row")
        rows = []
        for i, item in enumerate(items):
            v = np.asarray(item, dtype=np.float64)
            if v.ndim != 1:
                raise ValueError(f"metadata_mlp: item {i} has shape {v.shape}; expected a 1-D array of fields")
            expected = self.n_fields if self.n_fields is not None else (rows[0].shape[0] if rows else v.shape[0])
            if v.shape[0] != expected:
                raise ValueError(f"metadata_mlp: item {i} has {v.shape[0]} fields, expected n_fields={expected}")
            rows.append(v)
        x = np.stack(rows)
        x[~np.isfinite(x)] = np.nan
        return x

    def fit(self, items: Sequence[Any]) -> None:
        """Learn each field's mean and std from the training rows (NaN ignored); sets ``n_fields`` if unknown."""
        x = self._rows(items)
        if self.n_fields is None:
            self._build(int(x.shape[1]))
        with warnings.catch_warnings():  # a field missing in every row: "Mean of empty slice"
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self._set_stats(mean.tolist(), std.tolist())
        self.fitted = True

    def collate(self, items: Sequence[Any]) -> torch.Tensor:
        """Rows as float32 ``[B, n_fields]``, NaN where missing."""
        return torch.from_numpy(self._rows(items).astype(np.float32))

    # -- state -------------------------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        stats = self.mean is not None and self.std is not None
        return {"format": 1, "n_fields": self.n_fields, "fitted": self.fitted,
                "mean": self.mean.tolist() if stats else None, "std": self.std.tolist() if stats else None}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError(f"metadata_mlp: unrecognised extra state {type(state).__name__}")
        if state["n_fields"] != self.n_fields:
            raise ValueError(f"metadata_mlp: the state is for n_fields={state['n_fields']}, this module has "
                             f"n_fields={self.n_fields}")
        if state["mean"] is not None:
            self._set_stats(state["mean"], state["std"])
        self.fitted = bool(state["fitted"])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Build the MLP before torch loads the parameters (and, after this, the children) when fit made it.
        extra = state_dict.get(prefix + "_extra_state")
        if self.n_fields is None and isinstance(extra, dict) and isinstance(extra.get("n_fields"), int):
            self._build(extra["n_fields"])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- forward -----------------------------------------------------------------------------------------------

    def forward(self, batch: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.mlp is None or self.mean is None or self.std is None:
            raise RuntimeError("metadata_mlp: the number of fields is unknown; give option n_fields or call "
                               "fit(train_rows) first")
        if isinstance(batch, Mapping):
            values = batch["values"].float()
            missing = batch["missing"].bool() | ~torch.isfinite(values)
        else:
            values = batch.float()
            missing = ~torch.isfinite(values)
        if values.ndim != 2 or values.shape[1] != self.n_fields:
            raise ValueError(f"metadata_mlp: expected [B, {self.n_fields}], got {tuple(values.shape)}")
        z = (values - self.mean) / self.std
        if self.clip is not None:
            z = z.clamp(-self.clip, self.clip)
        fill = self.fill_value.expand_as(z) if self.fill_value is not None else torch.zeros_like(z)
        z = torch.where(missing, fill, z)
        return self.mlp(torch.cat([z, missing.to(z.dtype)], dim=-1))


def metadata_mlp(**options: Any) -> MetadataMLP:
    """Factory of the ``metadata_mlp`` modality (options: n_fields, hidden, layers, embed_dim, fill, dropout, clip)."""
    return MetadataMLP(**options)
