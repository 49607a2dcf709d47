"""Decoding .pqm files: the checks and the token decoding every decoder shares, and the
decoder of a bundle that needs no torch.

:func:`read_tokens` is the one path from a file's bytes to its tokens (header checks, rate
arguments, memory, entropy decoding, checksums); a decoder then renders the tokens. Two
render them: :class:`PortableDecoder` (numpy and the portable C++ inference of the
autoencoder's decoder: the same pixels on every machine, no torch) and the torch codec
(:class:`codec.engine.api.ImageCodec`, for GPUs and training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..entropy.schedule import CodingSchedule
from ..entropy.token_coding import LayeredTokenCoder, PortableLogits, RatePoint, TokenCoder, coded_tokens
from ..errors import CodecError
from ..format import bitstream, schema
from ..format.bundle import Bundle
from ..format.checks import checked_crop, integer, share
from ..render.realism import blend, strength_at
from .tiling import check_memory, render_latent

DECODERS = ("fidelity", "realism")
ENCODER = schema.AUTOENCODER + "encoder."  # what a decoder never reads


@dataclass(frozen=True)
class FileTokens:
    """A file's decoded tokens: ``tokens`` int64 [m, h, w] (the codes the decoder reads),
    ``counts`` int64 [h, w] codes present per position (layered files; None: all), the
    checked ``crop`` (or None)."""

    header: bitstream.Header
    tokens: np.ndarray
    counts: np.ndarray | None
    crop: tuple[int, int, int, int] | None

    @property
    def size(self) -> tuple[int, int]:
        return self.header.height, self.header.width

    @property
    def codes_per_position(self) -> float:
        """The mean number of codes per position the decoder reads (M without quality layers)."""
        return float(self.counts.mean()) if self.counts is not None else float(self.header.M)


def read_tokens(
    data: bytes,
    coder: TokenCoder,
    model_id: bytes,
    grid: tuple[int, int, int],
    decoders: tuple[str, ...] = ("fidelity",),
    *,
    decoder: str = "fidelity",
    stages: int | None = None,
    layers: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
    max_pixels: int | None = None,
) -> FileTokens:
    """The tokens of the .pqm ``data`` made by the model ``model_id`` whose grid is ``grid``
    = (stride, M, K) and whose entropy coding ``coder`` does; ``decoders``: the model's
    decoders. ``stages``: decode only the first stages (version-1 files); ``layers``: only
    the first quality layers (layered files: exactly the file ``codec truncate`` cuts there);
    ``crop`` = (x, y, width, height), checked against the image. CodecError for anything this
    model cannot decode, before the tokens are decoded where it can tell."""
    if decoder not in DECODERS:
        raise CodecError(f"decoder {decoder!r}: fidelity or realism")
    if decoder not in decoders:
        raise CodecError(f"this model has no {decoder} decoder (decoders: {', '.join(decoders)})")
    header, payload = bitstream.unpack(data, max_pixels=max_pixels)
    if header.model_id != model_id:
        raise CodecError(f"file made with model {header.model_id.hex()}, this is model {model_id.hex()}")
    layered = isinstance(coder, LayeredTokenCoder)
    if (header.stride, header.M, header.K) != grid or (layered and header.groups != coder.groups):
        raise CodecError("file's stride/M/K/groups do not match the model")
    if crop is not None:  # before the tokens are decoded: a bad crop fails at once
        crop = checked_crop(crop, (header.height, header.width))
    if layered:
        if stages is not None:
            raise CodecError("layered files decode by layers, not stages (use layers=)")
        coded = len(header.layer_bytes)
        if layers is not None and not 1 <= integer("layers", layers, CodecError) <= coded:
            raise CodecError(f"layers must be in 1..{coded} for this file, got {layers}")
        if layers is not None and layers < coded:  # the file cut there, from the header already read
            header, payload = bitstream.cut_layers(header, payload, int(layers))
        check_memory(header.height, header.width)
        tokens = coder.decode_layers(header, payload)
        M, h, w = header.token_shape
        counts = RatePoint(header.m, header.extra).counts(h, w, header.order)
        return FileTokens(header, tokens[: min(M, header.m + 1)], counts, crop)
    if layers is not None:
        raise CodecError("layers= needs a layered file and model")
    present = header.stages_present
    if stages is not None and not 0 <= integer("stages", stages, CodecError) <= present:
        raise CodecError(f"--stages must be in 0..{present} for this file, got {stages}")
    check_memory(header.height, header.width)
    schedule = CodingSchedule(header.stages, header.alpha, header.order)
    todo = present if stages is None else stages
    portable = bool(header.flags & bitstream.FLAG_PORTABLE)
    tokens = coder.decode_tokens(payload, header.token_shape, schedule, todo, portable)
    crc = bitstream.token_checksum(coded_tokens(tokens, schedule, present)) if todo == present else None
    if crc is not None and crc != header.token_crc:
        raise CodecError(
            "decoded tokens fail their checksum: the file is corrupt or the decoder differs from the encoder"
        )
    return FileTokens(header, tokens, None, crop)


def token_coder(mim_config: dict, schedule: CodingSchedule, portable, legacy=None) -> TokenCoder:
    """The token coder of an entropy model's config (layered when it has groups)."""
    if mim_config.get("groups"):
        return LayeredTokenCoder(
            schedule,
            portable,
            tuple(mim_config["groups"]),
            int(mim_config["K"]),
            int(mim_config["channel_depth"]),
            legacy,
        )
    return TokenCoder(schedule, portable, legacy)


