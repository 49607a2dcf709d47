"""One model for every rate: a nested PQ-VAE and its layered entropy model <-> version-2 files.

A file codes the first ``m`` sub-vectors of every latent position, plus sub-vector ``m`` at
the first ``extra`` positions of the base schedule's order (fine rate steps: the decoder
gives absent sub-vectors its learned fill). Sub-vector groups are coded one after another,
each in its own range-coder stream (a quality layer): group 0 in the spatial stages of the
base schedule, group g >= 1 in one step given the groups before it. So the rate is chosen
per image (``m``/``extra`` from a target bpp, size or quality) and a file cut after a layer
(:func:`codec.bitstream.truncate`) is the file of that lower rate.

Symbols of a layer g >= 1, in stream order: the fully coded sub-vectors of the group at
every position (positions row-major, sub-vectors of a position together), then sub-vector
``m`` (if it is in the group and ``extra`` > 0) at the first ``extra`` positions in order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np
import torch

from . import bitstream
from .api import ImageCodec, check_memory, checked_images, one_thread
from .checks import checked_crop, checked_rate, integer
from .effort import effort_steps
from .entropy import RangeDecoder, RangeEncoder, symbol_bits
from .entropy.schedule import CodingSchedule, position_order
from .errors import CodecError

BAND_ROWS = 16
"""Rows of positions the channel model's logits are computed for at a time (codec.tiling)."""

DEFAULT_QUALITY = 30.0
"""The rate of a file when none is asked for: ``quality`` 30, i.e. 10.3 of the default model's
32 codes per position (about 0.2 bpp on Kodak). ``quality=100`` or ``m=M`` is the model's
full rate."""


@dataclass(frozen=True)
class RatePoint:
    """How much of the token grid a file codes: ``m`` sub-vectors everywhere, sub-vector m
    at the first ``extra`` positions too."""

    m: int
    extra: int = 0

    def counts(self, h: int, w: int, order: str) -> torch.Tensor:
        """Sub-vectors coded at each position: int64 ``[h, w]``."""
        counts = torch.full((h * w,), self.m, dtype=torch.int64)
        counts[torch.from_numpy(position_order(h, w, order)[: self.extra])] += 1
        return counts.view(h, w)


