"""Range coder: symbols with per-symbol categorical distributions <-> bytes.

Thin typed wrapper over the compiled extension ``codec.entropy._rangecoder`` (csrc/). Three ways
to give distributions, which may be mixed in one stream:

* ``logits``: float32 ``[N, K]``, turned into integer frequencies (sum ``2**24``, each >= 1)
  by one deterministic C++ function used by both encoder and decoder (see
  :func:`quantize_logits`): the same logits give the same bytes on every machine.
* ``cdf``: uint32 ``[N, K + 1]``, one table per symbol, ``cdf[:, 0] == 0``,
  ``cdf[:, K] == 2**precision``, non-decreasing; coded symbols need nonzero frequency.
* ``indexed``: a few shared tables ``[T, K + 1]`` plus an int32 table index per symbol.

The stream is FIFO and streaming: a decoder decodes stage t before it is given the
distributions of stage t + 1, provided the encoder was fed the same stages in the same
order. Sizes: the stream is at most 1 byte longer than the information content of the
(quantized) distributions plus about 1e-7 bits per symbol.

Invalid arguments (shapes, symbols out of range, bad tables) raise ``ValueError``; a stream
the decoder cannot have been given by the encoder raises :class:`codec.CodecError`. The
decoder never reads outside its buffer; it reads zeros past the end (the encoder drops
trailing zero bytes), but never more than the encoder can have dropped (its 8-byte window
and 64 bytes, ``kMaxOverread`` in csrc/range_coder.h): a stream too short for what is
decoded from it, truncated or under a forged header, fails there (CodecError), in time
bounded by its length. A stream cut less than that decodes to wrong symbols: the
container's checksums catch that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..errors import CodecError
from . import _rangecoder as _rc

LOGIT_PRECISION: int = _rc.LOGIT_PRECISION
"""Frequencies quantized from logits sum to ``2**LOGIT_PRECISION``."""

MAX_ALPHABET: int = _rc.MAX_ALPHABET


def default_threads() -> int:
    """Threads used to quantize logits when none are given: the usable CPUs, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _logits(logits: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(logits, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"logits must have shape [N, K], got {x.shape}")
    if not 1 <= x.shape[1] <= MAX_ALPHABET:
        raise ValueError(f"alphabet size K must be in [1, {MAX_ALPHABET}], got {x.shape[1]}")
    return x


def _int32(a: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(a)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got {x.dtype}")
    if x.size and (x.min() < np.iinfo(np.int32).min or x.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name} do not fit in int32")
    return np.ascontiguousarray(x, dtype=np.int32)


def _tables(tables: np.ndarray) -> np.ndarray:
    t = np.asarray(tables)
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"CDF tables must have shape [T, K + 1] with K >= 1, got {t.shape}")
    if t.size and (t.min() < 0 or t.max() > 2**24):
        raise ValueError("CDF table entries must be in [0, 2**24]")
    return np.ascontiguousarray(t, dtype=np.uint32)


def quantize_logits(logits: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The integer frequencies the coder uses for ``logits`` ``[N, K]``.

    Returns uint32 ``[N, K]``, each row summing to ``2**24`` with every entry >= 1:
    ``softmax(logits)`` up to a ~1e-7 relative error in ``exp``, probabilities below
    about ``2**-25`` raised to ``2**-24``, the rounding remainder given to the first
    most likely symbol. NaN counts as ``-inf``; rows with ``+inf`` share the mass among
    their ``+inf`` entries; all ``-inf`` gives a uniform row. Bit-exact on every machine.
    """
    return _rc.quantize_logits(_logits(logits), threads or default_threads())


def symbol_bits(symbols: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Ideal size in bits (float64 ``[N]``) of each of ``symbols`` ``[N]`` under the quantized
    ``logits`` ``[N, K]``."""
    freq = quantize_logits(logits)
    s = _int32(symbols, "symbols")
    if s.shape[0] != freq.shape[0]:
        raise ValueError("symbols and logits disagree on N")
    return LOGIT_PRECISION - np.log2(freq[np.arange(s.shape[0]), s].astype(np.float64))


def information_content(symbols: np.ndarray, logits: np.ndarray) -> float:
    """Ideal size in bits of ``symbols`` ``[N]`` under the quantized ``logits`` ``[N, K]``."""
    return float(np.sum(symbol_bits(symbols, logits)))


def cdf_from_counts(counts: np.ndarray, precision: int = 16) -> np.ndarray:
    """Integer CDF tables ``[..., K + 1]`` from nonnegative integer counts ``[..., K]``.

    Exact integer arithmetic (so any two machines agree): every symbol gets frequency
    ``1 + floor(count * (2**precision - K) / total)``, the remainder goes to the first
    most frequent symbol. Requires ``K <= 2**precision``.
    """
    c = np.asarray(counts)
    if not np.issubdtype(c.dtype, np.integer) or (c.size and c.min() < 0):
        raise ValueError("counts must be nonnegative integers")
    K = c.shape[-1]
    if not 1 <= precision <= 24 or K > 2**precision:
        raise ValueError(f"need 1 <= precision <= 24 and K <= 2**precision (K={K}, precision={precision})")
    c = c.astype(object if c.max(initial=0) > 2**36 else np.int64)
    total = c.sum(axis=-1, keepdims=True)
    budget = 2**precision - K
    freq = 1 + np.where(total > 0, (c * budget) // np.maximum(total, 1), budget // K)
    freq = freq.astype(np.int64)
    rest = 2**precision - freq.sum(axis=-1)
    flat = freq.reshape(-1, K)
    flat[np.arange(flat.shape[0]), np.argmax(c.reshape(-1, K), axis=-1)] += rest.reshape(-1)
    cdf = np.zeros(freq.shape[:-1] + (K + 1,), dtype=np.uint32)
    cdf[..., 1:] = np.cumsum(freq, axis=-1)
    return cdf


@contextmanager
def _stream_errors() -> Iterator[None]:
    try:
        yield
    except _rc.CorruptStreamError as e:
        raise CodecError(f"corrupt stream: {e}") from None


class RangeEncoder:
    """Streaming range encoder: feed stages with ``encode_*``, then call :meth:`finish` once.

    ``threads`` only spreads the quantization of logits; the bytes never depend on it.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._enc = _rc.Encoder()
        self.threads = threads or default_threads()

    def encode_logits(self, symbols: np.ndarray, logits: np.ndarray) -> None:
        """Encodes ``symbols`` ``[N]`` (ints in ``[0, K)``), each under its row of ``logits`` ``[N, K]``."""
        self._enc.encode_logits(_int32(symbols, "symbols"), _logits(logits), self.threads)

    def encode_cdf(self, symbols: np.ndarray, cdf: np.ndarray, precision: int = 16) -> None:
        """Encodes ``symbols`` ``[N]``, symbol i under its table ``cdf[i]`` (``[N, K + 1]``)."""
        self._enc.encode_tables(_int32(symbols, "symbols"), _tables(cdf), None, precision)

    def encode_indexed(
        self, symbols: np.ndarray, indexes: np.ndarray, tables: np.ndarray, precision: int = 16
    ) -> None:
        """Encodes ``symbols`` ``[N]``, symbol i under ``tables[indexes[i]]`` (``tables``: ``[T, K + 1]``)."""
        self._enc.encode_tables(
            _int32(symbols, "symbols"), _tables(tables), _int32(indexes, "indexes"), precision
        )

    def finish(self) -> bytes:
        """Terminates and returns the stream. The encoder cannot be used afterwards."""
        return self._enc.finish()


class RangeDecoder:
    """Streaming range decoder over ``data``; call ``decode_*`` with the encoder's distributions,
    stage by stage in the same order. ``threads``: as for :class:`RangeEncoder`."""

    def __init__(self, data: bytes, threads: int | None = None) -> None:
        self._dec = _rc.Decoder(bytes(data))
        self.threads = threads or default_threads()

    def decode_logits(self, logits: np.ndarray) -> np.ndarray:
        """Decodes one symbol per row of ``logits`` ``[N, K]``; returns int32 ``[N]``."""
        with _stream_errors():
            return self._dec.decode_logits(_logits(logits), self.threads)

    def decode_cdf(self, cdf: np.ndarray, precision: int = 16) -> np.ndarray:
        """Decodes one symbol per table of ``cdf`` ``[N, K + 1]``; returns int32 ``[N]``."""
        t = _tables(cdf)
        with _stream_errors():
            return self._dec.decode_tables(t, None, t.shape[0], precision)

    def decode_indexed(self, indexes: np.ndarray, tables: np.ndarray, precision: int = 16) -> np.ndarray:
        """Decodes symbol i under ``tables[indexes[i]]``; returns int32 ``[N]``."""
        idx = _int32(indexes, "indexes")
        with _stream_errors():
            return self._dec.decode_tables(_tables(tables), idx, idx.shape[0], precision)

    @property
    def position(self) -> int:
        """Bytes consumed so far, including the zeros read past the end of the stream (a few
        dozen at most, csrc/range_coder.h's kMaxOverread: reading further raises CodecError)."""
        return self._dec.position
