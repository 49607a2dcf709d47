"""Tests for codec.entropy.range_coder (the C++ range coder)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import CodecError
from codec.entropy import (
    LOGIT_PRECISION,
    RangeDecoder,
    RangeEncoder,
    cdf_from_counts,
    information_content,
    quantize_logits,
)

KINDS = ["normal", "flat", "peaked", "degenerate", "inf", "huge", "nan"]


def make_logits(rng: np.random.Generator, n: int, k: int, kind: str) -> np.ndarray:
    """Logits [n, k] of one family of distributions, all hard cases for a coder."""
    if kind == "normal":
        x = rng.standard_normal((n, k)) * rng.uniform(0.1, 8.0)
    elif kind == "flat":
        x = np.zeros((n, k))
    elif kind == "peaked":  # one symbol near-certain
        x = rng.standard_normal((n, k))
        x[np.arange(n), rng.integers(0, k, n)] += 30.0
    elif kind == "degenerate":  # all mass on one symbol, the rest at the minimum frequency
        x = np.full((n, k), -1e30)
        x[np.arange(n), rng.integers(0, k, n)] = 1e30
    elif kind == "inf":  # +-inf mixed in, some rows with several +inf
        x = rng.standard_normal((n, k))
        x[rng.random((n, k)) < 0.2] = -np.inf
        x[rng.random((n, k)) < 0.02] = np.inf
    elif kind == "huge":
        x = rng.standard_normal((n, k)) * 3e38
    else:  # nan counts as -inf; a row of all nan is uniform
        x = rng.standard_normal((n, k))
        x[rng.random((n, k)) < 0.3] = np.nan
        if n:
            x[0] = np.nan
    with np.errstate(over="ignore"):  # "huge": some values overflow to +-inf, on purpose
        return x.astype(np.float32)


def sample_symbols(rng, freq: np.ndarray, uniform_share: float) -> np.ndarray:
    """Symbols drawn from the quantized distributions, some uniformly (improbable ones too)."""
    n, k = freq.shape
    cdf = np.cumsum(freq, axis=1)
    u = rng.integers(0, 2**LOGIT_PRECISION, n)
    s = (cdf > u[:, None]).argmax(axis=1)
    uni = rng.random(n) < uniform_share
    s[uni] = rng.integers(0, k, uni.sum())
    return s.astype(np.int32)


def size_bound(ideal_bits: float) -> float:
    """The issue's bound: ideal information content + 0.01% + 8 bytes (in bytes)."""
    return ideal_bits / 8 * 1.0001 + 8


