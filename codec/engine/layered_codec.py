"""One model for every rate: a nested PQ-VAE and its layered entropy model <-> version-2 files.

A file codes the first ``m`` sub-vectors of every latent position, plus sub-vector ``m`` at
the first ``extra`` positions of the base schedule's order (fine rate steps: the decoder
gives absent sub-vectors its learned fill). Sub-vector groups are coded one after another,
each in its own range-coder stream (a quality layer): group 0 in the spatial stages of the
base schedule, group g >= 1 in one step given the groups before it. So the rate is chosen
per image (``m``/``extra`` from a target bpp, size or quality) and a file cut after a layer
(:func:`codec.format.bitstream.truncate`) is the file of that lower rate. The layer streams are
:class:`codec.entropy.token_coding.LayeredTokenCoder`'s; this module adds the encoder's side: rate
control and compression.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..entropy.schedule import position_order
from ..entropy.token_coding import BAND_ROWS as BAND_ROWS  # the channel model's band height (tests)
from ..entropy.token_coding import RatePoint
from ..errors import CodecError
from ..format import bitstream
from ..format.checks import Rate
from .api import ImageCodec, checked_images
from .effort import effort_steps, rd_optimize, rd_search

DEFAULT_QUALITY = 30.0
"""The rate of a file when none is asked for: ``quality`` 30, i.e. 10.3 of the default model's
32 codes per position (about 0.2 bpp on Kodak). ``quality=100`` or ``m=M`` is the model's
full rate."""


BASE_STAGES = 6
"""Spatial stages of the base layer in the files a layered codec writes (the model's own count
where that is fewer; ``codec encode --base-stages`` chooses another). The decoder runs the
masked transformer once per stage, so fewer stages decode faster, and each stage predicts its
positions from fewer known ones, so the file grows a little: on held-out BSDS500 photos 6
instead of the default model's 8 cost 1.6 bytes a photo for 5-12% less decode time
(results/decode_only.md). Files record their schedule: every count decodes."""


class LayeredImageCodec(ImageCodec):
    """:class:`~codec.engine.api.ImageCodec` for a nested PQ-VAE + ``LayeredEntropyModel``.

    ``compress(image, m=, bpp=, size=, quality=)`` picks the rate per image (at most one of
    them; default: ``quality`` :data:`DEFAULT_QUALITY`); ``decompress(data, layers=)``
    decodes the first layers.
    """

    layered = True

    def __init__(self, autoencoder, entropy_model, schedule=None, latent_weights=None, **kwargs) -> None:
        if not autoencoder.cfg.nested:
            raise ValueError("a layered codec needs a nested autoencoder")
        super().__init__(autoencoder, entropy_model, schedule, **kwargs)
        if self.schedule.stages > BASE_STAGES:
            self.schedule = replace(self.schedule, stages=BASE_STAGES)
        self.groups = self.tokens.groups
        self.latent_weights = latent_weights
        """[latent_dim] or None: how effort > 0 weighs each latent channel's error (the
        bundle's ``schema.LATENT_WEIGHTS``; :func:`codec.engine.effort.latent_weights`)."""

    # -- tokens <-> layer streams (codec.entropy.token_coding) ---------------------------------------
    def encode_layers(self, tokens: np.ndarray, point: RatePoint) -> tuple[list[bytes], list[int]]:
        """Tokens int [M, h, w] -> (one stream per coded layer, the CRC of each layer's symbols)."""
        return self.tokens.encode_layers(tokens, point, self.portable)

    def decode_layers(
        self, header: bitstream.Header, payload: bytes, layers: int | None = None
    ) -> np.ndarray:
        """The layer streams of a file (``layers``: its first layers only) -> tokens int64
        [M, h, w] (uncoded ones 0); CodecError when a layer fails its checksum."""
        if layers is not None and layers < len(header.layer_bytes):
            header, payload = bitstream.cut_layers(header, payload, layers)
        return self.tokens.decode_layers(header, payload)

    # -- rate control ---------------------------------------------------------------------------
    def symbol_costs(self, tokens: np.ndarray) -> tuple[float, np.ndarray]:
        """(bits of the base layer, bits [M, h*w] of every other code at each position (rows <
        groups[0] are 0)): what any rate point costs, before the header."""
        return self.tokens.symbol_costs(tokens, self.portable)

    def quality_subvectors(self, quality: float) -> float:
        """Sub-vectors per position (fractional) of ``quality`` 0-100: the base layer plus
        that share of the others."""
        g0, M = self.groups[0], self.autoencoder.cfg.M
        return g0 + (M - g0) * quality / 100

    def plan(
        self,
        tokens: np.ndarray,
        size: tuple[int, int],
        rate: Rate | None = None,
        costs: tuple[float, np.ndarray] | None = None,
    ) -> RatePoint:
        """The rate point of one image (tokens [M, h, w], ``size`` = (H, W) pixels) for
        ``rate`` (None: ``Rate()``): ``m`` (sub-vectors), ``bpp`` (the point whose estimated file size is
        nearest), ``size`` (the largest point whose estimate fits; :meth:`compress` then
        checks the real size) or ``quality`` (0-100: the share of the model's sub-vectors
        beyond the base layer, fractional); none: ``quality`` :data:`DEFAULT_QUALITY`.
        ``costs``: :meth:`symbol_costs` of ``tokens`` if already known."""
        rate = Rate() if rate is None else rate
        bpp, max_bytes, quality, m = rate.bpp, rate.size, rate.quality, rate.m
        M, h, w = tokens.shape
        g0 = self.groups[0]
        if not rate:
            quality = DEFAULT_QUALITY
        if m is not None:
            if not g0 <= m <= M:
                raise ValueError(f"m must be in {g0}..{M}, got {m}")
            return RatePoint(m)
        if quality is not None:
            r = self.quality_subvectors(quality)
            mm = min(int(r), M)
            return RatePoint(mm, 0 if mm == M else int(round((r - mm) * h * w)) % (h * w))
        base_bits, per = costs or self.symbol_costs(tokens)
        order = position_order(h, w, self.schedule.order)
        header_bits = 8 * bitstream.layered_header_estimate(len(self.groups))
        target = (bpp * size[0] * size[1] if bpp is not None else 8 * max_bytes) - header_bits
        done = base_bits
        for j in range(g0, M + 1):
            if j == M:
                return RatePoint(M)
            step = np.cumsum(per[j][order])  # cost of sub-vector j at the first e+1 positions
            if done + step[-1] > target:
                e = int(np.searchsorted(step, target - done, side="right"))  # largest e that fits
                if (
                    bpp is not None
                    and e < len(step)
                    and abs(done + step[e] - target) < abs(done + (step[e - 1] if e else 0) - target)
                ):
                    e += 1  # the nearest, not the largest below
                return RatePoint(j, e) if e < len(step) else RatePoint(j + 1)
            done += step[-1]
        return RatePoint(M)

    # -- images <-> bytes ---------------------------------------------------------------------
    def header_for(
        self,
        size: tuple[int, int],
        point: RatePoint,
        streams: list[bytes] | None = None,
        crcs: list[int] | None = None,
    ) -> bitstream.Header:
        """The version-2 header of a file of this model at ``point`` with these layer streams;
        without them, with an empty stream (CRC 0) for each layer ``point`` needs."""
        if streams is None:
            n = bitstream.layers_needed(self.groups, point.m, point.extra)
            streams, crcs = [b""] * n, [0] * n
        return replace(
            self.header(size),
            groups=self.groups,
            m=point.m,
            extra=point.extra,
            layer_bytes=tuple(len(b) for b in streams),
            layer_crcs=tuple(crcs),
        )

    def pack_tokens(self, tokens: np.ndarray, size: tuple[int, int], point: RatePoint) -> bytes:
        streams, crcs = self.encode_layers(tokens, point)
        return bitstream.pack(self.header_for(size, point, streams, crcs), b"".join(streams))

    @torch.no_grad()
    def compress_batch(
        self,
        images: list,
        max_pixels: int | None = None,
        stages: int | None = None,
        effort: int = 0,
        rate: Rate | None = None,
        **rate_args,
    ) -> list[bytes]:
        """Images -> .pqm bytes at ``rate`` (a :class:`~codec.format.checks.Rate`, or its
        fields as keywords: ``m=``, ``bpp=``, ``size=``, ``quality=``; see :meth:`plan`);
        with ``size`` the file is never larger than that many bytes (CodecError if even the
        base layer is larger). ``effort`` > 0: the codes are rate-distortion optimised
        (:func:`codec.engine.effort.rd_optimize`) for the rate point planned from the encoder's
        grid, then the point is planned again from the optimised grid."""
        if stages is not None:
            raise ValueError(
                "a layered model codes every stage; choose the rate with m, bpp, size or quality"
            )
        if rate is not None and rate_args:
            raise ValueError("give rate= or its fields (bpp, size, quality, m), not both")
        rate = Rate(**rate_args) if rate is None else rate  # ValueError, before any work
        size = rate.size
        effort_steps(effort)  # ValueError for an effort out of range, before any work
        xs = checked_images(images, max_pixels)
        out = []
        q = self.autoencoder.quantizer
        for x, tokens in zip(xs, [None] * len(xs) if effort else self.tokenize(xs)):
            hw = x.shape[:2]
            if effort:  # codes chosen for the rate point the encoder's own (nearest) grid plans
                z = self.encoder_latent(x)
                tokens = q.indices(z[None])[0].cpu().numpy()
                costs = self.symbol_costs(tokens)
                first = self.plan(tokens, hw, rate, costs)
                codes = first.m + bool(first.extra)
                tokens = rd_optimize(
                    q,
                    self.tokens,
                    z,
                    codes,
                    nearest=tokens,
                    costs=costs[1],
                    weights=self.latent_weights,
                    **rd_search(effort),
                )
            if size is None:
                out.append(self.pack_tokens(tokens, hw, self.plan(tokens, hw, rate)))
                continue
            costs = self.symbol_costs(tokens)
            budget = size
            for _ in range(8):  # the estimate is within a few bytes: shrink the budget until it fits
                data = self.pack_tokens(tokens, hw, self.plan(tokens, hw, Rate(size=budget), costs))
                if len(data) <= size or budget == 1:  # fits, or the smallest point does not
                    break
                budget = max(1, budget - (len(data) - size + 1))  # 1 byte plans the smallest point
            if len(data) > size:
                raise CodecError(f"no file of this image fits in {size} bytes (the smallest is {len(data)})")
            out.append(data)
        return out

    def compress(self, image, max_pixels: int | None = None, stages: int | None = None, **kwargs) -> bytes:
        """One image -> .pqm bytes; ``kwargs``: those of :meth:`compress_batch` (``effort``,
        ``rate`` or its fields)."""
        return self.compress_batch([image], max_pixels, stages, **kwargs)[0]
