"""Report-text encoders: a small transformer trained from scratch on a learned word vocabulary, and a frozen
sentence-transformers model loaded from a local directory.

``text_transformer``: :meth:`TextTransformer.fit` learns the vocabulary from the training reports with
scikit-learn's ``CountVectorizer`` (its word analyzer tokenises: lower-cased, ``token_pattern`` words; its
``vocabulary_`` keeps the ``max_features`` most frequent words seen in at least ``min_df`` reports). Ids:
``[PAD] = 0``, ``[UNK] = 1``, ``[CLS] = 2``, then the words in the vectorizer's (alphabetical) order. The embedding
table always has ``max_features + 3`` rows, so the parameters' shapes do not depend on the data and an optimizer
may be built before or after ``fit``; the vocabulary itself is the module's extra state (a list of strings).
:meth:`TextTransformer.collate` gives ``{"ids": int64 [B, L], "mask": bool [B, L]}`` (``[CLS]`` first, truncated to
``max_length`` tokens, padded to the longest in the batch; ``mask`` is True on real tokens). The encoder is a
pre-norm ``nn.TransformerEncoder`` with learned positions, then masked-mean (or ``[CLS]``) pooling.

``text_sentence``: a frozen sentence-transformers model; nothing is downloaded, ever: ``model_path`` must be a local
model directory, and it is loaded with ``local_files_only`` (and ``HF_HUB_OFFLINE=1`` unless already set).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stence_bench.errors import StenceBenchError
from stence_bench.extras import install_hint

__all__ = ["CLS", "PAD", "SPECIAL_TOKENS", "UNK", "SentenceEncoder", "SentenceModelUnavailable", "TextTransformer",
           "text_sentence", "text_transformer"]

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]")
PAD, UNK, CLS = 0, 1, 2
#: Words of one or more letters or digits (scikit-learn's default drops one-character words such as "a", "v").
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w+\b"


def _text(item: Any, index: int, who: str) -> str:
    if item is None:
        return ""
    if not isinstance(item, str):
        raise TypeError(f"{who}: item {index} is {type(item).__name__}, expected a str (None for no report)")
    return item


class TextTransformer(nn.Module):
    """Word-level transformer encoder; ``forward({"ids", "mask"})`` returns ``[B, embed_dim]``."""

    def __init__(self, *, max_features: int = 2000, min_df: float = 1, max_df: float = 1.0,
                 lowercase: bool = True, token_pattern: str = DEFAULT_TOKEN_PATTERN, max_length: int = 64,
                 width: int = 64, layers: int = 2, heads: int = 4, feedforward: int | None = None,
                 dropout: float = 0.1, embed_dim: int = 64, pooling: str = "mean"):
        super().__init__()
        if not isinstance(max_features, int) or max_features < 1:
            raise ValueError(f"text_transformer: max_features must be a positive integer, not {max_features!r}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"text_transformer: max_length must be an integer >= 2 ([CLS] and a word), not {max_length!r}")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"text_transformer: pooling must be 'mean' or 'cls', not {pooling!r}")
        if width % heads:
            raise ValueError(f"text_transformer: width {width} is not divisible by heads {heads}")
        self.max_features, self.min_df, self.max_df = max_features, min_df, max_df
        self.lowercase, self.token_pattern = lowercase, token_pattern
        self.max_length, self.pooling, self.embed_dim = max_length, pooling, embed_dim
        self.vocabulary: list[str] | None = None
        self._index: dict[str, int] = {}
        self._analyzer: Any = None

        self.token_embedding = nn.Embedding(max_features + len(SPECIAL_TOKENS), width, padding_idx=PAD)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        with torch.no_grad():
            self.token_embedding.weight[PAD].zero_()
        self.position = nn.Parameter(torch.zeros(max_length, width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, feedforward or 2 * width, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj: nn.Module = nn.Identity() if embed_dim == width else nn.Linear(width, embed_dim)

    # -- vocabulary --------------------------------------------------------------------------------------------

    def _vectorizer(self, **fit_options: Any) -> Any:
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(lowercase=self.lowercase, token_pattern=self.token_pattern, **fit_options)

    def _set_vocabulary(self, vocabulary: list[str] | None) -> None:
        if vocabulary is not None and len(vocabulary) > self.max_features:
            raise ValueError(f"text_transformer: a vocabulary of {len(vocabulary)} words does not fit "
                             f"max_features={self.max_features}")
        self.vocabulary = None if vocabulary is None else list(vocabulary)
        self._index = {} if vocabulary is None else {w: i + len(SPECIAL_TOKENS) for i, w in enumerate(vocabulary)}
        self._analyzer = None if vocabulary is None else self._vectorizer().build_analyzer()

    @property
    def fitted(self) -> bool:
        return self.vocabulary is not None

    def fit(self, items: Sequence[str | None]) -> None:
        """Learn the vocabulary from the training reports (replacing any learned before)."""
        docs = [_text(item, i, "text_transformer") for i, item in enumerate(items)]
        vectorizer = self._vectorizer(max_features=self.max_features, min_df=self.min_df, max_df=self.max_df)
        try:
            vectorizer.fit(docs)
        except ValueError as exc:  # "empty vocabulary", "After pruning, no terms remain", bad min_df / max_df
            raise ValueError(f"text_transformer: cannot learn a vocabulary from {len(docs)} reports: {exc}") from None
        index = vectorizer.vocabulary_
        self._set_vocabulary(sorted(index, key=index.__getitem__))

    def tokenize(self, text: str) -> list[int]:
        """The ids of one report: ``[CLS]`` then its words (``[UNK]`` for unknown ones), at most ``max_length``."""
        self._check_fitted()
        ids = [self._index.get(word, UNK) for word in self._analyzer(text)]
        return [CLS, *ids[: self.max_length - 1]]

    def _check_fitted(self) -> None:
        if self.vocabulary is None:
            raise RuntimeError("text_transformer: the vocabulary is not learned yet; call fit(train_reports) "
                               "before collate, or load a state dict saved after fit")

    def get_extra_state(self) -> dict[str, Any]:
        return {"format": 1, "vocabulary": self.vocabulary, "lowercase": self.lowercase,
                "token_pattern": self.token_pattern}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError(f"text_transformer: unrecognised extra state {type(state).__name__}")
        self.lowercase, self.token_pattern = bool(state["lowercase"]), str(state["token_pattern"])
        self._set_vocabulary(state["vocabulary"])

    # -- collate and forward -----------------------------------------------------------------------------------

    def collate(self, items: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """Reports as ``{"ids": int64 [B, L], "mask": bool [B, L]}``, ``L`` the longest (<= ``max_length``)."""
        self._check_fitted()
        if len(items) == 0:
            raise ValueError("text_transformer: collate needs at least one report")
        seqs = [self.tokenize(_text(item, i, "text_transformer")) for i, item in enumerate(items)]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), PAD, dtype=torch.int64)
        mask = torch.zeros((len(seqs), length), dtype=torch.bool)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.int64)
            mask[i, : len(seq)] = True
        return {"ids": ids, "mask": mask}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["ids"], batch["mask"].bool()
        if ids.ndim != 2 or ids.shape != mask.shape or ids.shape[1] > self.max_length:
            raise ValueError(f"text_transformer: expected ids and mask [B, L <= {self.max_length}], got "
                             f"{tuple(ids.shape)} and {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("text_transformer: a row of mask has no token (collate always keeps [CLS])")
        h = self.token_embedding(ids) + self.position[: ids.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(dim=1) / weights.sum(dim=1)
        return self.proj(pooled)


class SentenceModelUnavailable(StenceBenchError, RuntimeError):
    """``text_sentence`` cannot load its model: the package is not installed or the model directory is missing."""


class SentenceEncoder(nn.Module):
    """A frozen sentence-transformers model (plus a trainable linear projection when the widths differ).

    ``pretrained`` says its embeddings carry meaning before any training: an objective may read the semantic
    similarity of two reports from :meth:`similarity_embeddings` (FG-CLEP's soft targets in ``siglip``)."""

    pretrained = True

    def __init__(self, *, model_path: str | None = None, embed_dim: int | None = None, project: bool | None = None,
                 max_length: int | None = None, normalize: bool = False):
        super().__init__()
        if importlib.util.find_spec("sentence_transformers") is None:
            raise SentenceModelUnavailable(
                "text_sentence needs sentence-transformers, which is not installed: "
                f"{install_hint('text')} (and set option model_path to a local model directory)")
        if not model_path:
            raise SentenceModelUnavailable("text_sentence: option model_path is required: the directory of a "
                                           "locally installed sentence-transformers model (nothing is downloaded)")
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise SentenceModelUnavailable(f"text_sentence: model_path {str(path)!r} does not exist or is not a "
                                           f"directory; give a locally installed sentence-transformers model "
                                           f"directory (nothing is downloaded)")
        self.model_path = str(path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        kwargs: dict[str, Any] = {"device": "cpu"}
        if "local_files_only" in inspect.signature(SentenceTransformer.__init__).parameters:
            kwargs["local_files_only"] = True
        try:
            model = SentenceTransformer(str(path), **kwargs)
        except Exception as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            raise SentenceModelUnavailable(f"text_sentence: cannot load the model in {str(path)!r}: "
                                           f"{type(exc).__name__}: {first}") from exc
        if max_length is not None:
            model.max_seq_length = max_length
        model.requires_grad_(False)
        self.model = model.eval()
        width = int(model.get_sentence_embedding_dimension())
        self.embed_dim = width if embed_dim is None else embed_dim
        if project is None:
            project = self.embed_dim != width
        elif not project and self.embed_dim != width:
            raise ValueError(f"text_sentence: the model gives {width} values; project=False needs embed_dim={width}, "
                             f"not {self.embed_dim}")
        self.proj: nn.Module = nn.Linear(width, self.embed_dim) if project else nn.Identity()
        self.normalize = normalize

    def train(self, mode: bool = True) -> SentenceEncoder:
        super().train(mode)
        self.model.eval()  # frozen: dropout stays off
        return self

    def fit(self, items: Sequence[str | None]) -> None:
        """Nothing to learn: the model is frozen."""

    def collate(self, items: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """The model's own tokenisation of the reports (``input_ids``, ``attention_mask``, ...)."""
        if len(items) == 0:
            raise ValueError("text_sentence: collate needs at least one report")
        texts = [_text(item, i, "text_sentence") for i, item in enumerate(items)]
        return dict(self.model.tokenize(texts))

    def similarity_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The frozen model's sentence embeddings (before the projection), without gradients."""
        with torch.no_grad():
            out = self.model(dict(features))["sentence_embedding"].float()
            return F.normalize(out, dim=-1) if self.normalize else out

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.proj(self.similarity_embeddings(features))


def text_transformer(**options: Any) -> TextTransformer:
    """Factory of the ``text_transformer`` modality (see :class:`TextTransformer` for the options)."""
    return TextTransformer(**options)


def text_sentence(**options: Any) -> SentenceEncoder:
    """Factory of the ``text_sentence`` modality (options: model_path, embed_dim, project, max_length, normalize)."""
    return SentenceEncoder(**options)
