"""Tokens -> the decoder's latent, in numpy (what ``PQVAE.latent`` computes in torch).

Each code adds its codeword to its group, codes in index order (the order torch's
``index_add_`` sums them), so the latent is the same on every machine; a group without a
code takes the learned fill of a nested model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class Dequantizer:
    """``latent(tokens, counts)``: float32 [D, h, w] of tokens int [m, h, w].

    ``config``: the PQVAEConfig fields (``latent_dim``, ``M``, ``K``, ``code_groups``,
    ``groups``, ``nested``); ``codebooks`` float32 [M, K, d]; ``fill`` float32 [G, d] (nested
    models) or None."""

    def __init__(self, config: Mapping, codebooks: np.ndarray, fill: np.ndarray | None = None) -> None:
        self.M, self.K, D = int(config["M"]), int(config["K"]), int(config["latent_dim"])
        self.code_groups = list(config.get("code_groups") or range(self.M))
        self.G = int(config.get("groups") or self.M)
        self.d = D // self.G
        self.nested = bool(config.get("nested"))
        if codebooks.shape != (self.M, self.K, self.d):
            raise ValueError(f"codebooks {codebooks.shape}, expected {(self.M, self.K, self.d)}")
        self.codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
        if fill is not None:
            fill = np.ascontiguousarray(fill, dtype=np.float32).reshape(self.G, self.d)
        self.fill = fill

    def latent(self, tokens: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """float32 [D, h, w] of tokens int [m, h, w] (the first m codes; m < M: nested models
        only); ``counts`` int [h, w] (each <= m): codes present per position (default m)."""
        m, h, w = tokens.shape
        if not 1 <= m <= self.M or (not self.nested and (m < self.M or counts is not None)):
            raise ValueError(f"{m} codes given, the model needs {self.M}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.K):
            raise ValueError(f"tokens must be in 0..{self.K - 1}")
        z = np.zeros((self.G, h, w, self.d), dtype=np.float32)
        present = np.zeros((self.G, h, w), dtype=bool)
        for j in range(m):
            g = self.code_groups[j]
            value = self.codebooks[j][tokens[j]]  # [h, w, d]
            if counts is None:
                z[g] += value
                present[g] = True
            else:
                keep = counts > j
                z[g] += value * keep[..., None]
                present[g] |= keep
        if self.nested and self.fill is not None:
            z = np.where(present[..., None], z, self.fill[:, None, None, :])
        return np.ascontiguousarray(z.transpose(0, 3, 1, 2).reshape(self.G * self.d, h, w))
