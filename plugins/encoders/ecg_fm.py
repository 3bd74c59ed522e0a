"""ECG-FM's encoder: the wav2vec 2.0 transformer of fairseq-signals, as released.

Written from the architecture of the public code (github.com/Jwoo5/fairseq-signals, ``models/ecg_transformer.py``,
``models/wav2vec2/wav2vec2.py``, ``modules/``; MIT licence) and the paper (McKeen et al., 2024), so that the released
pretraining checkpoint (``mimic_iv_ecg_physionet_pretrained.pt``: a fairseq checkpoint whose ``model`` entry holds
the model's tensors) loads under its own names:

- ``feature_extractor.conv_layers.<i>.0``: four 1-D convolutions (256 channels, kernel 2, stride 2, no bias, no
  padding) over the 12 leads as channels, each followed by GELU; the first one has a 256-group GroupNorm (in float32)
  before its GELU (module ``conv_layers.0.2``). 2500 samples (5 s at 500 Hz) become 156 steps;
- ``layer_norm`` over the 256 features, ``post_extract_proj`` to 768;
- ``conv_pos``: a convolutional position embedding (kernel 128, 16 groups, padding 64, the last step dropped,
  weight-normalised over dimension 2: ``weight_g`` ``[1, 1, 128]`` and ``weight_v``; GELU) added to the features;
- ``encoder``: ``layer_norm``, then 12 post-norm transformer layers (``self_attn`` with ``q_proj``, ``k_proj``,
  ``v_proj``, ``out_proj``; ``self_attn_layer_norm``; ``fc1`` 3072 and ``fc2`` with GELU; ``final_layer_norm``);
- the embedding: the mean over time of the last layer's output (ECG-FM's ``encoder_out`` averaged over steps).

The checkpoint's pretraining parts (``mask_emb``, the quantizer, ``project_q``, ``final_proj``) are not part of the
encoder: the spec's layout ignores them. Newer fairseq-signals saves the weight norm as
``parametrizations.weight.original0/1``; the layout renames those to ``weight_g``/``weight_v``, so either loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: The released configuration (fairseq-signals defaults with ``encoder_embed_dim`` 768 and ``in_d`` 12).
RELEASED = {"conv_layers": [[256, 2, 2]] * 4, "embed_dim": 768, "ffn_dim": 3072, "heads": 12, "layers": 12,
            "conv_pos": 128, "conv_pos_groups": 16}


class Fp32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 (as fairseq's), whatever the autocast dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return out.type_as(x)


class ConvFeatureExtractor(nn.Module):
    def __init__(self, in_channels: int, layers: Sequence[Sequence[int]]):
        super().__init__()
        blocks = []
        for i, (dim, kernel, stride) in enumerate(layers):
            parts: list[nn.Module] = [nn.Conv1d(in_channels, dim, kernel, stride=stride, bias=False), nn.Dropout(0.0)]
            if i == 0:
                parts.append(Fp32GroupNorm(dim, dim, affine=True))
            parts.append(nn.GELU())
            blocks.append(nn.Sequential(*parts))
            nn.init.kaiming_normal_(parts[0].weight)
            in_channels = dim
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv_layers:
            x = block(x)
        return x


class WeightNormConv(nn.Module):
    """A grouped convolution whose weight is ``weight_v`` scaled to norm ``weight_g`` over every dimension but the
    kernel's (``torch.nn.utils.weight_norm(conv, dim=2)``)."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        weight = torch.empty(channels, channels // groups, kernel).normal_(std=(4 / (kernel * channels)) ** 0.5)
        self.weight_g = nn.Parameter(weight.norm(dim=(0, 1), keepdim=True))
        self.weight_v = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)


class ConvPositionalEncoding(nn.Module):
    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.drop_last = kernel % 2 == 0  # fairseq's SamePad: an even kernel gives one step too many
        self.pos_conv = nn.ModuleList([WeightNormConv(channels, kernel, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, time, channels]
        h = self.pos_conv[0](x.transpose(1, 2))
        if self.drop_last:
            h = h[:, :, :-1]
        return F.gelu(h).transpose(1, 2)


class MultiheadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, time, dim]
        batch, steps, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, steps, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, steps, dim))


class EncoderLayer(nn.Module):
    """A post-norm transformer layer (fairseq's with ``layer_norm_first = False``)."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x)))
        h = self.fc2(F.gelu(self.fc1(x).float()).type_as(x))
        return self.final_layer_norm(x + self.dropout(h))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, layers: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, ffn_dim, heads, dropout, attention_dropout) for _ in range(layers))
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.layer_norm(x))
        for layer in self.layers:
            x = layer(x)
        return x


class ECGFM(nn.Module):
    """The ECG-FM (wav2vec 2.0) encoder: ``[batch, leads, samples] -> [batch, embed_dim]``."""

    def __init__(self, *, n_leads: int, conv_layers: Sequence[Sequence[int]] = RELEASED["conv_layers"],
                 embed_dim: int = 768, ffn_dim: int = 3072, heads: int = 12, layers: int = 12, conv_pos: int = 128,
                 conv_pos_groups: int = 16, dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        if embed_dim % heads or embed_dim % conv_pos_groups:
            raise ValueError(f"embed_dim ({embed_dim}) must be a multiple of heads ({heads}) and of conv_pos_groups "
                             f"({conv_pos_groups})")
        self.feature_extractor = ConvFeatureExtractor(n_leads, conv_layers)
        features = int(conv_layers[-1][0])
        self.layer_norm = nn.LayerNorm(features)
        self.post_extract_proj = nn.Linear(features, embed_dim) if features != embed_dim else None
        self.conv_pos = ConvPositionalEncoding(embed_dim, conv_pos, conv_pos_groups)
        self.encoder = TransformerEncoder(embed_dim, ffn_dim, heads, layers, dropout, attention_dropout)
        self.embed_dim = embed_dim
        for module in self.encoder.modules():  # BERT-style initialisation of the transformer, as fairseq's
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def finetuning_blocks(self) -> list[list[nn.Module]]:
        """Input to output (partial finetuning): the convolutional feature extractor with the projection, position
        embedding and input LayerNorm, then each transformer layer."""
        stem = [self.feature_extractor, self.layer_norm, self.conv_pos, self.encoder.layer_norm]
        if self.post_extract_proj is not None:
            stem.append(self.post_extract_proj)
        return [stem, *([layer] for layer in self.encoder.layers)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm(self.feature_extractor(x).transpose(1, 2))  # [batch, steps, features]
        if self.post_extract_proj is not None:
            h = self.post_extract_proj(h)
        h = h + self.conv_pos(h)
        return self.encoder(h).mean(dim=1)


def ecg_fm(*, n_leads: int, **options: Any) -> ECGFM:
    return ECGFM(n_leads=n_leads, **options)
