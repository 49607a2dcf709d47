"""Product(-residual) quantization of latent grids (PQ-MIM's bottleneck, with residual stages).

A latent ``z`` ``[B, D, h, w]`` is split along channels into ``G`` groups of ``d = D / G``
dims. A position is coded by ``M`` codes in a fixed nested order; code ``j`` belongs to group
``code_groups[j]`` and is the index of the nearest of the ``K`` codewords of its own codebook
to what the earlier codes of that group left (its residual). So a group may take several
residual stages (RQ-VAE, Lee et al. 2022; SoundStream), and every prefix of the order refines
what is already there. ``code_groups = 0..M-1`` (the default) is plain product quantization:
one code per group, each error final.

Codebooks learn by EMA k-means (van den Oord et al. 2017; Razavi et al. 2019): each
codeword moves to the running mean of the vectors assigned to it, with dead-code
restarts (codewords whose EMA usage falls below ``restart_threshold`` jump to random
current inputs of that code). Distances are computed in float32 even under autocast.
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


def codeword_distances(x: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Squared distances [C, N, K] from ``x`` [C, N, d] to the rows of codebooks ``cb``
    [C, K, d], less each ``|x|^2`` (the same for every codeword, so no choice depends on it)."""
    return (cb * cb).sum(-1).unsqueeze(1) - 2 * torch.bmm(x, cb.transpose(1, 2))


def nearest_codewords(x: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Indices [C, N] of the nearest rows of codebooks ``cb`` [C, K, d] to ``x`` [C, N, d]:
    the one rule every encoder path quantizes with."""
    return codeword_distances(x, cb).argmin(-1)


def kmeans(x: torch.Tensor, K: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Codebooks [C, K, d]: ``iters`` Lloyd iterations on each of the C sets ``x`` [C, N, d]
    (float32), started from K random points; an empty cluster keeps its previous centre."""
    C, N, d = x.shape
    pick = torch.randint(0, N, (K,), generator=generator).to(x.device)
    cb = x[:, pick].clone() + 1e-3 * torch.randn(C, K, d, generator=generator).to(x.device)
    for _ in range(iters):
        idx = nearest_codewords(x, cb)
        sums = torch.zeros_like(cb).scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, d), x)
        ones = torch.ones_like(idx, dtype=torch.float)
        counts = torch.zeros(C, K, device=x.device).scatter_add_(1, idx, ones)
        cb = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), cb)
    return cb


@torch.no_grad()
def greedy_code_order(
    coefs: torch.Tensor, groups: int, M: int, K: int, max_stages: int, iters: int = 8, seed: int = 0
) -> list[int]:
    """The nested order of M codes over ``groups`` groups of ``coefs`` [N, D] (orthonormal units,
    so squared error here is squared error of pixels): each next code goes to the group whose
    next residual stage (a K-means codebook of what that group's earlier stages left) removes the
    most squared error (reverse water-filling), at most ``max_stages`` codes per group.
    Returns ``code_groups`` (group of each code, in order)."""
    N, D = coefs.shape
    d = D // groups
    g = torch.Generator().manual_seed(seed)
    resid = coefs.float().reshape(N, groups, d).permute(1, 0, 2).contiguous()  # [G, N, d]

    def stage(r: torch.Tensor) -> tuple[torch.Tensor, float]:
        cb = kmeans(r[None], K, iters, g)
        new = r - cb[0][nearest_codewords(r[None], cb)[0]]
        return new, float((r * r).sum(-1).mean() - (new * new).sum(-1).mean())

    cand = [stage(resid[j]) for j in range(groups)]
    stages = [0] * groups
    order: list[int] = []
    while len(order) < M:
        j = max(range(groups), key=lambda i: cand[i][1] if stages[i] < max_stages else -math.inf)
        order.append(j)
        resid[j] = cand[j][0]
        stages[j] += 1
        if stages[j] < max_stages:
            cand[j] = stage(resid[j])
    return order


