"""Images <-> .pqm bytes: the PQ-VAE, the masked entropy model and the range coder.

Data flow (one way): image uint8 [H, W, 3] -> PQVAE.encode -> tokens int [M, h, w]
-> for each schedule stage: MaskedEntropyModel(tokens known so far) -> logits of the
stage's positions -> RangeEncoder -> payload -> .pqm (header + payload); and back.
The encoder makes exactly the entropy-model calls the decoder makes (same inputs, same
shapes, same order), on the CPU in float32, so both sides see the same logits.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from . import bitstream
from .checks import checked_crop, integer
from .effort import EFFORT_MAX_PIXELS, effort_steps, refine_tokens
from .entropy import RangeDecoder, RangeEncoder
from .entropy.schedule import CodingSchedule
from .errors import CodecError
from .hardware import autocast
from .models.mim import MaskedEntropyModel
from .models.pqvae import PQVAE
from .tiling import HALO_TOKENS, TILE_ABOVE_PIXELS, encode_tiled, render_tiled, token_tiles

# Peak memory of coding, measured for the s=16 model on the CPU (float32 autoencoder): about
# 0.23 GB per megapixel to encode, 0.38 GB to decode, over ~0.6 GB for the process.
BYTES_PER_PIXEL = 400
BASE_BYTES = 1 << 30
TILED_BYTES_PER_PIXEL = 24  # an estimate, checked by bench/large_images.py


def available_memory() -> int | None:
    """Bytes of memory the system can give (MemAvailable on Linux), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_needed(height: int, width: int) -> int:
    """Bytes coding an image takes at most: the autoencoder's activations of the whole image,
    or of one tile for images over TILE_ABOVE_PIXELS (codec.tiling), plus what grows with
    the pixels in tiled mode (the image, the output, the channel model's logits)."""
    pixels = height * width
    if pixels > TILE_ABOVE_PIXELS:
        return BASE_BYTES + BYTES_PER_PIXEL * TILE_ABOVE_PIXELS + TILED_BYTES_PER_PIXEL * pixels
    return BASE_BYTES + BYTES_PER_PIXEL * pixels


def check_memory(height: int, width: int) -> None:
    """Refuses (CodecError, before any allocation) an image that would not fit in memory:
    better a clear message than the OOM killer."""
    need, have = memory_needed(height, width), available_memory()
    if have is not None and need > have:
        raise CodecError(
            f"a {width}x{height} image needs about {need / 2**30:.1f} GiB to code and only "
            f"{have / 2**30:.1f} GiB is available"
        )


