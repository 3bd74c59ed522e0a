"""Built-in encoders of paired modalities: angiography, report text, clinical metadata.

Registration only: the models live in the sibling modules (``angiography``, ``text``, ``metadata``), imported
when a spec's factory is first called, so listing plugins never imports torch or scikit-learn.

The modality-encoder protocol
-----------------------------
A :class:`~stence_bench.specs.ModalitySpec`'s ``factory(**options)`` returns a ``torch.nn.Module`` with:

- ``embed_dim: int``: the width of what ``forward`` returns (equal to the spec's ``embed_dim`` at its options);
- ``collate(items: Sequence[raw]) -> Tensor | dict[str, Tensor]``: turns one raw value per example into the
  batch input, on the CPU (the runner moves it, and every tensor of a dict, to the device). ``raw`` is, by modality:

  * angiography: a numpy frames array ``[frames, rows, cols]`` (``uint8``/``uint16``/float; ``[rows, cols]`` is one
    frame, ``[..., 3]`` colour is averaged to grey) or an :class:`~stence_bench.data.dicom.Angiogram`; for the
    pass-through of precomputed embeddings, a 1-D float vector;
  * text: a ``str`` (``None`` is an empty report);
  * metadata: a 1-D float array of the fields, ``NaN`` where a value is missing;

- ``forward(collated) -> float32 [batch, embed_dim]``; each row depends on its own example only (no batch
  statistics), so the output does not depend on the batch it is computed in;
- ``fit(items: Sequence[raw]) -> None``: learns what must be learned from the training data before training
  (the text vocabulary, the metadata standardisation). Every built-in has one (a no-op where there is nothing to
  learn); a third-party encoder may omit it. Whatever ``fit`` learns is in ``state_dict()`` (as
  ``get_extra_state``, plain python types only, so a checkpoint loads with ``torch.load(weights_only=True)``),
  so a module built with the same options and given that state dict gives the same output.

A runner calls them in this order: ``module = factory(**{**spec.options, **overrides})``; ``module.fit(train_items)``
on the training split only; then build the optimizer (``fit`` may create parameters: ``metadata_mlp`` without
``n_fields``); then per batch ``module(module.collate(items))``.
"""

from __future__ import annotations

from stence_bench import ModalitySpec, hookimpl

_PKG = "stence_bench_plugins.modalities"


@hookimpl
def register_modalities(register):
    register(
        ModalitySpec(
            name="angio_cnn",
            modality="angiography",
            description="a small 2-D CNN (GroupNorm, no batch statistics) over each of a fixed number of evenly "
            "sampled frames, resized to a fixed square size; frame features averaged (or attention-pooled) over time",
            factory=f"{_PKG}.angiography:angio_cnn",
            embed_dim=64,
            options={"size": 64, "frames": 8, "widths": [16, 32, 64], "embed_dim": 64, "temporal": "mean"},
        )
    )
    register(
        ModalitySpec(
            name="angio_embedding",
            modality="angiography",
            description="pass-through of precomputed angiography embeddings (one vector per study, as StenCE "
            "uses): identity, or a linear projection when embed_dim differs from input_dim or project is set",
            factory=f"{_PKG}.angiography:angio_embedding",
            embed_dim=128,
            options={"input_dim": 128},
        )
    )
    register(
        ModalitySpec(
            name="text_transformer",
            modality="text",
            description="word-level tokenizer learned by fit (scikit-learn CountVectorizer) and a small pre-norm "
            "transformer trained from scratch, learned positions, masked-mean (or CLS) pooling",
            factory=f"{_PKG}.text:text_transformer",
            embed_dim=64,
            options={"max_features": 2000, "min_df": 1, "max_length": 64, "width": 64, "layers": 2, "heads": 4,
                     "embed_dim": 64, "pooling": "mean"},
        )
    )
    register(
        ModalitySpec(
            name="text_sentence",
            modality="text",
            description="a frozen sentence-transformers model loaded from a local directory (option model_path; "
            "never downloads), with a trainable linear projection when its width differs from embed_dim",
            factory=f"{_PKG}.text:text_sentence",
            embed_dim=384,
            options={"embed_dim": 384},
        )
    )
    register(
        ModalitySpec(
            name="metadata_mlp",
            modality="metadata",
            description="clinical fields standardised with the mean and std learned by fit, missing values filled "
            "and flagged by a missingness mask, then an MLP",
            factory=f"{_PKG}.metadata:metadata_mlp",
            embed_dim=32,
            options={"hidden": 64, "layers": 2, "embed_dim": 32, "fill": "zero"},
        )
    )