@given(
    k=st.integers(2, 4096),
    n=st.integers(0, 20000),
    kind=st.sampled_from(KINDS),
    uniform_share=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_logits_round_trip(k, n, kind, uniform_share, seed):
    n = min(n, 2_000_000 // k)  # keep each example to a few MB
    rng = np.random.default_rng(seed)
    logits = make_logits(rng, n, k, kind)
    freq = quantize_logits(logits)
    symbols = sample_symbols(rng, freq, uniform_share)
    enc = RangeEncoder()
    enc.encode_logits(symbols, logits)
    data = enc.finish()
    out = RangeDecoder(data).decode_logits(logits)
    np.testing.assert_array_equal(out, symbols)
    ideal = information_content(symbols, logits)
    assert len(data) <= size_bound(ideal)


@st.composite
def staged_stream(draw):
    """A stream of several stages, each in one of the three forms, with its own K."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    stages = []
    for _ in range(draw(st.integers(1, 6))):
        form = draw(st.sampled_from(["logits", "cdf", "indexed"]))
        k = draw(st.integers(2, 600))
        n = draw(st.integers(0, 3000))
        precision = draw(st.integers(max(1, math.ceil(math.log2(k))), 24))
        stages.append((form, k, n, precision, draw(st.sampled_from(KINDS))))
    return rng, stages


def counts_for(rng, rows: int, k: int) -> np.ndarray:
    c = rng.integers(0, 1000, (rows, k)) * (rng.random((rows, k)) < 0.5)
    return c


@given(staged_stream())
def test_mixed_forms_in_stages(stream):
    rng, stages = stream
    enc = RangeEncoder()
    plan = []
    ideal = 0.0
    for form, k, n, precision, kind in stages:
        if form == "logits":
            logits = make_logits(rng, n, k, kind)
            s = sample_symbols(rng, quantize_logits(logits), 0.2)
            enc.encode_logits(s, logits)
            ideal += information_content(s, logits)
            plan.append((form, s, logits, None, precision))
        else:
            rows = n if form == "cdf" else int(rng.integers(1, 5))
            tables = cdf_from_counts(counts_for(rng, rows, k), precision)
            idx = np.arange(n) if form == "cdf" else rng.integers(0, rows, n)
            freq = np.diff(tables.astype(np.int64), axis=1)[idx]
            s = sample_symbols(rng, freq * 2 ** (LOGIT_PRECISION - precision), 0.2)
            ideal += float(np.sum(precision - np.log2(freq[np.arange(n), s])))
            if form == "cdf":
                enc.encode_cdf(s, tables, precision)
            else:
                enc.encode_indexed(s, idx, tables, precision)
            plan.append((form, s, tables, idx, precision))
    data = enc.finish()
    assert len(data) <= size_bound(ideal)
    dec = RangeDecoder(data)
    for form, s, dist, idx, precision in plan:  # stage t decoded before stage t+1 is looked at
        if form == "logits":
            out = dec.decode_logits(dist)
        elif form == "cdf":
            out = dec.decode_cdf(dist, precision)
        else:
            out = dec.decode_indexed(idx, dist, precision)
        np.testing.assert_array_equal(out, s)


def test_quantize_logits_properties():
    rng = np.random.default_rng(1)
    for kind in KINDS:
        for k in (1, 2, 3, 255, 256, 4097, 65536):
            logits = make_logits(rng, 7, k, kind)
            f = quantize_logits(logits)
            assert f.dtype == np.uint32 and f.shape == (7, k)
            assert (f.sum(axis=1, dtype=np.int64) == 2**24).all()
            assert (f >= 1).all()


def test_quantize_logits_matches_softmax():
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((500, 256)) * 3).astype(np.float32)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = quantize_logits(logits) / 2**24
    kl_bits = np.sum(p * np.log2(p / q), axis=1)
    assert kl_bits.max() < 1e-4  # quantization costs < 0.0001 bit per symbol here


def test_quantize_special_values():
    x = np.array(
        [
            [np.inf, 0.0, np.inf, -np.inf],  # mass split between the +inf entries
            [-np.inf, -np.inf, -np.inf, -np.inf],  # uniform
            [np.nan, 0.0, np.nan, np.nan],  # nan = -inf
            [0.0, 0.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    f = quantize_logits(x)
    assert f[0, 0] == f[0, 2] and f[0, 1] == 1 and f[0, 3] == 1
    assert (f[1] == 2**22).all() and (f[3] == 2**22).all()
    assert f[2, 1] == 2**24 - 3 and f[2, 0] == 1


def test_thread_count_does_not_change_anything():
    rng = np.random.default_rng(3)
    logits = make_logits(rng, 40000, 300, "normal")
    s = sample_symbols(rng, quantize_logits(logits, threads=1), 0.1)
    np.testing.assert_array_equal(quantize_logits(logits, threads=1), quantize_logits(logits, threads=2))
    streams = []
    for threads in (1, 2, 3):
        enc = RangeEncoder(threads=threads)
        enc.encode_logits(s[:1000], logits[:1000])
        enc.encode_logits(s[1000:], logits[1000:])
        streams.append(enc.finish())
    assert streams[0] == streams[1] == streams[2]
    for threads in (1, 2):
        dec = RangeDecoder(streams[0], threads=threads)
        np.testing.assert_array_equal(dec.decode_logits(logits), s)  # other stage split too


def test_golden_bytes():
    """The stream format and the logits quantization must not change by accident."""
    x = (np.arange(5 * 6, dtype=np.float32).reshape(5, 6) % 7 - 3.0) * 1.7
    enc = RangeEncoder()
    enc.encode_logits(np.array([0, 5, 2, 3, 1]), x)
    enc.encode_cdf(np.array([1, 0]), np.array([[0, 3, 7, 16], [0, 1, 2, 16]]), precision=4)
    enc.encode_indexed(np.array([2, 2, 0]), np.array([1, 1, 0]), np.array([[0, 8, 9, 16], [0, 1, 2, 16]]), 4)
    assert enc.finish().hex() == GOLDEN


GOLDEN = "000ae571555761ee"


def test_empty_stream():
    enc = RangeEncoder()
    enc.encode_logits(np.zeros(0, np.int32), np.zeros((0, 5), np.float32))
    data = enc.finish()
    assert data == b""
    assert RangeDecoder(data).decode_logits(np.zeros((0, 5), np.float32)).shape == (0,)


def test_certain_symbols_cost_almost_nothing():
    x = np.full((100000, 4), -np.inf, np.float32)
    x[:, 2] = 0
    enc = RangeEncoder()
    enc.encode_logits(np.full(100000, 2), x)
    data = enc.finish()
    assert len(data) <= 3  # 100000 * log2(2^24 / (2^24 - 3)) = 0.026 bits
    np.testing.assert_array_equal(RangeDecoder(data).decode_logits(x), 2)


def test_constriction_agrees_on_information_content():
    constriction = pytest.importorskip("constriction")
    rng = np.random.default_rng(4)
    for k in (2, 256, 1024):
        logits = make_logits(rng, 20000, k, "normal")
        freq = quantize_logits(logits)
        s = sample_symbols(rng, freq, 0.05)
        enc = RangeEncoder()
        enc.encode_logits(s, logits)
        ours = 8 * len(enc.finish())
        # constriction on the very same quantized probabilities
        probs = freq.astype(np.float64) / 2**24
        cenc = constriction.stream.queue.RangeEncoder()
        cenc.encode(s, constriction.stream.model.Categorical(perfect=True), probs)
        theirs = 32 * len(cenc.get_compressed())
        ideal = information_content(s, logits)
        assert ideal <= ours <= ideal * 1.0001 + 64
        assert abs(ours - theirs) <= 0.001 * ideal + 128, (k, ours, theirs, ideal)


def test_invalid_arguments():
    enc = RangeEncoder()
    with pytest.raises(ValueError, match="outside"):
        enc.encode_logits(np.array([4]), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="outside"):
        enc.encode_logits(np.array([-1]), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="rows"):
        enc.encode_logits(np.array([0, 1]), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="K must be"):
        enc.encode_logits(np.array([0]), np.zeros((1, 70000), np.float32))
    with pytest.raises(ValueError, match="2\\^precision"):
        enc.encode_cdf(np.array([0]), np.array([[0, 5, 15]]), precision=4)
    with pytest.raises(ValueError, match="zero frequency"):
        enc.encode_cdf(np.array([1]), np.array([[0, 5, 5, 16]]), precision=4)
    with pytest.raises(ValueError, match="table index"):
        enc.encode_indexed(np.array([0]), np.array([3]), np.array([[0, 5, 16]]), precision=4)
    with pytest.raises(ValueError, match="precision"):
        enc.encode_cdf(np.array([0]), np.array([[0, 1, 2]]), precision=25)
    enc.finish()
    with pytest.raises(RuntimeError, match="finish"):
        enc.finish()
    with pytest.raises(ValueError, match="cdf_from_counts|precision"):
        cdf_from_counts(np.ones(5, np.int64), precision=2)


@given(
    data=st.binary(max_size=200),
    k=st.integers(1, 300),
    n=st.integers(0, 3000),
    form=st.sampled_from(["logits", "cdf"]),
)
def test_garbage_never_crashes(data, k, n, form):
    """Any bytes decode to in-range symbols or raise CodecError, and the decoder stops."""
    rng = np.random.default_rng(len(data))
    dec = RangeDecoder(data)
    try:
        if form == "logits":
            out = dec.decode_logits(make_logits(rng, n, k, "normal"))
        else:
            out = dec.decode_cdf(cdf_from_counts(counts_for(rng, n, k), 16), 16)
    except CodecError as e:
        assert "corrupt" in str(e)
        return
    assert out.shape == (n,) and (out >= 0).all() and (out < k).all()


def test_garbage_detected_sometimes():
    """A value outside every symbol's interval is reported, not decoded as a symbol."""
    with pytest.raises(CodecError, match="corrupt"):
        RangeDecoder(b"\xff" * 16).decode_cdf(np.array([[0, 1, 16]] * 4), precision=4)


def test_corrupt_stream_stops_helper_threads():
    """An error while helper threads are computing tables is raised, and nothing hangs."""
    x = np.zeros((50000, 64), np.float32)
    for threads in (1, 2, 4):
        # 0xff... points past every symbol's interval (into the truncation gap).
        with pytest.raises(CodecError, match="corrupt"):
            RangeDecoder(b"\xff" * 16, threads=threads).decode_logits(x)


def test_decoder_stops_past_the_end_of_its_stream():
    """A stream too short for what is decoded from it (truncated, or a forged header asking
    for a huge image) fails once the decoder reads past its end, in time bounded by its
    length, instead of decoding zeros for every symbol asked for."""
    import time

    x = np.zeros((2_000_000, 16), np.float32)  # 4 bits a symbol: 1 MB of stream wanted
    table = cdf_from_counts(np.ones((1, 16), np.int64))
    for data in (b"", b"\x5a\x13\x77"):
        t = time.perf_counter()
        with pytest.raises(CodecError, match="past the end"):
            RangeDecoder(data).decode_logits(x)
        with pytest.raises(CodecError, match="past the end"):
            RangeDecoder(data).decode_indexed(np.zeros(10**6, np.int32), table)
        assert time.perf_counter() - t < 2.0


def test_streams_ending_in_zero_bytes_still_decode():
    """The encoder drops trailing zero bytes only as far as the decoder may read past the end:
    a long final run of symbol 0 (all-zero bytes) keeps most of its bytes and decodes."""
    n = 100_000
    x = np.zeros((n, 2), np.float32)  # 1 bit per symbol: 12,500 zero bytes
    for tail in (0, 1):
        symbols = np.zeros(n, np.int32)
        symbols[:50] = tail  # a nonzero start, then the run of zeros
        enc = RangeEncoder()
        enc.encode_logits(symbols, x)
        data = enc.finish()
        assert n // 8 - 64 - 1 <= len(data) <= n // 8 + 1
        np.testing.assert_array_equal(RangeDecoder(data).decode_logits(x), symbols)
        # a decoder asked for more symbols than were coded runs past the end and stops
        with pytest.raises(CodecError, match="past the end"):
            RangeDecoder(data).decode_logits(np.zeros((2 * n, 2), np.float32))