class LayeredImageCodec(ImageCodec):
    """:class:`~codec.api.ImageCodec` for a nested PQ-VAE + ``LayeredEntropyModel``.

    ``compress(image, m=, bpp=, size=, quality=)`` picks the rate per image (at most one of
    them; default: ``quality`` :data:`DEFAULT_QUALITY`); ``decompress(data, layers=)``
    decodes the first layers.
    """

    layered = True

    def __init__(self, autoencoder, entropy_model, schedule=None, **kwargs) -> None:
        super().__init__(autoencoder, entropy_model, schedule, **kwargs)
        if not autoencoder.cfg.nested:
            raise ValueError("a layered codec needs a nested autoencoder")
        self.groups = tuple(entropy_model.cfg.groups)
        self.bounds = list(accumulate(self.groups, initial=0))

    # -- the entropy model's calls ---------------------------------------------------------
    @torch.no_grad()
    def _group_logits(self, tokens: torch.Tensor, g: int, portable: bool = True) -> np.ndarray:
        """float32 [h*w, size_g, K] logits of group g >= 1 given tokens [>= b_g, h, w]."""
        if portable:
            return self.portable_models()["channel"].logits(tokens[: self.bounds[g]].numpy(), g)
        with one_thread():
            return self.entropy_model.group_logits(tokens[None, : self.bounds[g]], g)[0].numpy()

    def _group_logit_bands(self, tokens: torch.Tensor, g: int, portable: bool = True):
        """(row slice, float32 logits [rows * w, size_g, K]) of group g, band by band in raster
        order: each band computed with ``channel_depth`` rows of context above and below (the
        reach of the channel model's 3x3 convolutions), so the logits are exactly those of the
        whole grid (tested) and memory stays that of one band however large the image."""
        _, h, w = tokens.shape
        if h <= BAND_ROWS:
            yield slice(0, h), self._group_logits(tokens, g, portable)
            return
        reach = self.entropy_model.cfg.channel_depth
        for r0 in range(0, h, BAND_ROWS):
            r1 = min(r0 + BAND_ROWS, h)
            a, b = max(r0 - reach, 0), min(r1 + reach, h)
            logits = self._group_logits(tokens[:, a:b], g, portable)
            yield slice(r0, r1), logits[(r0 - a) * w : (r1 - a) * w]

    def _layer_symbols(self, g: int, point: RatePoint, order: np.ndarray) -> tuple[slice, np.ndarray]:
        """(sub-vectors coded at every position, positions of the partial sub-vector) of group g."""
        lo, hi = self.bounds[g], self.bounds[g + 1]
        full = slice(lo, max(lo, min(point.m, hi)))
        partial = order[: point.extra] if point.extra and lo <= point.m < hi else order[:0]
        return full, partial

    # -- tokens <-> layer streams -----------------------------------------------------------
    def encode_layers(self, tokens: np.ndarray, point: RatePoint) -> tuple[list[bytes], list[int]]:
        """Tokens int [M, h, w] -> (one stream per coded layer, the CRC of each layer's symbols)."""
        M, h, w = tokens.shape
        tok = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
        g0 = self.groups[0]
        base, _ = self.encode_tokens(tokens[:g0], estimate=False)  # portable as self.portable
        streams = [base]
        crcs = [bitstream.token_checksum(tokens[:g0])]
        order = position_order(h, w, self.schedule.order)
        flat = tokens.reshape(M, h * w)
        for g in range(1, bitstream.layers_needed(self.groups, point.m, point.extra)):
            full, partial = self._layer_symbols(g, point, order)
            n = full.stop - full.start
            sym_full = flat[full].T  # [hw, n]: raster order, a position's sub-vectors together
            sym_part = flat[full.stop, partial] if len(partial) else np.zeros(0, np.int64)
            part_logits = np.empty((len(partial), self.cfg_K), np.float32)
            enc = RangeEncoder()
            for rows, logits in self._group_logit_bands(tok, g, self.portable):
                pos = slice(rows.start * w, rows.stop * w)
                if n:
                    enc.encode_logits(sym_full[pos].reshape(-1), logits[:, :n].reshape(-1, self.cfg_K))
                if len(partial):
                    inside = (partial >= pos.start) & (partial < pos.stop)
                    part_logits[inside] = logits[partial[inside] - pos.start, n]
            if len(partial):  # the partial sub-vector after the full ones, in the schedule's order
                enc.encode_logits(sym_part, part_logits)
            streams.append(enc.finish())
            crcs.append(bitstream.token_checksum(np.concatenate([sym_full.reshape(-1), sym_part])))
        return streams, crcs

    def decode_layers(self, header: bitstream.Header, payload: bytes, layers: int) -> np.ndarray:
        """The first ``layers`` layer streams -> tokens int64 [M, h, w] (uncoded ones 0);
        CodecError when a layer fails its checksum."""
        M, h, w = header.token_shape
        point = RatePoint(header.m, header.extra)
        g0 = self.groups[0]
        schedule = CodingSchedule(header.stages, header.alpha, header.order)
        tokens = np.zeros((M, h, w), dtype=np.int64)
        starts = list(accumulate(header.layer_bytes, initial=0))
        portable = bool(header.flags & bitstream.FLAG_PORTABLE)
        tokens[:g0] = self.decode_tokens(payload[: starts[1]], (g0, h, w), schedule, portable=portable)
        self._check_layer(bitstream.token_checksum(tokens[:g0]), header, 0)
        order = position_order(h, w, header.order)
        flat = tokens.reshape(M, h * w)
        tok = torch.from_numpy(tokens)  # shares memory with `tokens`
        for g in range(1, layers):
            full, partial = self._layer_symbols(g, point, order)
            n = full.stop - full.start
            dec = RangeDecoder(payload[starts[g] : starts[g + 1]])
            part_logits = np.empty((len(partial), self.cfg_K), np.float32)
            for rows, logits in self._group_logit_bands(tok, g, portable):
                pos = slice(rows.start * w, rows.stop * w)
                if n:
                    got = dec.decode_logits(logits[:, :n].reshape(-1, self.cfg_K))
                    flat[full, pos] = got.reshape(pos.stop - pos.start, n).T
                if len(partial):
                    inside = (partial >= pos.start) & (partial < pos.stop)
                    part_logits[inside] = logits[partial[inside] - pos.start, n]
            if len(partial):
                flat[full.stop, partial] = dec.decode_logits(part_logits)
            coded = np.concatenate(
                [flat[full].T.reshape(-1), flat[full.stop, partial] if len(partial) else []]
            )
            self._check_layer(bitstream.token_checksum(coded.astype(np.int64)), header, g)
        return tokens

    @staticmethod
    def _check_layer(crc: int, header: bitstream.Header, g: int) -> None:
        if crc != header.layer_crcs[g]:
            raise CodecError(
                f"layer {g} fails its checksum: the file is corrupt or the decoder differs from the encoder"
            )

    @property
    def cfg_K(self) -> int:
        return self.autoencoder.cfg.K

    # -- rate control ---------------------------------------------------------------------------
    def symbol_costs(self, tokens: np.ndarray) -> tuple[float, np.ndarray]:
        """(bits of the base layer, bits [M, h*w] of every other sub-vector at each position
        (rows < groups[0] are 0)): what any rate point costs, before the header."""
        M, h, w = tokens.shape
        g0 = self.groups[0]
        _, base_bits = self.encode_tokens(tokens[:g0], estimate=True)
        tok = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
        costs = np.zeros((M, h * w))
        flat = tokens.reshape(M, h * w)
        for g in range(1, len(self.groups)):
            lo, hi = self.bounds[g], self.bounds[g + 1]
            for rows, logits in self._group_logit_bands(tok, g, self.portable):  # [rows * w, n, K]
                pos = slice(rows.start * w, rows.stop * w)
                sym = flat[lo:hi, pos].T.reshape(-1)
                bits = symbol_bits(sym, logits.reshape(-1, self.cfg_K))
                costs[lo:hi, pos] = bits.reshape(pos.stop - pos.start, hi - lo).T
        return base_bits, costs

    def quality_subvectors(self, quality: float) -> float:
        """Sub-vectors per position (fractional) of ``quality`` 0-100: the base layer plus
        that share of the others."""
        g0, M = self.groups[0], self.autoencoder.cfg.M
        return g0 + (M - g0) * quality / 100

    def plan(
        self,
        tokens: np.ndarray,
        size: tuple[int, int],
        *,
        m: int | None = None,
        bpp: float | None = None,
        max_bytes: int | None = None,
        quality: float | None = None,
        costs: tuple[float, np.ndarray] | None = None,
    ) -> RatePoint:
        """The rate point of one image for at most one of: ``m`` (sub-vectors), ``bpp`` (the
        point whose estimated file size is nearest), ``max_bytes`` (the largest point whose
        estimate fits; :meth:`compress` then checks the real size) or ``quality`` (0-100:
        the share of the model's sub-vectors beyond the base layer, fractional); none:
        ``quality`` :data:`DEFAULT_QUALITY`."""
        rate = checked_rate(bpp=bpp, size=max_bytes, quality=quality, m=m)  # ValueError if invalid
        bpp, max_bytes, quality, m = (rate.get(k) for k in ("bpp", "size", "quality", "m"))
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
        *,
        m: int | None = None,
        bpp: float | None = None,
        size: int | None = None,
        quality: float | None = None,
        effort: int = 0,
    ) -> list[bytes]:
        """Images -> .pqm bytes at the rate asked (see :meth:`plan`); ``size``: the file is
        never larger than ``size`` bytes (CodecError if even the base layer is larger).
        ``effort`` > 0: the token grid is refined for the rate point planned from the
        encoder's grid, then the point is planned again from the refined grid."""
        if stages is not None:
            raise ValueError(
                "a layered model codes every stage; choose the rate with m, bpp, size or quality"
            )
        rate = checked_rate(bpp=bpp, size=size, quality=quality, m=m)  # ValueError, before any work
        bpp, size, quality, m = (rate.get(k) for k in ("bpp", "size", "quality", "m"))
        effort_steps(effort)  # ValueError for an effort out of range, before any work
        xs = checked_images(images, max_pixels)
        out = []
        for x, tokens in zip(xs, self.tokenize(xs)):
            hw = x.shape[:2]
            if effort:
                _, h, w = tokens.shape
                first = self.plan(tokens, hw, m=m, bpp=bpp, max_bytes=size, quality=quality)
                tokens = self.tokenize([x], effort, [first.counts(h, w, self.schedule.order)])[0]
            if size is None:
                out.append(self.pack_tokens(tokens, hw, self.plan(tokens, hw, m=m, bpp=bpp, quality=quality)))
                continue
            costs = self.symbol_costs(tokens)
            budget = size
            for _ in range(8):  # the estimate is within a few bytes: shrink the budget until it fits
                data = self.pack_tokens(tokens, hw, self.plan(tokens, hw, max_bytes=budget, costs=costs))
                if len(data) <= size or budget == 1:  # fits, or the smallest point does not
                    break
                budget = max(1, budget - (len(data) - size + 1))  # 1 byte plans the smallest point
            if len(data) > size:
                raise CodecError(f"no file of this image fits in {size} bytes (the smallest is {len(data)})")
            out.append(data)
        return out

    def compress(self, image, max_pixels: int | None = None, stages: int | None = None, **rate) -> bytes:
        """One image -> .pqm bytes; ``rate``: m=, bpp=, size= or quality= (see :meth:`plan`),
        and effort= (0..9)."""
        return self.compress_batch([image], max_pixels, stages, **rate)[0]

    @torch.no_grad()
    def decompress(
        self,
        data: bytes,
        stages: int | None = None,
        max_pixels: int | None = None,
        decoder: str = "fidelity",
        layers: int | None = None,
        crop: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """.pqm bytes -> uint8 [H, W, 3]; ``layers``: decode only the first layers (a coarser image,
        exactly the file cut there by ``codec truncate``)."""
        if stages is not None:
            raise CodecError("layered files decode by layers, not stages (use layers=)")
        header, payload = self.unpack_own(data, decoder, max_pixels)
        cfg = self.autoencoder.cfg
        if (header.stride, header.M, header.K, header.groups) != (cfg.stride, cfg.M, cfg.K, self.groups):
            raise CodecError("file's stride/M/K/groups do not match the model")
        coded = len(header.layer_bytes)
        if layers is not None and not 1 <= integer("layers", layers, CodecError) <= coded:
            raise CodecError(f"layers must be in 1..{coded} for this file, got {layers}")
        if crop is not None:  # before the tokens are decoded: a bad crop fails at once
            crop = checked_crop(crop, (header.height, header.width))
        if layers is not None and layers < coded:  # the file cut there, from the header already read
            header, payload = bitstream.cut_layers(header, payload, int(layers))
        check_memory(header.height, header.width)
        tokens = self.decode_layers(header, payload, len(header.layer_bytes))
        M, h, w = header.token_shape
        n = min(M, header.m + 1)
        t = torch.from_numpy(tokens[:n])[None].to(self.device)
        counts = RatePoint(header.m, header.extra).counts(h, w, header.order)[None].to(self.device)
        z = self.autoencoder.latent(t, counts)
        return self.render(z, (header.height, header.width), decoder, crop)
