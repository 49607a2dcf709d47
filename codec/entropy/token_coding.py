"""Token grids <-> range-coded payloads: the entropy-coding half of a codec, without torch.

A :class:`TokenCoder` walks a coding schedule over a token grid (tile by tile, stage by
stage), asks an entropy model for the logits of each stage's positions and codes the tokens
there with the range coder; a :class:`LayeredTokenCoder` adds the quality layers of nested
models (group 0 in the spatial stages, each later group in one step given the ones before).
Encoding, decoding and rate estimation make exactly the same entropy-model calls.

The logits come from :class:`PortableLogits` (the C++ inference: the same logits on every
machine; files with ``FLAG_PORTABLE``) or, for files written before it existed, from an
:class:`EntropyLogits` the torch codec passes in (``legacy``).

Symbols of a layer g >= 1, in stream order: the fully coded codes of the group at every
position (positions row-major, the codes of a position together), then code ``m`` (if it is
in the group and ``extra`` > 0) at the first ``extra`` positions of the schedule's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

import numpy as np

from ..errors import CodecError
from ..format import bitstream
from ..format.bitstream import token_tiles
from .range_coder import RangeDecoder, RangeEncoder, information_content, symbol_bits
from .schedule import CodingSchedule, position_order

BAND_ROWS = 16
"""Rows of positions the channel model's logits are computed for at a time."""


