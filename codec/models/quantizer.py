"""Product quantization of latent grids (PQ-MIM's bottleneck).

A latent ``z`` ``[B, D, h, w]`` is split along channels into ``M`` sub-vectors of
``D / M`` dims; sub-vector ``m`` is replaced by the nearest of the ``K`` codewords of its
own codebook, so one position is one of ``K**M`` codes stored as ``M`` small integers.

Codebooks learn by EMA k-means (van den Oord et al. 2017; Razavi et al. 2019): each
codeword moves to the running mean of the vectors assigned to it, with dead-code
restarts (codewords whose EMA usage falls below ``restart_threshold`` jump to random
current encoder outputs). Distances are computed in float32 even under autocast.
Under ``torch.distributed`` the statistics are summed over ranks and restarts are taken
from rank 0, so every rank keeps identical codebooks.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ProductQuantizer(nn.Module):
    """``forward(z)`` -> ``(z_q, indices, stats)``.

    Args:
        dim: latent channels D (divisible by M).
        M: sub-vectors per position (M = 1: a plain VQ).
        K: codewords per codebook.
        decay: EMA decay of codeword statistics.
        restart_threshold: EMA usage (assignments per step) below which a codeword is restarted.
        beta: weight of the commitment loss ``||z - sg(z_q)||^2``.

    Shapes: ``z``, ``z_q``: ``[B, D, h, w]``; ``indices``: int64 ``[B, M, h, w]`` in ``[0, K)``.
    ``stats``: ``commit_loss`` (scalar tensor) and ``perplexity`` (``[M]``, of this batch).
    """

    def __init__(
        self,
        dim: int,
        M: int,
        K: int,
        decay: float = 0.99,
        restart_threshold: float = 0.5,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        if dim % M:
            raise ValueError(f"dim {dim} is not divisible by M={M}")
        self.dim, self.M, self.K, self.d = dim, M, K, dim // M
        self.decay, self.restart_threshold, self.beta = decay, restart_threshold, beta
        self.register_buffer("codebooks", torch.randn(M, K, self.d) / math.sqrt(self.d))
        self.register_buffer("ema_count", torch.ones(M, K))
        self.register_buffer("ema_sum", self.codebooks.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # -- shapes -------------------------------------------------------------------------
    def _split(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] -> [M, B*h*w, d]"""
        B, D, h, w = z.shape
        return z.reshape(B, self.M, self.d, h, w).permute(1, 0, 3, 4, 2).reshape(self.M, -1, self.d)

    def _merge(self, v: torch.Tensor, B: int, h: int, w: int) -> torch.Tensor:
        """[M, B*h*w, d] -> [B, D, h, w]"""
        return v.reshape(self.M, B, h, w, self.d).permute(1, 0, 4, 2, 3).reshape(B, self.dim, h, w)

    # -- core ---------------------------------------------------------------------------
    @torch.no_grad()
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Indices [M, N] of the nearest codewords to ``flat`` [M, N, d] (float32)."""
        cb = self.codebooks
        d2 = (cb * cb).sum(-1).unsqueeze(1) - 2 * torch.bmm(flat, cb.transpose(1, 2))  # [M, N, K]
        return d2.argmin(-1)

    @torch.no_grad()
    def indices(self, z: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Indices int64 [B, M, h, w] of the nearest codewords to ``z`` [B, D, h, w], computed
        ``chunk`` positions at a time (no statistics, no [M, N, K] table of the whole image:
        what large images are encoded with)."""
        B, _, h, w = z.shape
        flat = self._split(z.float())
        idx = torch.cat([self.nearest(flat[:, i : i + chunk]) for i in range(0, flat.shape[1], chunk)], 1)
        return idx.reshape(self.M, B, h, w).permute(1, 0, 2, 3)

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantized latent [B, D, h, w] from indices [B, M, h, w] (exactly the forward's z_q)."""
        B, M, h, w = indices.shape
        idx = indices.permute(1, 0, 2, 3).reshape(M, -1)
        v = torch.gather(self.codebooks, 1, idx.unsqueeze(-1).expand(-1, -1, self.d))
        return self._merge(v, B, h, w)

    def forward(self, z: torch.Tensor):
        B, _, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            zf = z.float()
            flat = self._split(zf)
            if self.training and not bool(self.initialized):
                self.init_from(flat)
            idx = self.nearest(flat)  # [M, N]
            q = torch.gather(self.codebooks, 1, idx.unsqueeze(-1).expand(-1, -1, self.d))
            if self.training:
                self._ema_update(flat.detach(), idx)
            z_q = self._merge(q, B, h, w)
            commit = self.beta * F.mse_loss(zf, z_q.detach())
            counts = F.one_hot(idx, self.K).sum(1).float()  # [M, K]
            p = counts / counts.sum(-1, keepdim=True)
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))
        if zf.requires_grad:  # straight-through gradient; otherwise exactly the codewords
            z_q = zf + (z_q - zf).detach()
        indices = idx.reshape(self.M, B, h, w).permute(1, 0, 2, 3)
        return z_q.to(z.dtype), indices, {"commit_loss": commit, "perplexity": perplexity}

    # -- learning -----------------------------------------------------------------------
    @torch.no_grad()
    def init_from(self, flat: torch.Tensor, iters: int = 10) -> None:
        """Initializes every codebook by k-means on encoder outputs ``flat`` [M, N, d]."""
        M, N, d = flat.shape
        g = torch.Generator(device="cpu").manual_seed(0)
        pick = torch.randint(0, N, (self.K,), generator=g).to(flat.device)
        cb = flat[:, pick].clone() + 1e-3 * torch.randn(M, self.K, d, generator=g).to(flat.device)
        for _ in range(iters):
            self.codebooks.copy_(cb)
            idx = self.nearest(flat)
            sums = torch.zeros_like(cb).scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, d), flat)
            counts = torch.zeros(M, self.K, device=flat.device).scatter_add_(
                1, idx, torch.ones_like(idx, dtype=torch.float)
            )
            cb = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), cb)
        if _distributed():
            dist.broadcast(cb, 0)
        self.codebooks.copy_(cb)
        self.ema_sum.copy_(cb)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        M, N, d = flat.shape
        counts = torch.zeros(M, self.K, device=flat.device).scatter_add_(
            1, idx, torch.ones_like(idx, dtype=torch.float)
        )
        sums = torch.zeros(M, self.K, d, device=flat.device).scatter_add_(
            1, idx.unsqueeze(-1).expand(-1, -1, d), flat
        )
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum(-1, keepdim=True)
        smoothed = (self.ema_count + 1e-5) / (n + self.K * 1e-5) * n  # Laplace smoothing
        self.codebooks.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        dead = self.ema_count < self.restart_threshold  # [M, K]
        if _distributed():  # rank 0 decides and supplies the replacements
            dead = dead.to(torch.uint8)
            dist.broadcast(dead, 0)
            dead = dead.bool()
        if not bool(dead.any()):
            return
        M, N, d = flat.shape
        pick = torch.randint(0, N, (M, self.K), device=flat.device)
        cand = torch.gather(flat, 1, pick.unsqueeze(-1).expand(-1, -1, d))
        new_cb = torch.where(dead.unsqueeze(-1), cand, self.codebooks)
        if _distributed():
            dist.broadcast(new_cb, 0)
        self.codebooks.copy_(new_cb)
        self.ema_sum.copy_(torch.where(dead.unsqueeze(-1), new_cb, self.ema_sum))
        self.ema_count.copy_(torch.where(dead, torch.ones_like(self.ema_count), self.ema_count))

    def usage(self) -> torch.Tensor:
        """EMA perplexity of code usage per codebook [M] (K means every code used evenly)."""
        p = self.ema_count / self.ema_count.sum(-1, keepdim=True)
        return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))