@contextmanager
def one_thread():
    """Runs torch on one thread inside (files written before the portable inference: torch's
    CPU GEMMs split sums over threads, so 1 and 2 threads give different logits here; the
    instruction set and BLAS still change them, which only the portable inference cures)."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ImageCodec:
    """A trained PQ-VAE + entropy model + schedule; ``compress``/``decompress`` work on bytes.

    The autoencoder may run on ``device`` (e.g. a GPU); the entropy model runs on the CPU in
    the portable C++ inference (:mod:`codec.entropy.portable`: the same logits on every
    machine, so a file decodes anywhere; header flag ``FLAG_PORTABLE``). Files without that
    flag (written before it existed) are decoded with the torch model on one thread, which
    reproduces their logits only on a machine like the encoder's. ``portable=False`` writes
    such files (tests of the old path). ``amp``: precision of the
    autoencoder's decoder (auto: bf16 on CUDA and CPUs with AMX or AVX512-BF16, 1.7x faster
    on an AMX CPU for a 0.002 dB change; off: float32). It changes pixels, never tokens: the
    encoder runs in float32.
    """

    layered: bool = False
    """Capability: True for a nested model whose files have quality layers and whose rate is
    chosen per image (``m``, ``bpp``, ``size``, ``quality``); False: a single-rate model
    whose files are progressive by stages."""

    def __init__(
        self,
        autoencoder: PQVAE,
        entropy_model: MaskedEntropyModel,
        schedule: CodingSchedule | None = None,
        model_id: bytes = bytes(4),
        device: str | torch.device = "cpu",
        amp: str = "auto",
        realism_decoder: torch.nn.Module | None = None,
        portable: bool = True,
    ) -> None:
        self.autoencoder = autoencoder.to(device).eval()
        self.portable = portable
        self._portable = None
        # A second decoder of the same tokens (trained with the VQ-conditioned discriminator):
        # files say the model offers it (header flag); ``decompress(decoder="realism")`` uses it.
        self.realism_decoder = realism_decoder.to(device).eval() if realism_decoder is not None else None
        self.entropy_model = entropy_model.float().cpu().eval()
        self.schedule = schedule or CodingSchedule()
        self.model_id = model_id
        self.device = torch.device(device)
        self.amp = amp
        cfg = autoencoder.cfg
        if (entropy_model.cfg.M, entropy_model.cfg.K) != (cfg.M, cfg.K):
            raise ValueError("autoencoder and entropy model disagree on M, K")

    # -- tokens <-> payload -------------------------------------------------------------
    def portable_models(self) -> dict:
        """The C++ inference of the entropy model (built on first use): ``base`` (the masked
        transformer) and, for layered models, ``channel``."""
        if self._portable is None:
            from .entropy.portable import PortableChannel, PortableTransformer

            em = self.entropy_model
            params = {k: v.float().numpy() for k, v in em.state_dict().items()}
            if getattr(em.cfg, "groups", None):
                self._portable = {
                    "base": PortableTransformer(em.base.cfg.to_dict(), params, "base."),
                    "channel": PortableChannel(em.cfg.to_dict(), params, "channel."),
                }
            else:
                self._portable = {"base": PortableTransformer(em.cfg.to_dict(), params)}
        return self._portable

    @torch.no_grad()
    def _stage_logits(
        self, tokens: torch.Tensor, known: torch.Tensor, pos: torch.Tensor, portable: bool = True
    ) -> np.ndarray:
        """float32 [n * M, K] logits of the flat positions ``pos`` given the tokens at the flat
        positions ``known`` (in coding order: both sides pass the same tensors)."""
        if portable:
            logits = self.portable_models()["base"].logits(tokens.numpy(), known.numpy(), pos.numpy())
            return logits.reshape(-1, logits.shape[-1])
        with one_thread():
            logits = self.entropy_model(tokens[None], known[None], pos[None])[0]  # [n, M, K]
        return logits.reshape(-1, logits.shape[-1]).numpy()

    def encode_tokens(
        self,
        tokens: np.ndarray,
        schedule: CodingSchedule | None = None,
        estimate: bool = True,
        stages: int | None = None,
        portable: bool | None = None,
    ) -> tuple[bytes, float]:
        """Tokens int [M, h, w] -> (payload, ideal bits under the model; 0.0 if not ``estimate``).
        ``stages``: code only the first stages (a smaller file that decodes progressively);
        ``portable``: the portable inference (default: this codec's ``portable``). A grid over
        one tile is coded tile by tile (:mod:`codec.tiling`)."""
        portable = self.portable if portable is None else portable
        _, h, w = tokens.shape
        enc, bits = RangeEncoder(), 0.0
        for rows, cols in token_tiles(h, w):
            tile = np.ascontiguousarray(tokens[:, rows, cols], dtype=np.int64)
            bits += self._encode_tile(enc, tile, schedule or self.schedule, estimate, stages, portable)
        return enc.finish(), bits

    def _encode_tile(
        self, enc, tokens: np.ndarray, schedule: CodingSchedule, estimate: bool, stages, portable: bool
    ) -> float:
        from .entropy import information_content

        M, h, w = tokens.shape
        tok = torch.from_numpy(tokens)
        flat = tok.reshape(M, h * w)
        bits, done = 0.0, 0
        order = torch.from_numpy(np.concatenate(schedule.stages_for(h, w)))
        for n in schedule.counts(h, w)[:stages]:
            if n == 0:
                continue
            pos = order[done : done + n]
            logits = self._stage_logits(tok, order[:done], pos, portable)
            symbols = flat[:, pos].T.reshape(-1).numpy()  # [n, M] row-major
            enc.encode_logits(symbols, logits)
            if estimate:  # a second quantization pass: skipped when only the bytes are wanted
                bits += information_content(symbols, logits)
            done += n
        return bits

    def decode_tokens(
        self,
        payload: bytes,
        shape: tuple[int, int, int],
        schedule: CodingSchedule | None = None,
        stages: int | None = None,
        portable: bool | None = None,
    ) -> np.ndarray:
        """Payload -> tokens int64 [M, h, w]. With ``stages`` < S, only the first stages are
        decoded and the other positions get the model's most likely tokens."""
        portable = self.portable if portable is None else portable
        M, h, w = shape
        tokens = np.zeros((M, h, w), dtype=np.int64)
        dec = RangeDecoder(payload)
        for rows, cols in token_tiles(h, w):
            th, tw = rows.stop - rows.start, cols.stop - cols.start
            tokens[:, rows, cols] = self._decode_tile(
                dec, (M, th, tw), schedule or self.schedule, stages, portable
            )
        return tokens

    def _decode_tile(self, dec, shape, schedule: CodingSchedule, stages, portable: bool) -> np.ndarray:
        M, h, w = shape
        tok = torch.zeros(M, h, w, dtype=torch.int64)
        flat = tok.view(M, h * w)
        done = 0
        order = torch.from_numpy(np.concatenate(schedule.stages_for(h, w)))
        for n in schedule.counts(h, w)[:stages]:
            if n == 0:
                continue
            pos = order[done : done + n]
            logits = self._stage_logits(tok, order[:done], pos, portable)
            flat[:, pos] = torch.from_numpy(dec.decode_logits(logits).astype(np.int64)).reshape(n, M).T
            done += n
        if done < h * w:
            rest = order[done:]
            guess = self._stage_logits(tok, order[:done], rest, portable).reshape(len(rest), M, -1).argmax(-1)
            flat[:, rest] = torch.from_numpy(guess.T.astype(np.int64))
        return tok.numpy()

    # -- images <-> bytes ---------------------------------------------------------------
    @torch.no_grad()
    def compress(
        self, image, max_pixels: int | None = None, stages: int | None = None, effort: int = 0
    ) -> bytes:
        """RGB image (PIL image, or uint8 array/tensor [H, W, 3]) -> .pqm bytes.

        Grayscale, palette and RGBA PIL images are converted to RGB (alpha is dropped); arrays
        must be uint8 [H, W, 3] (ValueError otherwise). Images over ``max_pixels`` (default
        :data:`codec.bitstream.MAX_IMAGE_PIXELS`) or too large for the available memory are
        refused with CodecError before any work; large images are coded in tiles (:mod:`codec.tiling`).
        ``stages`` < S writes only the first stages (a smaller, coarser file: the decoder
        predicts the rest, as ``decompress(stages=)`` does with a full file).
        ``effort`` 0..9: encode time spent on a better token grid (:mod:`codec.effort`); the
        decoder and the file format are the same at every effort.
        """
        return self.compress_batch([image], max_pixels, stages, effort=effort)[0]

    @torch.no_grad()
    def compress_batch(
        self, images: list, max_pixels: int | None = None, stages: int | None = None, effort: int = 0
    ) -> list[bytes]:
        """Several images -> their .pqm bytes. Images of one size go through the autoencoder
        as one batch (useful on a GPU); the entropy model codes each image on its own. The
        bytes are those of :meth:`compress` on each image alone (tested)."""
        xs = checked_images(images, max_pixels)
        tokens = self.tokenize(xs, effort)
        if stages is not None and not 0 <= stages <= self.schedule.stages:
            raise ValueError(f"stages must be in 0..{self.schedule.stages}, got {stages}")
        return [self._pack(x.shape[:2], t, stages) for x, t in zip(xs, tokens)]

    @torch.no_grad()
    def tokenize(self, xs: list[np.ndarray], effort: int = 0, counts: list | None = None) -> list[np.ndarray]:
        """Tokens int64 [M, h, w] of uint8 images [H, W, 3]; images of one size go through the
        encoder as one batch. ``effort`` > 0 refines each grid (:func:`codec.effort.refine_tokens`)
        for the decode with ``counts[i]`` (int64 [h, w], nested models) sub-vectors."""
        steps = effort_steps(effort)
        tokens: list[np.ndarray | None] = [None] * len(xs)
        ae = self.autoencoder
        for shape in dict.fromkeys(x.shape for x in xs):
            idx = [i for i, x in enumerate(xs) if x.shape == shape]
            pixels = shape[0] * shape[1]
            if steps and pixels > EFFORT_MAX_PIXELS:
                raise CodecError(
                    f"effort > 0 refines images of up to {EFFORT_MAX_PIXELS} pixels; "
                    f"this one has {pixels}: use effort 0"
                )
            if pixels > TILE_ABOVE_PIXELS and not steps:  # encoded in tiles, each made float only then
                z = torch.cat([encode_tiled(ae.encoder, xs[i], ae.stride, self.device) for i in idx])
                t = ae.quantizer.indices(z)
            else:
                xt = torch.from_numpy(np.stack([xs[i] for i in idx])).permute(0, 3, 1, 2).float().div(255)
                xt = xt.to(self.device)
                if steps:
                    c = None if counts is None else torch.stack([counts[i] for i in idx]).to(self.device)
                    with torch.enable_grad():
                        t = refine_tokens(ae, xt, steps, c, self.amp)
                else:
                    t = ae.encode(xt)
            for i, ti in zip(idx, t.cpu().numpy()):
                tokens[i] = ti
        return tokens

    def _pack(self, size: tuple[int, int], tokens: np.ndarray, stages: int | None = None) -> bytes:
        payload, _ = self.encode_tokens(tokens, estimate=False, stages=stages)
        present = self.schedule.stages if stages is None else stages
        crc = bitstream.token_checksum(coded_tokens(tokens, self.schedule, present))
        return bitstream.pack(self.header(size, crc, stages), payload)

    def flags(self) -> int:
        """Header flags of this codec's files."""
        return (bitstream.FLAG_REALISM if self.realism_decoder is not None else 0) | (
            bitstream.FLAG_PORTABLE if self.portable else 0
        )

    def header(
        self, size: tuple[int, int], token_crc: int = 0, stages: int | None = None
    ) -> bitstream.Header:
        """The header of this model's file of an image of ``size`` = (H, W) pixels."""
        cfg, s = self.autoencoder.cfg, self.schedule
        present = s.stages if stages is None else stages
        tiled = bitstream.is_tiled(-(-size[0] // cfg.stride), -(-size[1] // cfg.stride))
        return bitstream.Header(
            flags=self.flags() | (bitstream.FLAG_TILED if tiled else 0),
            height=size[0],
            width=size[1],
            channels=3,
            stride=cfg.stride,
            M=cfg.M,
            K=cfg.K,
            stages=s.stages,
            stages_present=present,
            alpha=s.alpha,
            order=s.order,
            model_id=self.model_id,
            token_crc=token_crc,
        )

    def unpack_own(self, data: bytes, decoder: str, max_pixels: int | None) -> tuple[bitstream.Header, bytes]:
        """(header, payload) of a file this model made, for ``decoder``; CodecError otherwise."""
        if decoder not in ("fidelity", "realism"):
            raise CodecError(f"decoder {decoder!r}: fidelity or realism")
        if decoder == "realism" and self.realism_decoder is None:
            raise CodecError("this model has no realism decoder (decoders: fidelity)")
        header, payload = bitstream.unpack(data, max_pixels=max_pixels)
        if header.model_id != self.model_id:
            raise CodecError(
                f"file made with model {header.model_id.hex()}, this is model {self.model_id.hex()}"
            )
        return header, payload

    @torch.no_grad()
    def decompress(
        self,
        data: bytes,
        stages: int | None = None,
        max_pixels: int | None = None,
        decoder: str = "fidelity",
        crop: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """.pqm bytes -> uint8 [H, W, 3]. Raises CodecError for any file this model cannot decode.
        ``decoder``: ``fidelity`` (the autoencoder's, MSE-trained) or ``realism`` (same tokens).
        ``crop`` = (x, y, width, height): only that region goes through the decoder (the
        tokens of the whole image are still decoded)."""
        header, payload = self.unpack_own(data, decoder, max_pixels)
        cfg = self.autoencoder.cfg
        if (header.stride, header.M, header.K) != (cfg.stride, cfg.M, cfg.K):
            raise CodecError("file's stride/M/K do not match the model")
        present = header.stages_present
        if stages is not None and not 0 <= integer("stages", stages, CodecError) <= present:
            raise CodecError(f"--stages must be in 0..{present} for this file, got {stages}")
        if crop is not None:  # before the tokens are decoded: a bad crop fails at once
            crop = checked_crop(crop, (header.height, header.width))
        check_memory(header.height, header.width)
        schedule = CodingSchedule(header.stages, header.alpha, header.order)
        todo = present if stages is None else stages
        portable = bool(header.flags & bitstream.FLAG_PORTABLE)
        tokens = self.decode_tokens(payload, header.token_shape, schedule, todo, portable)
        if (
            todo == present
            and bitstream.token_checksum(coded_tokens(tokens, schedule, present)) != header.token_crc
        ):
            raise CodecError(
                "decoded tokens fail their checksum: the file is corrupt or the decoder differs "
                "from the encoder"
            )
        t = torch.from_numpy(tokens)[None].to(self.device)
        z = self.autoencoder.quantizer.codes_from_indices(t)
        return self.render(z, (header.height, header.width), decoder, crop)

    @torch.no_grad()
    def render(
        self,
        z: torch.Tensor,
        size: tuple[int, int],
        decoder: str = "fidelity",
        crop: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """uint8 [H, W, 3] of the latent ``z`` [1, D, h, w] (the decoder's input), ``size`` =
        (H, W); images over :data:`codec.tiling.TILE_ABOVE_PIXELS` are decoded in tiles.
        ``crop`` = (x, y, width, height): only that region, from the latent positions that
        cover it and a margin of ``HALO_TOKENS`` (the pixels of the whole decode, within a few
        levels where the decoder sees further than the margin)."""
        dec = self.realism_decoder if decoder == "realism" else self.autoencoder.decoder
        s = self.autoencoder.stride
        if crop is not None:
            x, y, w, h = checked_crop(crop, size)
            r0, c0 = max(y // s - HALO_TOKENS, 0), max(x // s - HALO_TOKENS, 0)
            r1, c1 = (
                min(-(-(y + h) // s) + HALO_TOKENS, z.shape[2]),
                min(-(-(x + w) // s) + HALO_TOKENS, z.shape[3]),
            )
            part = self.render(z[:, :, r0:r1, c0:c1], ((r1 - r0) * s, (c1 - c0) * s), decoder)
            return part[y - r0 * s : y - r0 * s + h, x - c0 * s : x - c0 * s + w]
        with autocast(self.amp, self.device):
            if size[0] * size[1] > TILE_ABOVE_PIXELS:
                return render_tiled(dec, z, size, s)
            out = dec(z)[0, :, : size[0], : size[1]].float()
        return (out.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def checked_images(images: list, max_pixels: int | None = None) -> list[np.ndarray]:
    """uint8 [H, W, 3] arrays of the images (see :func:`to_uint8_rgb`); CodecError, before any
    work, for an image over ``max_pixels`` (default MAX_IMAGE_PIXELS) or the available memory."""
    xs = [to_uint8_rgb(im) for im in images]
    limit = bitstream.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    for x in xs:
        H, W = x.shape[:2]
        if H == 0 or W == 0:
            raise CodecError(f"the image is empty ({W}x{H} pixels)")
        if H * W > limit:
            raise CodecError(f"image of {W}x{H} = {H * W} pixels exceeds the limit of {limit}")
        check_memory(H, W)
    return xs


def coded_tokens(tokens: np.ndarray, schedule: CodingSchedule, stages: int) -> np.ndarray:
    """The tokens a file of ``stages`` stages holds: all [M, h, w] when every stage is
    present, else [M, n] at the coded positions in coding order (what the checksum covers)."""
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


def to_uint8_rgb(image) -> np.ndarray:
    """uint8 [H, W, 3] from a PIL image or an array/tensor [H, W, 3] uint8; anything else
    raises ValueError. PIL images are shown as a viewer would: the EXIF orientation applied,
    an embedded ICC profile converted to sRGB, 16-bit and 32-bit integer modes scaled to 8
    bits, float images (mode F) taken as [0, 1] (or [0, 255] when larger values occur),
    palette, grayscale and RGBA converted to RGB (alpha dropped)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return pil_to_rgb(image)
    x = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected a PIL image or uint8 [H, W, 3], got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)


def pil_to_rgb(img) -> np.ndarray:
    """See :func:`to_uint8_rgb` (PIL images)."""
    import io

    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)  # a portrait photo stays upright
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
                raise ValueError("a float image (mode F) must hold values in [0, 1] or [0, 255]")
            scale = 255.0 if a.max() <= 1.0 else 1.0
        elif img.mode.startswith("I;16") or (a.size and a.max() > 255):
            if a.size and (a.min() < 0 or a.max() > 65535):
                raise ValueError("a 32-bit integer image must hold values in [0, 65535]")
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        gray = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    rgb = img.convert("RGB")
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
        except ImportError:  # Pillow without colour management
            ImageCms = None
        if ImageCms is not None:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                rgb = ImageCms.profileToProfile(rgb, src, ImageCms.createProfile("sRGB"))
            except (ImageCms.PyCMSError, OSError, ValueError):
                pass  # a profile that does not fit: the pixels as they are
    return np.array(rgb)