class FileDecoder:
    """What every decoder of one model's .pqm files shares: :meth:`read` (:func:`read_tokens`
    with the model's token coder, id, grid and decoders) then :meth:`render_tokens`.
    Subclasses set ``tokens``, ``model_id``, ``grid`` = (stride, M, K) and ``decoders``."""

    tokens: TokenCoder
    model_id: bytes
    grid: tuple[int, int, int]
    decoders: tuple[str, ...]
    realism_strength: tuple[float, ...] | None = None
    """The bundle's strength of the realism decoder per code count (schema.REALISM_STRENGTH)."""

    def read(self, data: bytes, **kwargs) -> FileTokens:
        """:func:`read_tokens` of this model's file (keyword arguments as there)."""
        return read_tokens(data, self.tokens, self.model_id, self.grid, self.decoders, **kwargs)

    def decompress(
        self,
        data: bytes,
        stages: int | None = None,
        max_pixels: int | None = None,
        decoder: str = "fidelity",
        layers: int | None = None,
        crop: tuple[int, int, int, int] | None = None,
        realism_strength: float | None = None,
    ) -> np.ndarray:
        """.pqm bytes -> uint8 [H, W, 3]; CodecError for any file this model cannot decode.
        ``decoder``: ``fidelity`` (the autoencoder's, MSE-trained) or ``realism`` (same
        tokens: see :meth:`render_image`, and ``realism_strength``); ``stages`` (version-1 files) /
        ``layers`` (layered files): decode only the first ones; ``crop`` = (x, y, width,
        height): only that region goes through the decoder network (the tokens of the whole
        image are still decoded); ``max_pixels``: refuse larger images (default
        ``codec.format.bitstream.MAX_IMAGE_PIXELS``)."""
        if realism_strength is not None:  # before any decoding
            if decoder != "realism":
                raise CodecError("realism_strength needs decoder='realism'")
            realism_strength = share("realism strength", realism_strength, CodecError)
        got = self.read(data, decoder=decoder, stages=stages, layers=layers, crop=crop, max_pixels=max_pixels)
        return self.render_image(got, decoder, realism_strength)

    def render_image(
        self, got: FileTokens, decoder: str, realism_strength: float | None = None
    ) -> np.ndarray:
        """uint8 [H, W, 3] (or the crop) of a file's tokens. ``realism``: the realism decoder's
        image over the fidelity decoder's by ``realism_strength`` (default: the bundle's for
        the file's codes per position; 1, the realism decoder alone, without one), as
        :func:`codec.render.realism.blend`."""
        if decoder != "realism":
            return self.render_tokens(got, decoder)
        s = realism_strength
        if s is None:
            s = strength_at(self.realism_strength, got.codes_per_position)
        if s >= 1.0:
            return self.render_tokens(got, "realism")
        fidelity = self.render_tokens(got, "fidelity")
        return fidelity if s <= 0.0 else blend(fidelity, self.render_tokens(got, "realism"), s)

    def render_tokens(self, got: FileTokens, decoder: str) -> np.ndarray:
        """uint8 [H, W, 3] (or the crop) of a file's decoded tokens."""
        raise NotImplementedError