class EntropyLogits(Protocol):
    """What a token coder asks of an entropy model (numpy in, float32 logits out)."""

    def stage_logits(self, tokens: np.ndarray, known: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """[n * M, K] logits of the flat positions ``pos`` given tokens int64 [M, h, w] at the
        flat positions ``known`` (both in coding order)."""
        ...

    def group_logits(self, tokens: np.ndarray, g: int) -> np.ndarray:
        """[h * w, size_g, K] logits of group g >= 1 given tokens int64 [>= first code of g, h, w]."""
        ...


class PortableLogits:
    """:class:`EntropyLogits` of the portable C++ inference (:mod:`codec.entropy.portable`).

    ``config``: the MIMConfig fields (a bundle's ``mim_config``); ``params``: the entropy
    model's state_dict as float arrays (float16 as bundles store them, or wider)."""

    def __init__(self, config: Mapping, params: Mapping[str, np.ndarray]) -> None:
        from .portable import PortableChannel, PortableTransformer

        if config.get("groups"):
            base = dict(config, M=config["groups"][0], groups=None)
            self.base = PortableTransformer(base, params, "base.")
            self.channel = PortableChannel(config, params, "channel.")
        else:
            self.base, self.channel = PortableTransformer(config, params), None

    def stage_logits(self, tokens: np.ndarray, known: np.ndarray, pos: np.ndarray) -> np.ndarray:
        logits = self.base.logits(tokens, known, pos)
        return logits.reshape(-1, logits.shape[-1])

    def group_logits(self, tokens: np.ndarray, g: int) -> np.ndarray:
        return self.channel.logits(tokens, g)


@dataclass(frozen=True)
class RatePoint:
    """How much of the token grid a layered file codes: ``m`` codes everywhere, code m at
    the first ``extra`` positions of the schedule's order too."""

    m: int
    extra: int = 0

    def counts(self, h: int, w: int, order: str) -> np.ndarray:
        """Codes present at each position: int64 ``[h, w]``."""
        counts = np.full(h * w, self.m, dtype=np.int64)
        counts[position_order(h, w, order)[: self.extra]] += 1
        return counts.reshape(h, w)


class TokenCoder:
    """Token grids int [M, h, w] <-> payloads of the spatial schedule (version-1 files, and
    the base layer of layered ones).

    ``portable``: a callable returning the :class:`PortableLogits` (built on first use);
    ``legacy``: the torch model's :class:`EntropyLogits` for files without
    ``FLAG_PORTABLE`` (None: such files are refused with CodecError)."""

    def __init__(
        self,
        schedule: CodingSchedule,
        portable: Callable[[], EntropyLogits],
        legacy: EntropyLogits | None = None,
    ) -> None:
        self.schedule = schedule
        self._portable_factory = portable
        self._portable: EntropyLogits | None = None
        self.legacy = legacy

    def logits_model(self, portable: bool) -> EntropyLogits:
        if portable:
            if self._portable is None:
                self._portable = self._portable_factory()
            return self._portable
        if self.legacy is None:
            raise CodecError(
                "this file was written before portable entropy coding (codec < 0.1): decoding it "
                "needs torch (pip install 'codec[encode]')"
            )
        return self.legacy

    def encode_tokens(
        self,
        tokens: np.ndarray,
        schedule: CodingSchedule | None = None,
        estimate: bool = True,
        stages: int | None = None,
        portable: bool = True,
    ) -> tuple[bytes, float]:
        """Tokens int [M, h, w] -> (payload, ideal bits under the model; 0.0 if not ``estimate``).
        ``stages``: code only the first stages. A grid over one tile is coded tile by tile
        (:func:`codec.format.bitstream.token_tiles`)."""
        model = self.logits_model(portable)
        _, h, w = tokens.shape
        enc, bits = RangeEncoder(), 0.0
        for rows, cols in token_tiles(h, w):
            tile = np.ascontiguousarray(tokens[:, rows, cols], dtype=np.int64)
            for flat, pos, logits in self._walk(model, tile, schedule or self.schedule, stages):
                symbols = flat[:, pos].T.reshape(-1)  # [n, M] row-major
                enc.encode_logits(symbols, logits)
                if estimate:  # a second quantization pass: skipped when only the bytes are wanted
                    bits += information_content(symbols, logits)
        return enc.finish(), bits

    def decode_tokens(
        self,
        payload: bytes,
        shape: tuple[int, int, int],
        schedule: CodingSchedule | None = None,
        stages: int | None = None,
        portable: bool = True,
    ) -> np.ndarray:
        """Payload -> tokens int64 [M, h, w]. With ``stages`` < S, only the first stages are
        decoded and the other positions get the model's most likely tokens."""
        model = self.logits_model(portable)
        schedule = schedule or self.schedule
        M, h, w = shape
        tokens = np.zeros((M, h, w), dtype=np.int64)
        dec = RangeDecoder(payload)
        for rows, cols in token_tiles(h, w):
            tile = np.zeros((M, rows.stop - rows.start, cols.stop - cols.start), dtype=np.int64)
            done = 0
            for flat, pos, logits in self._walk(model, tile, schedule, stages):
                flat[:, pos] = dec.decode_logits(logits).astype(np.int64).reshape(len(pos), M).T
                done += len(pos)
            th, tw = tile.shape[1:]
            if done < th * tw:  # positions of stages not decoded: the most likely tokens
                order = np.concatenate(schedule.stages_for(th, tw))
                rest = order[done:]
                guess = model.stage_logits(tile, order[:done], rest).reshape(len(rest), M, -1).argmax(-1)
                tile.reshape(M, th * tw)[:, rest] = guess.T
            tokens[:, rows, cols] = tile
        return tokens

    def choose_stages(self, tokens: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The portable model's schedule over ``tokens`` int64 [M, h, w] for an encoder that
        chooses the tokens as it goes: yields (grid positions of a stage, flat in raster order
        over h*w, int64 [n]; their logits float32 [n, M, K]); tokens written into ``tokens`` at
        those positions before the next step are what the later stages are conditioned on,
        exactly as a decoder would see them."""
        model = self.logits_model(True)
        _, h, w = tokens.shape
        grid = np.arange(h * w).reshape(h, w)
        for rows, cols in token_tiles(h, w):
            tile = np.ascontiguousarray(tokens[:, rows, cols])
            where = grid[rows, cols].reshape(-1)
            for flat, pos, logits in self._walk(model, tile, self.schedule, None):
                yield where[pos], logits.reshape(len(pos), tile.shape[0], -1)
                flat[:, pos] = tokens.reshape(tokens.shape[0], -1)[:, where[pos]]

    @staticmethod
    def _walk(
        model: EntropyLogits, tile: np.ndarray, schedule: CodingSchedule, stages: int | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The schedule over one tile: (the tile's tokens as [M, h*w] (a view), the flat
        positions of the stage, their logits [n * M, K]) per non-empty stage, in coding order.
        The logits of a stage are computed when it is reached, so a decoder that writes the
        stage's tokens into the view before the next step conditions on them."""
        M, h, w = tile.shape
        flat = tile.reshape(M, h * w)
        order = np.concatenate(schedule.stages_for(h, w))
        done = 0
        for n in schedule.counts(h, w)[:stages]:
            if n == 0:
                continue
            pos = order[done : done + n]
            yield flat, pos, model.stage_logits(tile, order[:done], pos)
            done += n


class LayeredTokenCoder(TokenCoder):
    """Token grids <-> the layer streams of a nested model's files (see the module doc):
    ``groups`` are the entropy model's group sizes; ``channel_depth`` the reach of its channel
    model in positions (logits are computed in bands of rows with that much context)."""

    def __init__(
        self,
        schedule: CodingSchedule,
        portable: Callable[[], EntropyLogits],
        groups: tuple[int, ...],
        K: int,  # noqa: N803 (the papers' name)
        channel_depth: int,
        legacy: EntropyLogits | None = None,
    ) -> None:
        super().__init__(schedule, portable, legacy)
        self.groups = tuple(groups)
        self.bounds = list(accumulate(self.groups, initial=0))
        self.K = K
        self.channel_depth = channel_depth

    def group_logit_bands(self, tokens: np.ndarray, g: int, portable: bool = True):
        """(row slice, float32 logits [rows * w, size_g, K]) of group g, band by band in raster
        order: each band computed with ``channel_depth`` rows of context above and below, so
        the logits are exactly those of the whole grid (tested) and memory stays that of one
        band however large the image."""
        model = self.logits_model(portable)
        lo = self.bounds[g]
        _, h, w = tokens.shape
        if h <= BAND_ROWS:
            yield slice(0, h), model.group_logits(np.ascontiguousarray(tokens[:lo]), g)
            return
        reach = self.channel_depth
        for r0 in range(0, h, BAND_ROWS):
            r1 = min(r0 + BAND_ROWS, h)
            a, b = max(r0 - reach, 0), min(r1 + reach, h)
            logits = model.group_logits(np.ascontiguousarray(tokens[:lo, a:b]), g)
            yield slice(r0, r1), logits[(r0 - a) * w : (r1 - a) * w]

    def layer_symbols(self, g: int, point: RatePoint, order: np.ndarray) -> tuple[slice, np.ndarray]:
        """(codes coded at every position, positions of the partial code) of group g."""
        lo, hi = self.bounds[g], self.bounds[g + 1]
        full = slice(lo, max(lo, min(point.m, hi)))
        partial = order[: point.extra] if point.extra and lo <= point.m < hi else order[:0]
        return full, partial

    def encode_layers(
        self, tokens: np.ndarray, point: RatePoint, portable: bool = True
    ) -> tuple[list[bytes], list[int]]:
        """Tokens int [M, h, w] -> (one stream per coded layer, the CRC of each layer's symbols)."""
        M, h, w = tokens.shape
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        g0 = self.groups[0]
        base, _ = self.encode_tokens(tokens[:g0], estimate=False, portable=portable)
        streams, crcs = [base], [bitstream.token_checksum(tokens[:g0])]
        order = position_order(h, w, self.schedule.order)
        flat = tokens.reshape(M, h * w)
        for g in range(1, bitstream.layers_needed(self.groups, point.m, point.extra)):
            full, partial = self.layer_symbols(g, point, order)
            n = full.stop - full.start
            sym_full = flat[full].T  # [hw, n]: raster order, a position's codes together
            sym_part = flat[full.stop, partial] if len(partial) else np.zeros(0, np.int64)
            part_logits = np.empty((len(partial), self.K), np.float32)
            enc = RangeEncoder()
            for rows, logits in self.group_logit_bands(tokens, g, portable):
                pos = slice(rows.start * w, rows.stop * w)
                if n:
                    enc.encode_logits(sym_full[pos].reshape(-1), logits[:, :n].reshape(-1, self.K))
                if len(partial):
                    inside = (partial >= pos.start) & (partial < pos.stop)
                    part_logits[inside] = logits[partial[inside] - pos.start, n]
            if len(partial):  # the partial code after the full ones, in the schedule's order
                enc.encode_logits(sym_part, part_logits)
            streams.append(enc.finish())
            crcs.append(bitstream.token_checksum(np.concatenate([sym_full.reshape(-1), sym_part])))
        return streams, crcs

    def decode_layers(self, header: bitstream.Header, payload: bytes) -> np.ndarray:
        """The layer streams of a file -> tokens int64 [M, h, w] (uncoded ones 0); CodecError
        when a layer fails its checksum."""
        M, h, w = header.token_shape
        point = RatePoint(header.m, header.extra)
        g0 = self.groups[0]
        schedule = CodingSchedule(header.stages, header.alpha, header.order)
        portable = bool(header.flags & bitstream.FLAG_PORTABLE)
        tokens = np.zeros((M, h, w), dtype=np.int64)
        starts = list(accumulate(header.layer_bytes, initial=0))
        tokens[:g0] = self.decode_tokens(payload[: starts[1]], (g0, h, w), schedule, portable=portable)
        check_layer(bitstream.token_checksum(tokens[:g0]), header, 0)
        order = position_order(h, w, header.order)
        flat = tokens.reshape(M, h * w)
        for g in range(1, len(header.layer_bytes)):
            full, partial = self.layer_symbols(g, point, order)
            n = full.stop - full.start
            dec = RangeDecoder(payload[starts[g] : starts[g + 1]])
            part_logits = np.empty((len(partial), self.K), np.float32)
            for rows, logits in self.group_logit_bands(tokens, g, portable):
                pos = slice(rows.start * w, rows.stop * w)
                if n:
                    got = dec.decode_logits(logits[:, :n].reshape(-1, self.K))
                    flat[full, pos] = got.reshape(pos.stop - pos.start, n).T
                if len(partial):
                    inside = (partial >= pos.start) & (partial < pos.stop)
                    part_logits[inside] = logits[partial[inside] - pos.start, n]
            if len(partial):
                flat[full.stop, partial] = dec.decode_logits(part_logits)
            sym_part = flat[full.stop, partial] if len(partial) else np.zeros(0, np.int64)
            coded = np.concatenate([flat[full].T.reshape(-1), sym_part])
            check_layer(bitstream.token_checksum(coded.astype(np.int64)), header, g)
        return tokens

    def symbol_costs(self, tokens: np.ndarray, portable: bool = True) -> tuple[float, np.ndarray]:
        """(bits of the base layer, bits [M, h*w] of every other code at each position (rows <
        groups[0] are 0)): what any rate point costs, before the header."""
        M, h, w = tokens.shape
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        g0 = self.groups[0]
        _, base_bits = self.encode_tokens(tokens[:g0], estimate=True, portable=portable)
        costs = np.zeros((M, h * w))
        for g in range(1, len(self.groups)):
            costs[self.bounds[g] : self.bounds[g + 1]] = self.layer_costs(tokens, g, portable=portable)
        return base_bits, costs

    def layer_costs(
        self, tokens: np.ndarray, g: int, codes: int | None = None, portable: bool = True
    ) -> np.ndarray:
        """Bits float64 [n, h*w] at each position of ``tokens`` int64 [M, h, w] of the codes of
        layer ``g >= 1`` that are among the grid's first ``codes`` (default: all of the layer's;
        n: how many those are)."""
        M, h, w = tokens.shape
        lo, hi = self.bounds[g], self.bounds[g + 1]
        n = hi - lo if codes is None else max(0, min(codes, hi) - lo)
        flat = tokens.reshape(M, h * w)
        costs = np.zeros((n, h * w))
        if n == 0:
            return costs
        for rows, logits in self.group_logit_bands(tokens, g, portable):  # [rows * w, size_g, K]
            pos = slice(rows.start * w, rows.stop * w)
            sym = flat[lo : lo + n, pos].T.reshape(-1)
            bits = symbol_bits(sym, np.ascontiguousarray(logits[:, :n]).reshape(-1, self.K))
            costs[:, pos] = bits.reshape(pos.stop - pos.start, n).T
        return costs


def coded_tokens(tokens: np.ndarray, schedule: CodingSchedule, stages: int) -> np.ndarray:
    """The tokens a version-1 file of ``stages`` stages holds: all [M, h, w] when every stage
    is present, else [M, n] at the coded positions in coding order (what the checksum covers)."""
    M, h, w = tokens.shape
    if stages >= schedule.stages:
        return tokens
    parts = []
    for rows, cols in token_tiles(h, w):  # tile by tile, as coded
        tile = np.ascontiguousarray(tokens[:, rows, cols])
        th, tw = tile.shape[1:]
        pos = np.concatenate(schedule.stages_for(th, tw)[:stages] + [np.zeros(0, np.int64)])
        parts.append(tile.reshape(M, th * tw)[:, pos])
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def check_layer(crc: int, header: bitstream.Header, g: int) -> None:
    """CodecError unless layer g's symbols have the CRC the header stores."""
    if crc != header.layer_crcs[g]:
        raise CodecError(
            f"layer {g} fails its checksum: the file is corrupt or the decoder differs from the encoder"
        )
