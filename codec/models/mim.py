"""The masked-image-model conditional entropy model (PQ-MIM).

A bidirectional transformer over the h x w token grid. Input per position: the sum of
the M sub-index embeddings (a learned [MASK] embedding per sub-vector where the position
is unknown) plus a 2-D sinusoidal position encoding (any h, w). Output per position:
M x K logits, the distribution of each sub-index given the known positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MIMConfig:
    M: int = 8
    K: int = 256
    dim: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def position_encoding(h: int, w: int, dim: int) -> torch.Tensor:
    """2-D sinusoidal encoding [h*w, dim]: half the channels for rows, half for columns."""
    q = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(q, dtype=torch.float32) / q)
    ys = torch.arange(h, dtype=torch.float32)[:, None] * freq  # [h, q]
    xs = torch.arange(w, dtype=torch.float32)[:, None] * freq  # [w, q]
    pe_y = torch.cat([ys.sin(), ys.cos()], 1)[:, None, :].expand(h, w, 2 * q)
    pe_x = torch.cat([xs.sin(), xs.cos()], 1)[None, :, :].expand(h, w, 2 * q)
    pe = torch.cat([pe_y, pe_x], -1).reshape(h * w, 4 * q)
    return F.pad(pe, (0, dim - 4 * q))


class MaskedEntropyModel(nn.Module):
    """``forward(tokens, known)`` -> logits.

    tokens: int64 [B, M, h, w] in [0, K) (values at unknown positions are ignored);
    known: bool [B, h, w]. Returns float logits [B, h, w, M, K].
    """

    def __init__(self, cfg: MIMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        M, K, d = cfg.M, cfg.K, cfg.dim
        self.embed = nn.Embedding(M * (K + 1), d)  # row m*(K+1) + k; k = K is [MASK]
        self.register_buffer("offsets", torch.arange(M) * (K + 1), persistent=False)
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, cfg.mlp_ratio * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, M * K)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        B, M, h, w = tokens.shape
        K = self.cfg.K
        t = torch.where(known[:, None], tokens, torch.full_like(tokens, K))  # [B, M, h, w]
        t = t.flatten(2).transpose(1, 2) + self.offsets  # [B, h*w, M]
        x = self.embed(t).sum(2) + position_encoding(h, w, self.cfg.dim).to(self.embed.weight.dtype)
        x = self.norm(self.blocks(x))
        return self.head(x).reshape(B, h, w, M, K)

    def loss(
        self, tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict]:
        """See :func:`masked_token_loss` (with this model's own forward)."""
        return masked_token_loss(self, tokens, self.cfg.K, generator)


def masked_token_loss(forward, tokens: torch.Tensor, K: int, generator: torch.Generator | None = None):
    """Cross-entropy (nats) on masked positions with a mask ratio ~ U(0, 1) per image.

    ``forward(tokens, known)`` is the model (or its DDP wrapper, so gradients synchronise).
    Returns (loss, {"bits_per_token": float}); a token is one sub-index.
    """
    B, M, h, w = tokens.shape
    ratio = torch.rand(B, 1, 1, generator=generator).to(tokens.device)
    masked = torch.rand(B, h, w, generator=generator).to(tokens.device) < ratio
    masked[:, 0, 0] |= ~masked.flatten(1).any(1)  # at least one masked position per image
    logits = forward(tokens, ~masked)  # [B, h, w, M, K]
    target = tokens.permute(0, 2, 3, 1)  # [B, h, w, M]
    ce = F.cross_entropy(logits[masked].reshape(-1, K).float(), target[masked].reshape(-1))
    return ce, {"bits_per_token": ce.item() / math.log(2)}
