"""The entropy model of a nested PQ-VAE: a spatial base layer, then channel-conditional layers.

A nested model's sub-vectors are ordered by importance and split into groups (the quality
layers), e.g. ``[1, 1, 2, 2, 2, 4, 4, 4, 4]`` for M = 24:

* group 0 (the base layer) is coded in S spatial stages by a :class:`MaskedEntropyModel`
  over its sub-vectors alone, exactly as a plain model codes all of its tokens;
* group g >= 1 is coded in one step, every position at once, given all sub-vectors of the
  groups before it at every position: :class:`ChannelContextModel`, a small convolutional
  network over the token grid (channel-conditional coding, as Minnen & Singh 2020 code
  latent slices; a conv keeps the cost linear in the pixels).

So a group's probabilities depend only on earlier groups: a file cut after any group is
itself a valid lower-rate file, and the logits of a group do not change with how much of it
is coded (rate control may code a group partly). Sub-vectors of one group are predicted
jointly (independently given the earlier groups).
"""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import nn

from .mim import MaskedEntropyModel, MIMConfig, masked_token_loss, schedule_bits


class ChannelContextModel(nn.Module):
    """``forward(tokens, g)``: logits of group g's sub-vectors at every position.

    tokens: int64 [B, >= b_g, h, w] (sub-vectors 0..b_g - 1 are read, b_g = first sub-vector
    of group g); returns float logits [B, h*w, size_g, K] (positions row-major).
    Input per position: the mean of the embeddings of its known sub-vectors (each sub-vector
    its own table) plus a group embedding; then ``depth`` residual blocks (3x3 conv, GELU,
    1x1 conv) and a 1x1 head whose rows for group g are the only ones computed.
    """

    def __init__(self, cfg: MIMConfig) -> None:
        super().__init__()
        c = cfg.channel_dim
        self.cfg = cfg
        self.bounds = list(accumulate(cfg.groups, initial=0))
        self.embed = nn.Embedding(cfg.M * cfg.K, c)
        self.register_buffer("offsets", torch.arange(cfg.M) * cfg.K, persistent=False)
        self.group_embed = nn.Embedding(len(cfg.groups), c)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 1))
            for _ in range(cfg.channel_depth)
        )
        self.head = nn.Conv2d(c, cfg.M * cfg.K, 1)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.group_embed.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        for blk in self.blocks:
            nn.init.zeros_(blk[-1].bias)
            blk[-1].weight.data.mul_(0.1)

    def forward(self, tokens: torch.Tensor, g: int) -> torch.Tensor:
        if not 1 <= g < len(self.cfg.groups):
            raise ValueError(f"group {g} is not a channel-coded group (1..{len(self.cfg.groups) - 1})")
        lo = self.bounds[g]
        e = self.embed(tokens[:, :lo].permute(0, 2, 3, 1) + self.offsets[:lo])  # [B, h, w, lo, c]
        return self._logits(e.mean(3) + self.group_embed.weight[g], [g])[0]

    def all_groups(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every group g >= 1 (the list of ``forward(tokens, g)``), from one pass of
        the embeddings and one batched pass of the network (training)."""
        G = len(self.cfg.groups)
        e = self.embed(
            tokens[:, : self.bounds[G - 1]].permute(0, 2, 3, 1) + self.offsets[: self.bounds[G - 1]]
        )
        prefix = e.cumsum(3)  # [B, h, w, n, c]: sums of the first j + 1 embeddings
        x = [
            prefix[:, :, :, self.bounds[g] - 1] / self.bounds[g] + self.group_embed.weight[g]
            for g in range(1, G)
        ]
        return self._logits(torch.cat(x), list(range(1, G)))

    def _logits(self, x: torch.Tensor, groups: list[int]) -> list[torch.Tensor]:
        """x [len(groups) * B, h, w, c] (the inputs of these groups, stacked) -> their logits."""
        K = self.cfg.K
        x = x.permute(0, 3, 1, 2)  # [., c, h, w]
        for blk in self.blocks:
            x = x + blk(x)
        x = F.gelu(x)
        out = []
        for xg, g in zip(x.chunk(len(groups)), groups):
            lo, hi = self.bounds[g], self.bounds[g + 1]
            B, _, h, w = xg.shape
            logits = F.conv2d(xg, self.head.weight[lo * K : hi * K], self.head.bias[lo * K : hi * K])
            out.append(logits.view(B, hi - lo, K, h * w).permute(0, 3, 1, 2))  # [B, h*w, size_g, K]
        return out


class LayeredEntropyModel(nn.Module):
    """``base`` (a :class:`MaskedEntropyModel` over group 0) + ``channel``
    (:class:`ChannelContextModel` for groups 1..G-1); ``cfg.groups`` lists the group sizes."""

    def __init__(self, cfg: MIMConfig) -> None:
        super().__init__()
        if not cfg.groups or sum(cfg.groups) != cfg.M or min(cfg.groups) < 1:
            raise ValueError(f"groups {cfg.groups} must be positive sizes summing to M={cfg.M}")
        self.cfg = cfg
        self.bounds = list(accumulate(cfg.groups, initial=0))
        self.base = MaskedEntropyModel(replace(cfg, M=cfg.groups[0], groups=None))
        self.channel = ChannelContextModel(cfg)

    def forward(self, tokens, known, query, offset=(0, 0)):
        """The base layer's staged call (see :class:`MaskedEntropyModel`): logits
        [B, n_query, groups[0], K] from the group-0 tokens at the known positions."""
        return self.base(tokens[:, : self.cfg.groups[0]], known, query, offset)

    def group_logits(self, tokens: torch.Tensor, g: int) -> torch.Tensor:
        """Logits [B, h*w, size_g, K] of group g >= 1 given the earlier groups' tokens."""
        return self.channel(tokens, g)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator | None = None, offset=(0, 0)):
        """Mean cross-entropy in nats per token over all sub-vectors and stats in bits: the base
        layer on a random split of the positions of every crop (as :func:`masked_token_loss`),
        the other groups at every position of the first quarter of the crops (each crop gives
        them M - groups[0] dense targets per position: a quarter is plenty, at a quarter of
        the cost). Under DDP, wrap a module whose ``forward`` calls this (:class:`TrainingLoss`)."""
        g0, K = self.cfg.groups[0], self.cfg.K
        base_ce, _ = masked_token_loss(self.base, tokens[:, :g0], K, generator, offset)
        total, count = base_ce * g0, g0
        stats = {"base_bits": base_ce.item() / math.log(2)}
        dense = tokens[: max(1, tokens.shape[0] // 4)]
        for g, logits in enumerate(self.channel.all_groups(dense), start=1):  # [B', hw, n, K] each
            lo, hi = self.bounds[g], self.bounds[g + 1]
            target = dense[:, lo:hi].flatten(2).transpose(1, 2)  # [B', hw, n]
            ce = F.cross_entropy(logits.reshape(-1, K).float(), target.reshape(-1))
            total, count = total + ce * (hi - lo), count + hi - lo
            stats[f"group{g}_bits"] = ce.item() / math.log(2)
        loss = total / count
        stats["bits_per_token"] = loss.item() / math.log(2)
        return loss, stats


@torch.no_grad()
def layered_schedule_bits(
    model: LayeredEntropyModel, tokens: torch.Tensor, schedule, m: int | None = None
) -> torch.Tensor:
    """Ideal code length in bits of the first ``m`` sub-vectors (default: all) of each image's
    tokens int64 [B, M, h, w] at every position: the base layer under ``schedule`` plus the
    channel-coded groups; float32 [B] (batched :func:`~codec.models.mim.schedule_bits`)."""
    m = tokens.shape[1] if m is None else m
    bits = schedule_bits(model, tokens[:, : model.cfg.groups[0]], schedule)
    for g in range(1, len(model.cfg.groups)):
        lo, hi = model.bounds[g], min(model.bounds[g + 1], m)
        if hi <= lo:
            break
        logp = model.group_logits(tokens, g).float().log_softmax(-1)[:, :, : hi - lo]  # [B, hw, n, K]
        sym = tokens[:, lo:hi].flatten(2).transpose(1, 2)  # [B, hw, n]
        bits -= logp.gather(-1, sym[..., None]).sum((1, 2, 3)) / math.log(2)
    return bits


class TrainingLoss(nn.Module):
    """``forward(tokens, generator, offset)`` = the model's loss: one module for DDP to wrap,
    so that the gradients of every part synchronise."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens, generator=None, offset=(0, 0)):
        if isinstance(self.model, LayeredEntropyModel):
            return self.model.loss(tokens, generator, offset)
        return masked_token_loss(self.model, tokens, self.model.cfg.K, generator, offset)


def build_entropy_model(cfg: MIMConfig) -> nn.Module:
    """The entropy model a config describes: layered when it lists groups."""
    return LayeredEntropyModel(cfg) if cfg.groups else MaskedEntropyModel(cfg)
