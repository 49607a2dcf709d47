"""The ``.pqm`` container: a small header, then the range-coded payload.

Layout (version 1; integers little-endian, ``varint`` = unsigned LEB128, minimal form only)::

    magic        3   b"PQM"
    version      1   1
    flags        1   bit 0: the model offers a realism decoder; bit 1: the entropy model's
                     logits come from the portable inference (codec.entropy.portable: a file
                     that decodes on every machine); bit 2: the token grid (the base layer of
                     a layered file) is coded in tiles of TILE_TOKENS x TILE_TOKENS positions
                     (codec.engine.tiling), set exactly when the grid is larger than one tile; other
                     bits must be 0
    model_id     4   first 4 bytes of a SHA-256 over what defines the model's tokens (0 for none)
    height       varint  image rows, pixels
    width        varint  image columns, pixels
    channels     1   1..4
    stride       1   autoencoder stride s (power of two, 1..128)
    M            varint  sub-vectors per latent position (1..256)
    K            varint  codewords per codebook (2..65536)
    stages       1   coding schedule: number of stages S (1..64)
    present      1   stages present in the payload (0..S)
    alpha        varint  schedule power-law exponent, in thousandths
    order        1   schedule position order (0 raster, 1 seeded permutation, 2 low-discrepancy)
    payload_len  varint  bytes of payload
    token_crc    4   CRC-32 of the decoded tokens (see :func:`token_checksum`)
    crc          4   CRC-32 of every header byte before it and of the payload
    payload      payload_len bytes

Version 2 (layered files of a nested model; written when ``Header.groups`` is set) has the
same fields up to ``K``, then::

    groups       1 + G varints  G (1..255), then the size of each sub-vector group (sum = M)
    m            varint  sub-vectors coded at every position (groups[0] <= m <= M)
    extra        varint  positions (the first ``extra`` in the ``order`` of the token grid) where
                         sub-vector m is coded too (0 <= extra < h*w; 0 when m == M)
    stages       1   the base layer's (group 0) coding schedule: S (1..64)
    alpha        varint  its power-law exponent, in thousandths
    order        1   its position order (0 raster, 1 seeded permutation, 2 low-discrepancy)
    layers       1   L: groups present = the groups holding a coded sub-vector
    L times:     payload_len varint (bytes of the layer's own range-coder stream),
                 token_crc 4 (CRC-32 of the layer's coded tokens, see ``api.layer_tokens``)
    crc          4   CRC-32 of every header byte before it and of the payload
    payload      the L layer streams, one after another

A version-2 file cut after layer l (header rewritten by ``codec truncate``) is the file the
encoder writes for m = the sub-vectors of layers 0..l.

The checksums detect damage, not deliberate edits: a header rewritten with a new CRC
that keeps the token grid (a width of 760 instead of 768 with stride 16) decodes as that
crop of the image; one that changes the grid fails the token checksums.

:func:`unpack` is strict: wrong magic, unknown version, truncation, trailing bytes, a
checksum mismatch, out-of-range fields or an image over :data:`MAX_IMAGE_PIXELS` raise
:class:`~codec.CodecError` with the reason, before anything is allocated for the image.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np

from ..errors import CodecError

MAGIC = b"PQM"
FILE_EXTENSION = ".pqm"

MAX_IMAGE_PIXELS: int = 178_956_970
"""Largest image (height * width) :func:`unpack` accepts by default, as Pillow's
``Image.MAX_IMAGE_PIXELS`` error threshold. Change it, or pass ``max_pixels``."""

FLAG_REALISM = 1
FLAG_PORTABLE = 2
FLAG_TILED = 4
_KNOWN_FLAGS = FLAG_REALISM | FLAG_PORTABLE | FLAG_TILED

ORDERS = ("raster", "permutation", "lds")
"""The position orders (codec.entropy.schedule); files store an order as its index here (never
reorder, only append)."""
MAX_STAGES = 64
"""Stages S of a coding schedule: 1..MAX_STAGES (one byte in the header)."""

TILE_TOKENS = 48
"""Positions per side of the tiles a large token grid is coded in (see FLAG_TILED): 768
pixels at stride 16, so Kodak-sized images (48 x 32 positions) are one tile."""


def is_tiled(h: int, w: int) -> bool:
    """Whether an ``h x w`` token grid is coded in more than one tile: exactly the files that
    carry FLAG_TILED."""
    return h > TILE_TOKENS or w > TILE_TOKENS


def token_tiles(h: int, w: int, tile: int = TILE_TOKENS) -> list[tuple[slice, slice]]:
    """The entropy-coding tiles of an ``h x w`` token grid as (rows, columns) slices in raster
    order: one tile (the whole grid) when it fits, else tiles of ``tile`` positions with the
    last row and column of tiles smaller."""
    return [
        (slice(y, min(y + tile, h)), slice(x, min(x + tile, w)))
        for y in range(0, h, tile)
        for x in range(0, w, tile)
    ]


def layers_needed(groups: tuple[int, ...], m: int, extra: int = 0) -> int:
    """Layers (sub-vector groups, in order) a version-2 file of rate point ``m`` (+ sub-vector
    m at ``extra`` positions) codes: those holding sub-vectors 0..m-1, and m when extra > 0."""
    need, n, total = m + (1 if extra else 0), 0, 0
    while total < need:
        total += groups[n]
        n += 1
    return n


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the payload. Sizes in pixels; tokens are
    ``[M, ceil(height / stride), ceil(width / stride)]`` ints in ``[0, K)``."""

    height: int
    width: int
    channels: int = 3
    stride: int = 16
    M: int = 8
    K: int = 256
    stages: int = 1
    stages_present: int = 1
    alpha: float = 1.0
    order: str = "raster"
    model_id: bytes = bytes(4)
    flags: int = 0
    token_crc: int = 0
    # version 2 (layered): empty groups means version 1
    groups: tuple[int, ...] = ()
    m: int = 0
    extra: int = 0
    layer_bytes: tuple[int, ...] = ()
    layer_crcs: tuple[int, ...] = ()

    @property
    def version(self) -> int:
        return 2 if self.groups else 1

    @property
    def coded_layers(self) -> int:
        """Version 2: the number of groups holding a coded sub-vector (:func:`layers_needed`)."""
        return layers_needed(self.groups, self.m, self.extra)

    @property
    def token_shape(self) -> tuple[int, int, int]:
        """``(M, h, w)`` of the token grid."""
        s = self.stride
        return (self.M, -(-self.height // s), -(-self.width // s))

    @property
    def num_tokens(self) -> int:
        m, h, w = self.token_shape
        return m * h * w


def token_checksum(tokens: np.ndarray) -> int:
    """CRC-32 of a token grid (ints in ``[0, 65536)``), taken over its uint16 little-endian
    bytes in C order; stored in the header so a decoder/encoder mismatch is detected."""
    t = np.asarray(tokens)
    if t.size and (t.min() < 0 or t.max() > 0xFFFF):
        raise ValueError("tokens must be in [0, 65536)")
    return zlib.crc32(np.ascontiguousarray(t, dtype="<u2").tobytes())


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise CodecError(msg)


def _validate(h: Header, max_pixels: int) -> None:
    _check(h.height >= 1 and h.width >= 1, f"image size {h.width}x{h.height} is empty")
    _check(
        h.height * h.width <= max_pixels,
        f"image of {h.width}x{h.height} = {h.height * h.width} pixels exceeds the limit of {max_pixels} "
        "(raise codec.format.bitstream.MAX_IMAGE_PIXELS or pass max_pixels)",
    )
    _check(1 <= h.channels <= 4, f"channels must be 1..4, got {h.channels}")
    _check(
        1 <= h.stride <= 128 and h.stride & (h.stride - 1) == 0,
        f"stride must be a power of two in 1..128, got {h.stride}",
    )
    _check(1 <= h.M <= 256, f"M must be in 1..256, got {h.M}")
    _check(2 <= h.K <= 65536, f"K must be in 2..65536, got {h.K}")
    _check(1 <= h.stages <= MAX_STAGES, f"stages must be in 1..{MAX_STAGES}, got {h.stages}")
    _check(0 <= h.stages_present <= h.stages, f"stages present {h.stages_present} > stages {h.stages}")
    _check(0 <= round(h.alpha * 1000) < 2**20, f"schedule exponent out of range: {h.alpha}")
    _check(h.order in ORDERS, f"unknown position order {h.order!r}")
    _check(len(h.model_id) == 4, "model_id must be 4 bytes")
    _check(h.flags & ~_KNOWN_FLAGS == 0, f"unknown flags 0x{h.flags:02x}")
    _, th, tw = h.token_shape
    tiled = is_tiled(th, tw)
    _check(bool(h.flags & FLAG_TILED) == tiled, f"the tiled flag does not match a {th}x{tw} token grid")
    _check(0 <= h.token_crc < 2**32, "token_crc must be a 32-bit value")
    if h.groups:
        _check(1 <= len(h.groups) <= 255 and min(h.groups) >= 1, f"invalid groups {h.groups}")
        _check(sum(h.groups) == h.M, f"groups {h.groups} do not sum to M={h.M}")
        _check(h.groups[0] <= h.m <= h.M, f"m={h.m} must be in {h.groups[0]}..{h.M}")
        _, th, tw = h.token_shape
        _check(
            0 <= h.extra < th * tw and (h.extra == 0 or h.m < h.M), f"extra positions {h.extra} out of range"
        )
        _check(
            len(h.layer_bytes) == len(h.layer_crcs) == h.coded_layers,
            f"{len(h.layer_bytes)} layers present, m={h.m} (+{h.extra}) needs {h.coded_layers}",
        )
        _check(all(0 <= c < 2**32 for c in h.layer_crcs), "layer CRCs must be 32-bit values")
        _check(h.stages_present == h.stages, "layered files hold every stage of the base layer")


def max_payload_bytes(h: Header) -> int:
    """An upper bound on the payload for this header: no token costs more than 24 bits
    (the coder's finest probability is 2**-24), plus 2 bytes to terminate."""
    return 3 * h.num_tokens + 2


def pack(header: Header, payload: bytes, max_pixels: int | None = None) -> bytes:
    """Serializes ``header`` and ``payload`` to ``.pqm`` bytes."""
    _validate(header, MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)
    _check(len(payload) <= max_payload_bytes(header), "payload longer than any valid stream")
    if header.groups:
        _check(sum(header.layer_bytes) == len(payload), "layer sizes do not add up to the payload")
    head = _head(header, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + crc.to_bytes(4, "little") + bytes(payload)


def header_size(header: Header, payload_len: int = 0) -> int:
    """Bytes before the payload (the CRC included) of the file :func:`pack` writes for
    ``header``: a file's size minus its payload. Version 1 stores the payload's length
    (``payload_len``) in its header; version 2 the length of each layer (``layer_bytes``)."""
    return len(_head(header, payload_len)) + 4


def layered_header_estimate(groups: int) -> int:
    """Bytes a rate controller sets aside for a version-2 header before the layer sizes are
    known: 32 for the fixed fields, plus a length and a CRC (5) for each of ``groups``
    layers; within a few bytes of :func:`header_size`."""
    return 32 + 5 * groups


def _head(header: Header, payload_len: int) -> bytes:
    """The header's bytes before its CRC (see the module doc's layout)."""
    if header.groups:
        rest = [
            bytes([len(header.groups)]),
            *(_varint(g) for g in header.groups),
            _varint(header.m),
            _varint(header.extra),
            bytes([header.stages]),
            _varint(round(header.alpha * 1000)),
            bytes([ORDERS.index(header.order)]),
            bytes([len(header.layer_bytes)]),
            *(_varint(n) + c.to_bytes(4, "little") for n, c in zip(header.layer_bytes, header.layer_crcs)),
        ]
    else:
        rest = [
            bytes([header.stages, header.stages_present]),
            _varint(round(header.alpha * 1000)),
            bytes([ORDERS.index(header.order)]),
            _varint(payload_len),
            header.token_crc.to_bytes(4, "little"),
        ]
    return b"".join([*_common_fields(header), *rest])


def _common_fields(header: Header) -> list[bytes]:
    """The fields both versions start with: magic, version and flags up to K."""
    return [
        MAGIC,
        bytes([header.version, header.flags]),
        header.model_id,
        _varint(header.height),
        _varint(header.width),
        bytes([header.channels, header.stride]),
        _varint(header.M),
        _varint(header.K),
    ]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        _check(self.pos + n <= len(self.data), f"truncated file: header ends inside {what}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, max_bytes: int = 5) -> int:
        n = shift = 0
        for i in range(max_bytes):
            b = self.byte(what)
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                _check(b != 0 or i == 0, f"corrupt header: non-minimal encoding of {what}")
                return n
        raise CodecError(f"corrupt header: {what} is too long")


def file_bytes(data: object) -> bytes:
    """``data`` (bytes, bytearray, memoryview, ...) as bytes; CodecError naming it for
    anything else, such as the path of a file instead of its contents."""
    if isinstance(data, bytes):
        return data
    try:
        return bytes(memoryview(data))
    except TypeError:  # not bytes(data): bytes(5) is five zero bytes, bytes("x") a raw TypeError
        path = isinstance(data, (str, os.PathLike))
        hint = " (a path? pass the file's contents: Path(p).read_bytes())" if path else ""
        raise CodecError(f"data must be the bytes of a .pqm file, got {type(data).__name__}{hint}") from None


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, bytes]:
    """Parses and verifies ``.pqm`` bytes; returns ``(header, payload)``.

    Raises :class:`~codec.CodecError` saying why for any file this codec did not write
    (or that changed since), and for images over ``max_pixels`` (default
    :data:`MAX_IMAGE_PIXELS`). ``data`` must be bytes-like: a path or other object is refused
    with CodecError too.
    """
    data = file_bytes(data)
    r = _Reader(data)
    _check(len(data) >= 3 and data[:3] == MAGIC, "not a .pqm file (bad magic bytes)")
    r.pos = 3
    version = r.byte("version")
    _check(version in (1, 2), f"unsupported .pqm version {version} (this codec reads versions 1 and 2)")
    flags = r.byte("flags")
    model_id = r.take(4, "model id")
    height, width = r.varint("height"), r.varint("width")
    channels, stride = r.byte("channels"), r.byte("stride")
    M, K = r.varint("M"), r.varint("K")
    v2: dict = {}
    if version == 2:
        groups = tuple(r.varint("group size") for _ in range(r.byte("group count")))
        m, extra = r.varint("m"), r.varint("extra positions")
        stages = present = r.byte("stages")
        alpha = r.varint("alpha") / 1000
        order = r.byte("order")
        sizes, crcs = [], []
        for _ in range(r.byte("layer count")):
            sizes.append(r.varint("layer length"))
            crcs.append(int.from_bytes(r.take(4, "layer checksum"), "little"))
        payload_len, token_crc = sum(sizes), 0
        v2 = dict(groups=groups, m=m, extra=extra, layer_bytes=tuple(sizes), layer_crcs=tuple(crcs))
    else:
        stages, present = r.byte("stages"), r.byte("stages present")
        alpha = r.varint("alpha") / 1000
        order = r.byte("order")
        payload_len = r.varint("payload length")
        token_crc = int.from_bytes(r.take(4, "token checksum"), "little")
    _check(order < len(ORDERS), f"corrupt header: unknown position order {order}")
    crc_pos = r.pos
    crc = int.from_bytes(r.take(4, "checksum"), "little")
    payload = data[r.pos :]
    _check(
        len(payload) >= payload_len,
        f"truncated file: payload has {len(payload)} of {payload_len} bytes",
    )
    _check(len(payload) == payload_len, f"{len(payload) - payload_len} unexpected bytes after the payload")
    _check(
        zlib.crc32(payload, zlib.crc32(data[:crc_pos])) == crc,
        "corrupt file: checksum mismatch (the header or payload changed)",
    )
    header = Header(
        height=height,
        width=width,
        channels=channels,
        stride=stride,
        M=M,
        K=K,
        stages=stages,
        stages_present=present,
        alpha=alpha,
        order=ORDERS[order],
        model_id=model_id,
        flags=flags,
        token_crc=token_crc,
        **v2,
    )
    _validate(header, MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)
    _check(payload_len <= max_payload_bytes(header), "corrupt header: payload longer than any valid stream")
    return header, payload


def truncate(data: bytes, layers: int | None = None, max_bytes: int | None = None) -> bytes:
    """A layered (version 2) file cut after its first ``layers`` layers, or after as many
    layers as fit in ``max_bytes`` (at least one). The result is the file the encoder writes
    for m = the sub-vectors of those layers (tested); no model is needed. Raises CodecError
    for version-1 files and impossible requests."""
    header, payload = unpack(data)
    cut, kept = cut_layers(header, payload, layers, max_bytes)
    return bytes(data) if cut is header else pack(cut, kept)


def cut_layers(
    header: Header, payload: bytes, layers: int | None = None, max_bytes: int | None = None
) -> tuple[Header, bytes]:
    """:func:`truncate` on a file already unpacked: the ``(header, payload)`` of the file cut
    after ``layers`` layers (or as many as fit in ``max_bytes``); ``header`` itself when
    every layer is kept."""
    _check(header.version == 2, "only layered (version 2) files have layers to cut")
    n = len(header.layer_bytes)
    if layers is None:
        _check(max_bytes is not None, "give layers or max_bytes")
        layers = 1
        while layers < n and _file_size(_first_layers(header, layers + 1)) <= max_bytes:
            layers += 1
    _check(1 <= layers <= n, f"layers must be in 1..{n} for this file, got {layers}")
    cut = _first_layers(header, layers)
    return cut, payload if cut is header else payload[: sum(cut.layer_bytes)]


def _first_layers(header: Header, layers: int) -> Header:
    """The header of a layered file cut after ``layers`` layers (``header`` if that is all of them)."""
    if layers == len(header.layer_bytes):
        return header
    return replace(
        header,
        m=list(accumulate(header.groups, initial=0))[layers],
        extra=0,
        layer_bytes=header.layer_bytes[:layers],
        layer_crcs=header.layer_crcs[:layers],
    )


def _file_size(header: Header) -> int:
    """Bytes of a version-2 file with this header."""
    return header_size(header) + sum(header.layer_bytes)
