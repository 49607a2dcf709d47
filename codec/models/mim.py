"""The masked-image-model conditional entropy model (PQ-MIM), MAE-style.

Given the tokens at some positions of the h x w grid ("known"), it predicts M x K logits at
other positions ("queries"), every query independently of the other queries:

* an encoder (bidirectional transformer) over the known positions only: input per position
  the sum of its M sub-index embeddings plus a 2-D sinusoidal position encoding (any h, w),
  plus one learned context token that is always present (so that "nothing known" works);
* a light decoder: each query (a learned [MASK] embedding plus its position encoding) goes
  through a few cross-attention blocks over the encoder's output, then a linear head.

Unlike a full-grid model that feeds [MASK] tokens through the whole transformer, the cost
is proportional to the known positions (encoder) plus the queried ones (decoder), which is
what makes staged coding fast (MAE, He et al. 2022; OmniMAE). Sub-vectors of a position are
predicted jointly from one pass (M heads).
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
    dim: int = 192
    depth: int = 4  # encoder blocks (self-attention over known positions)
    decoder_depth: int = 2  # query blocks (cross-attention to the encoder's output)
    heads: int = 6
    mlp_ratio: int = 4
    # Layered models (nested PQ-VAEs, see layered.py): sizes of the sub-vector groups coded
    # one after another; this config's transformer is the base layer's (group 0), a conv
    # network of channel_dim channels and channel_depth blocks codes the later groups.
    groups: list[int] | None = None
    channel_dim: int = 128
    channel_depth: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def position_encoding(h: int, w: int, dim: int, y0: int = 0, x0: int = 0) -> torch.Tensor:
    """2-D sinusoidal encoding [h*w, dim] of rows y0.., columns x0..: half the channels for
    rows, half for columns."""
    q = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(q, dtype=torch.float32) / q)
    ys = torch.arange(y0, y0 + h, dtype=torch.float32)[:, None] * freq  # [h, q]
    xs = torch.arange(x0, x0 + w, dtype=torch.float32)[:, None] * freq  # [w, q]
    pe_y = torch.cat([ys.sin(), ys.cos()], 1)[:, None, :].expand(h, w, 2 * q)
    pe_x = torch.cat([xs.sin(), xs.cos()], 1)[None, :, :].expand(h, w, 2 * q)
    pe = torch.cat([pe_y, pe_x], -1).reshape(h * w, 4 * q)
    return F.pad(pe, (0, dim - 4 * q))


class Block(nn.Module):
    """Pre-norm transformer block: attention of ``x`` over ``context`` (itself when None), MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, n, d = x.shape
        h = self.norm1(x)
        c = h if context is None else context
        q = self.q(h).view(B, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(c).view(B, c.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, n, d)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class MaskedEntropyModel(nn.Module):
    """``forward(tokens, known, query)`` -> logits of the query positions.

    tokens: int64 [B, M, h, w] in [0, K) (only the known positions are read);
    known: int64 [B, n_known] and query: int64 [B, n_query] flat positions (row-major);
    returns float logits [B, n_query, M, K]. ``offset`` shifts the position encoding
    (training crops see many absolute positions).
    """

    def __init__(self, cfg: MIMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        M, K, d = cfg.M, cfg.K, cfg.dim
        self.embed = nn.Embedding(M * K, d)  # row m*K + k
        self.register_buffer("offsets", torch.arange(M) * K, persistent=False)
        self.context_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, M * K)
        for p in (self.embed.weight, self.context_token, self.mask_token):
            nn.init.normal_(p, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        tokens: torch.Tensor,
        known: torch.Tensor,
        query: torch.Tensor,
        offset: tuple[int, int] = (0, 0),
    ) -> torch.Tensor:
        B, M, h, w = tokens.shape
        d = self.cfg.dim
        pe = position_encoding(h, w, d, *offset).to(self.embed.weight.dtype).to(tokens.device)  # [hw, d]
        t = tokens.flatten(2).gather(2, known[:, None].expand(B, M, -1))  # [B, M, n_known]
        x = self.embed(t.transpose(1, 2) + self.offsets).sum(2) + pe[known]  # [B, n_known, d]
        x = torch.cat([self.context_token.expand(B, 1, d).to(x.dtype), x], 1)
        for blk in self.encoder:
            x = blk(x)
        context = self.encoder_norm(x)
        q = self.mask_token.to(x.dtype) + pe[query]  # [B, n_query, d]
        for blk in self.decoder:
            q = blk(q, context)
        return self.head(self.norm(q)).view(B, query.shape[1], M, self.cfg.K)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator | None = None):
        """See :func:`masked_token_loss` (with this model's own forward)."""
        return masked_token_loss(self, tokens, self.cfg.K, generator)


def masked_token_loss(
    forward,
    tokens: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    offset: tuple[int, int] = (0, 0),
):
    """Cross-entropy (nats) on the query positions of a random split of every crop.

    One known count n ~ U{0, ..., h*w - 1} per batch (so the batch needs no padding); each
    crop gets its own random n known positions, the others are queries. ``forward(tokens,
    known, query, offset)`` is the model (or its DDP wrapper, so gradients synchronise).
    Returns (loss, {"bits_per_token": float}); a token is one sub-index.
    """
    B, M, h, w = tokens.shape
    n = h * w
    n_known = int(torch.randint(0, n, (1,), generator=generator))
    order = torch.rand(B, n, generator=generator).argsort(1).to(tokens.device)
    known, query = order[:, :n_known], order[:, n_known:]
    logits = forward(tokens, known, query, offset)  # [B, n_query, M, K]
    target = tokens.flatten(2).gather(2, query[:, None].expand(B, M, -1)).transpose(1, 2)  # [B, n_query, M]
    ce = F.cross_entropy(logits.reshape(-1, K).float(), target.reshape(-1))
    return ce, {"bits_per_token": ce.item() / math.log(2)}


def schedule_bits(model: MaskedEntropyModel, tokens: torch.Tensor, schedule) -> torch.Tensor:
    """Ideal code length in bits of each image's tokens under ``model`` and a
    :class:`~codec.entropy.schedule.CodingSchedule`, batched: tokens int64 [B, M, h, w] on the
    model's device -> float32 [B]. What the range coder would write, up to its quantization
    of probabilities and 2 bytes of termination (the file adds its header)."""
    import numpy as np

    B, M, h, w = tokens.shape
    stages = schedule.stages_for(h, w)
    order = torch.from_numpy(np.concatenate(stages)).to(tokens.device)
    flat = tokens.flatten(2)
    bits, done = torch.zeros(B, device=tokens.device), 0
    for n in (len(s) for s in stages):
        if n == 0:
            continue
        known, query = order[:done].expand(B, -1), order[done : done + n].expand(B, -1)
        logp = model(tokens, known, query).float().log_softmax(-1)  # [B, n, M, K]
        sym = flat[:, :, order[done : done + n]]  # [B, M, n]
        bits -= logp.gather(-1, sym.transpose(1, 2)[..., None]).sum((1, 2, 3)) / np.log(2)
        done += n
    return bits