class PortableDecoder(FileDecoder):
    """Decodes the files of one bundle without torch: :func:`read_tokens`, the latent in numpy
    (:class:`codec.render.latent.Dequantizer`) and the autoencoder's decoder in the portable
    C++ inference (:class:`codec.render.portable.PortableDecoder`): the same pixels on every
    machine, thread count and instruction set.

    """

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        from ..render.latent import Dequantizer

        self.model_id = bundle.model_id
        self.config = bundle.config(schema.AUTOENCODER_CONFIG)
        mim = bundle.config(schema.MIM_CONFIG)
        self.schedule = CodingSchedule(**bundle.config(schema.SCHEDULE))
        self.layered = bool(mim.get("groups"))
        self.threads = threads
        # Only what decoding still needs stays in memory (fp16 as stored, not the encoder); each
        # part is handed over once, to the network built from it.
        self._stored = {
            prefix: schema.part(bundle.tensors, prefix)
            for prefix in (schema.ENTROPY_MODEL, self._DECODER_PREFIX["fidelity"], schema.REALISM_DECODER)
        }
        self.tokens = token_coder(
            mim, self.schedule, lambda: self._build(schema.ENTROPY_MODEL, lambda t: PortableLogits(mim, t))
        )
        ae = schema.part(bundle.tensors, schema.AUTOENCODER)
        self.stride = 2 ** len(self.config["channels"])
        self.grid = (self.stride, int(self.config["M"]), int(self.config["K"]))
        fill = ae.get("fill")
        self.dequantizer = Dequantizer(
            self.config,
            ae["quantizer.codebooks"].astype(np.float32),
            None if fill is None else fill.astype(np.float32),
        )
        self.decoders = ("fidelity", "realism") if self._stored[schema.REALISM_DECODER] else ("fidelity",)
        self.realism_strength = bundle.realism_strength()
        self._networks: dict[str, object] = {}

    _DECODER_PREFIX = {"fidelity": schema.AUTOENCODER + "decoder.", "realism": schema.REALISM_DECODER}

    def _build(self, prefix: str, make):
        """``make`` (the tensors under ``prefix``, as stored), after which they are dropped."""
        made = make(self._stored[prefix])
        del self._stored[prefix]
        return made

    def network(self, decoder: str = "fidelity"):
        """The C++ decoder network ``decoder`` (built on first use)."""
        if decoder not in self._networks:
            from ..render.portable import PortableDecoder as Network

            self._networks[decoder] = self._build(
                self._DECODER_PREFIX[decoder], lambda t: Network(self.config, t, threads=self.threads)
            )
        return self._networks[decoder]

    def render_tokens(self, got: FileTokens, decoder: str) -> np.ndarray:
        z = self.dequantizer.latent(got.tokens, got.counts)
        net = self.network(decoder)
        s = self.stride
        return render_latent(
            lambda part: net.pixels(part, (part.shape[-2] * s, part.shape[-1] * s)), z, got.size, s, got.crop
        )


def load_portable_decoder(
    path: str | Path, trusted=None, threads: int | None = None, verified_id: bytes | None = None
) -> PortableDecoder:
    """A :class:`PortableDecoder` of the bundle at ``path`` (read and checked once; see
    :func:`~codec.format.bundle.read_bundle` for ``trusted`` and ``verified_id``)."""
    from ..format.bundle import read_bundle

    return PortableDecoder(read_bundle(path, trusted, verified_id, skip=(ENCODER,)), threads)