class ProductQuantizer(nn.Module):
    """``forward(z, counts=None)`` -> ``(z_q, indices, stats)``.

    Args:
        dim: latent channels D (divisible by the number of groups).
        M: codes per position.
        K: codewords per codebook (one codebook per code).
        decay: EMA decay of codeword statistics.
        restart_threshold: EMA usage (assignments per step) below which a codeword is restarted.
        beta: weight of the commitment loss ``||z - sg(z_q)||^2``.
        code_groups: group of each code in nested order (default ``0..M-1``: product
            quantization).
        groups: G, the groups of the latent (default M); a group without codes is never coded.

    Shapes: ``z``, ``z_q``: ``[B, D, h, w]``; ``indices``: int64 ``[B, M, h, w]`` in ``[0, K)``.
    ``counts`` (int ``[B]`` or ``[B, h, w]``): codes kept per position (a nested prefix; the
    others add nothing). ``stats``: ``commit_loss`` (scalar tensor, against all M codes),
    ``perplexity`` (``[M]``, of this batch) and, with ``counts`` or when some group has no
    code at all, ``has_code`` (bool ``[B, G, h, w]``: groups with at least one kept code).
    """

    def __init__(
        self,
        dim: int,
        M: int,
        K: int,
        decay: float = 0.99,
        restart_threshold: float = 0.5,
        beta: float = 0.25,
        code_groups: list[int] | None = None,
        groups: int | None = None,
    ) -> None:
        super().__init__()
        code_groups = list(range(M)) if not code_groups else list(code_groups)
        G = groups or M
        if len(code_groups) != M or not all(0 <= g < G for g in code_groups):
            raise ValueError(f"code_groups needs M={M} group numbers in [0, {G}), got {code_groups}")
        if dim % G:
            raise ValueError(f"dim {dim} is not divisible by the {G} groups")
        self.dim, self.M, self.K, self.G, self.d = dim, M, K, G, dim // G
        self.decay, self.restart_threshold, self.beta = decay, restart_threshold, beta
        self.code_groups = code_groups
        self.complete = len(set(code_groups)) == G  # every group has a code
        stage = [code_groups[:j].count(g) for j, g in enumerate(code_groups)]
        # Codes of equal stage belong to distinct groups and are found together (one bmm each).
        self.levels = [[j for j in range(M) if stage[j] == s] for s in range(max(stage) + 1)]
        self.register_buffer("code_group", torch.tensor(code_groups), persistent=False)
        for s, level in enumerate(self.levels):  # index tensors on the module's device, made once
            self.register_buffer(f"level_codes{s}", torch.tensor(level), persistent=False)
            groups_of = torch.tensor([code_groups[j] for j in level])
            self.register_buffer(f"level_groups{s}", groups_of, persistent=False)
        self.register_buffer("codebooks", torch.randn(M, K, self.d) / math.sqrt(self.d))
        self.register_buffer("ema_count", torch.ones(M, K))
        self.register_buffer("ema_sum", self.codebooks.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _level(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, their groups) of residual stage ``s``: int64 index tensors."""
        return getattr(self, f"level_codes{s}"), getattr(self, f"level_groups{s}")

    @property
    def residual(self) -> bool:
        """True when some group takes more than one code."""
        return len(self.levels) > 1

    # -- shapes -------------------------------------------------------------------------
    def _split(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] -> [G, B*h*w, d]"""
        B, D, h, w = z.shape
        return z.reshape(B, self.G, self.d, h, w).permute(1, 0, 3, 4, 2).reshape(self.G, -1, self.d)

    def _merge(self, v: torch.Tensor, B: int, h: int, w: int) -> torch.Tensor:
        """[G, B*h*w, d] -> [B, D, h, w]"""
        return v.reshape(self.G, B, h, w, self.d).permute(1, 0, 4, 2, 3).reshape(B, self.dim, h, w)

    @staticmethod
    def _flat_counts(counts: torch.Tensor, B: int, h: int, w: int) -> torch.Tensor:
        """Counts int [B] or [B, h, w] -> [B*h*w]"""
        counts = counts[:, None, None].expand(B, h, w) if counts.dim() == 1 else counts
        return counts.reshape(-1)

    # -- core ---------------------------------------------------------------------------
    def _assign(self, groups: torch.Tensor, codebooks: torch.Tensor | None = None):
        """The residual pass: ``groups`` [G, N, d] (float32) -> (inputs [M, N, d]: what each code
        quantized, indices [M, N], values [M, N, d]: the chosen codewords)."""
        cb = self.codebooks if codebooks is None else codebooks
        M, (_, N, d) = self.M, groups.shape
        inputs = groups.new_empty(M, N, d)
        values = groups.new_empty(M, N, d)
        idx = torch.empty(M, N, dtype=torch.int64, device=groups.device)
        left = groups.clone() if self.residual else groups
        for s in range(len(self.levels)):
            js, gs = self._level(s)
            x = left[gs]
            k = nearest_codewords(x, cb[js])
            v = torch.gather(cb[js], 1, k.unsqueeze(-1).expand(-1, -1, d))
            inputs[js], idx[js], values[js] = x, k, v
            if self.residual:
                left[gs] = x - v
        return inputs, idx, values

    def _sum(self, values: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Per group, the sum of its kept codes: values [M, N, d], keep bool [M, N] -> [G, N, d]."""
        if not self.residual and keep is None:
            return values[self.code_group.argsort()]
        if keep is not None:
            values = values * keep.unsqueeze(-1)
        out = values.new_zeros(self.G, *values.shape[1:])
        return out.index_add_(0, self.code_group, values)

    def _has_code(self, keep: torch.Tensor, B: int, h: int, w: int) -> torch.Tensor:
        """keep bool [M, N] -> groups with a kept code, bool [B, G, h, w]"""
        n = keep.new_zeros(self.G, keep.shape[1], dtype=torch.int32)
        has = n.index_add_(0, self.code_group, keep.int()) > 0
        return has.reshape(self.G, B, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def indices(self, z: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Indices int64 [B, M, h, w] of ``z`` [B, D, h, w], computed ``chunk`` positions at a
        time (no statistics, no [M, N, K] table of the whole image: what large images are
        encoded with)."""
        B, _, h, w = z.shape
        flat = self._split(z.float())
        idx = torch.cat([self._assign(flat[:, i : i + chunk])[1] for i in range(0, flat.shape[1], chunk)], 1)
        return idx.reshape(self.M, B, h, w).permute(1, 0, 2, 3)

    def dequantize(
        self, indices: torch.Tensor, counts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The quantized latent [B, D, h, w] of indices [B, m, h, w] (the first m codes; with
        ``counts``, codes j >= counts add nothing), and ``has_code`` (bool [B, G, h, w]; None
        when all M codes are present and every group has one)."""
        B, m, h, w = indices.shape
        if m > self.M:
            raise ValueError(f"{m} codes given, the quantizer has {self.M}")
        idx = indices.permute(1, 0, 2, 3).reshape(m, -1)
        if m < self.M:
            idx = torch.cat([idx, idx.new_zeros(self.M - m, idx.shape[1])])
        v = torch.gather(self.codebooks, 1, idx.unsqueeze(-1).expand(-1, -1, self.d))
        if m == self.M and counts is None and self.complete:
            return self._merge(self._sum(v, None), B, h, w), None
        if counts is None:
            n = torch.full_like(idx[0], m)
        else:
            n = self._flat_counts(counts.to(idx.device), B, h, w)
        keep = torch.arange(self.M, device=idx.device)[:, None] < n.clamp(max=m)[None]
        return self._merge(self._sum(v, keep), B, h, w), self._has_code(keep, B, h, w)

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantized latent [B, D, h, w] from all M indices [B, M, h, w] (exactly the forward's z_q)."""
        return self.dequantize(indices)[0]

    def forward(self, z: torch.Tensor, counts: torch.Tensor | None = None):
        B, _, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            zf = z.float()
            groups = self._split(zf)
            if self.training and not bool(self.initialized):
                self.init_from(groups)
            with torch.no_grad():
                inputs, idx, values = self._assign(groups)
            if self.training:
                self._ema_update(inputs, idx)
            z_full = self._merge(self._sum(values, None), B, h, w)
            commit = self.beta * F.mse_loss(zf, z_full)
            z_q, stats = z_full, {}
            if counts is None and not self.complete:
                stats["has_code"] = self._has_code(torch.ones_like(idx, dtype=torch.bool), B, h, w)
            if counts is not None:
                n = self._flat_counts(counts.to(z.device), B, h, w)
                keep = torch.arange(self.M, device=z.device)[:, None] < n[None]
                z_q = self._merge(self._sum(values, keep), B, h, w)
                stats["has_code"] = self._has_code(keep, B, h, w)
            cnt = F.one_hot(idx, self.K).sum(1).float()  # [M, K]
            p = cnt / cnt.sum(-1, keepdim=True)
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))
        if zf.requires_grad:  # straight-through gradient; otherwise exactly the codewords
            z_q = zf + (z_q - zf).detach()
        indices = idx.reshape(self.M, B, h, w).permute(1, 0, 2, 3)
        return z_q.to(z.dtype), indices, {"commit_loss": commit, "perplexity": perplexity, **stats}

    # -- learning -----------------------------------------------------------------------
    @torch.no_grad()
    def init_from(self, groups: torch.Tensor, iters: int = 10) -> None:
        """Initializes the codebooks by k-means, stage after stage, each on the residuals its
        code will see: ``groups`` [G, N, d], encoder outputs split into groups (float32)."""
        g = torch.Generator(device="cpu").manual_seed(0)
        cb = self.codebooks.clone()
        left = groups.clone()
        for s in range(len(self.levels)):
            js, gs = self._level(s)
            cb[js] = kmeans(left[gs], self.K, iters, g)
            left[gs] = left[gs] - torch.gather(
                cb[js], 1, nearest_codewords(left[gs], cb[js]).unsqueeze(-1).expand(-1, -1, self.d)
            )
        if _distributed():
            dist.broadcast(cb, 0)
        self.codebooks.copy_(cb)
        self.ema_sum.copy_(cb)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA k-means step: ``flat`` [M, N, d], what each code quantized; ``idx`` [M, N]."""
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
