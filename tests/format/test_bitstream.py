"""Tests for codec.format.bitstream (the .pqm container)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import CodecError
from codec.format import bitstream as bs


def tiled_flag(height: int, width: int, stride: int) -> int:
    """FLAG_TILED exactly when the token grid is larger than one tile (the format's rule)."""
    tiled = max(-(-height // stride), -(-width // stride)) > bs.TILE_TOKENS
    return bs.FLAG_TILED if tiled else 0


@st.composite
def headers(draw):
    stages = draw(st.integers(1, 64))
    height, width = draw(st.integers(1, 20000)), draw(st.integers(1, 8000))
    stride = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    return bs.Header(
        height=height,
        width=width,
        channels=draw(st.integers(1, 4)),
        stride=stride,
        M=draw(st.integers(1, 256)),
        K=draw(st.integers(2, 65536)),
        stages=stages,
        stages_present=draw(st.integers(0, stages)),
        alpha=draw(st.integers(0, 10000)) / 1000,
        order=draw(st.sampled_from(bs.ORDERS)),
        model_id=draw(st.binary(min_size=4, max_size=4)),
        flags=draw(st.sampled_from([0, bs.FLAG_REALISM])) | tiled_flag(height, width, stride),
        token_crc=draw(st.integers(0, 2**32 - 1)),
    )


@given(headers(), st.binary(max_size=300))
def test_round_trip(header, payload):
    data = bs.pack(header, payload)
    assert bs.unpack(data) == (header, payload)


SAMPLE = bs.Header(
    height=512,
    width=768,
    M=8,
    K=256,
    stages=8,
    stages_present=8,
    alpha=2.2,
    order="permutation",
    model_id=b"\x01\x02\x03\x04",
    token_crc=0xDEADBEEF,
)
PAYLOAD = bytes(range(40))


def test_golden_bytes():
    """The container layout must not change by accident (a new layout is a new version)."""
    assert bs.pack(SAMPLE, PAYLOAD)[:32].hex() == GOLDEN_HEADER
    assert len(bs.pack(SAMPLE, PAYLOAD)) == 32 + len(PAYLOAD)


GOLDEN_HEADER = "50514d010001020304800480060310088002080898110128efbeaddedf50a0ef"


def test_every_truncation_is_refused():
    data = bs.pack(SAMPLE, PAYLOAD)
    for n in range(len(data)):
        with pytest.raises(CodecError, match="truncated|magic"):
            bs.unpack(data[:n])


def test_every_bit_flip_is_refused():
    data = bs.pack(SAMPLE, PAYLOAD)
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(CodecError):
            bs.unpack(bytes(bad))


@given(st.binary(max_size=200))
def test_garbage_is_refused(data):
    with pytest.raises(CodecError):
        bs.unpack(data)


@given(st.binary(max_size=60))
def test_garbage_after_magic_is_refused(tail):
    with pytest.raises(CodecError):
        bs.unpack(b"PQM\x01" + tail)


def test_reasons():
    data = bs.pack(SAMPLE, PAYLOAD)
    with pytest.raises(CodecError, match="magic"):
        bs.unpack(b"\x89PNG" + data[4:])
    with pytest.raises(CodecError, match="version 9"):
        bs.unpack(data[:3] + b"\x09" + data[4:])
    with pytest.raises(CodecError, match="unexpected bytes"):
        bs.unpack(data + b"\x00")
    with pytest.raises(CodecError, match="checksum"):
        bs.unpack(data[:-1] + bytes([data[-1] ^ 0x80]))


def test_absurd_sizes_are_refused_before_allocating():
    huge = bs.Header(height=100_000, width=100_000, stride=16, flags=bs.FLAG_TILED)
    data = bs.pack(huge, b"", max_pixels=10**10)
    with pytest.raises(CodecError, match="exceeds the limit"):
        bs.unpack(data)
    assert bs.unpack(data, max_pixels=10**10)[0] == huge
    small = bs.Header(height=64, width=64)
    with pytest.raises(CodecError, match="exceeds the limit"):
        bs.unpack(bs.pack(small, b""), max_pixels=4095)
    with pytest.raises(CodecError, match="payload longer"):
        bs.pack(bs.Header(height=1, width=1, M=1), bytes(6))


def test_invalid_fields_are_refused():
    for bad in [
        dict(height=0),
        dict(channels=5),
        dict(stride=12),
        dict(M=0),
        dict(K=1),
        dict(K=70000),
        dict(stages=2, stages_present=3),
        dict(order="zigzag"),
        dict(flags=0x80),
        dict(model_id=b"abc"),
    ]:
        fields = dict(height=8, width=8) | bad
        with pytest.raises(CodecError):
            bs.pack(bs.Header(**fields), b"")


def test_token_checksum_sees_every_change():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 65536, (4, 6, 7))
    c = bs.token_checksum(t)
    assert c == bs.token_checksum(t.astype(np.int32))
    for idx in [(0, 0, 0), (3, 5, 6), (1, 2, 3)]:
        u = t.copy()
        u[idx] ^= 1
        assert bs.token_checksum(u) != c
    with pytest.raises(ValueError):
        bs.token_checksum(np.array([65536]))


def test_token_shape():
    h = bs.Header(height=512, width=769, stride=16, M=8)
    assert h.token_shape == (8, 32, 49)
    assert h.num_tokens == 8 * 32 * 49


def test_the_tiled_flag_must_match_the_grid():
    big = bs.Header(height=16 * bs.TILE_TOKENS + 1, width=16, stride=16, flags=bs.FLAG_TILED)
    assert bs.unpack(bs.pack(big, b""))[0].flags == bs.FLAG_TILED
    for wrong in (
        bs.Header(height=16 * bs.TILE_TOKENS + 1, width=16, stride=16),
        bs.Header(height=16 * bs.TILE_TOKENS, width=16, stride=16, flags=bs.FLAG_TILED),
    ):
        with pytest.raises(CodecError, match="tiled flag"):
            bs.pack(wrong, b"")


def test_data_must_be_bytes_like():
    """A path (or anything but bytes-like data) is refused in one line, not a raw TypeError
    (and not bytes(5), five zero bytes)."""
    data = bs.pack(SAMPLE, PAYLOAD)
    for wrong in ("photo.pqm", 5, None, [80, 81, 77]):
        with pytest.raises(CodecError, match="bytes of a .pqm file") as e:
            bs.unpack(wrong)
        assert "\n" not in str(e.value)
    for ok in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert bs.unpack(ok) == (SAMPLE, PAYLOAD)


LAYERED = bs.Header(
    height=100,
    width=150,
    M=6,
    K=16,
    stages=4,
    stages_present=4,
    alpha=2.2,
    order="lds",
    groups=(1, 1, 2, 2),
    m=4,
    extra=30,
    layer_bytes=(40, 7, 200, 130),
    layer_crcs=(1, 2, 3, 4),
)
LAYERED_PAYLOAD = bytes(range(256)) + bytes(121)


@given(headers(), st.binary(max_size=300))
def test_header_size_is_the_file_minus_its_payload(header, payload):
    assert bs.header_size(header, len(payload)) == len(bs.pack(header, payload)) - len(payload)


def test_header_size_of_a_layered_file_and_the_rate_controller_s_estimate():
    data = bs.pack(LAYERED, LAYERED_PAYLOAD)
    assert bs.header_size(LAYERED) == len(data) - len(LAYERED_PAYLOAD)
    assert abs(bs.layered_header_estimate(len(LAYERED.groups)) - bs.header_size(LAYERED)) <= 8


def test_layers_needed_is_the_format_s_rule():
    """Layer l holds sub-vectors bounds[l]..bounds[l+1]-1; extra > 0 codes sub-vector m too."""
    groups = (1, 1, 2, 2)
    assert [bs.layers_needed(groups, m) for m in range(1, 7)] == [1, 2, 3, 3, 4, 4]
    assert [bs.layers_needed(groups, m, extra=5) for m in range(1, 6)] == [2, 3, 3, 4, 4]
    assert LAYERED.coded_layers == bs.layers_needed(LAYERED.groups, LAYERED.m, LAYERED.extra) == 4


def test_is_tiled_is_the_rule_of_the_tiled_flag():
    assert not bs.is_tiled(bs.TILE_TOKENS, bs.TILE_TOKENS)
    assert bs.is_tiled(bs.TILE_TOKENS + 1, 1) and bs.is_tiled(1, bs.TILE_TOKENS + 1)


def test_cut_layers_is_truncate_on_a_parsed_file():
    data = bs.pack(LAYERED, LAYERED_PAYLOAD)
    header, payload = bs.unpack(data)
    for layers in (1, 2, 3):
        cut, kept = bs.cut_layers(header, payload, layers)
        assert bs.pack(cut, kept) == bs.truncate(data, layers)
        assert (cut.m, cut.extra, len(cut.layer_bytes)) == ((1, 2, 4)[layers - 1], 0, layers)
    assert bs.cut_layers(header, payload, 4) == (header, payload)  # every layer: the file itself
    for max_bytes in (1, 100, len(data) - 1, len(data)):
        cut, kept = bs.cut_layers(header, payload, max_bytes=max_bytes)
        assert bs.pack(cut, kept) == bs.truncate(data, max_bytes=max_bytes)
    v1, p1 = bs.unpack(bs.pack(SAMPLE, PAYLOAD))
    with pytest.raises(CodecError, match="only layered"):
        bs.cut_layers(v1, p1, 1)
