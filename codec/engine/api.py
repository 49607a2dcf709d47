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

from ..entropy.schedule import CodingSchedule
from ..entropy.token_coding import PortableLogits, coded_tokens
from ..errors import CodecError
from ..format import bitstream
from ..format.checks import Rate
from ..models.mim import MaskedEntropyModel
from ..models.pqvae import PQVAE, pad_to_multiple
from ..util.hardware import autocast
from .decoding import FileDecoder, FileTokens, token_coder
from .effort import EFFORT_MAX_PIXELS, effort_steps, refine_tokens
from .tiling import TILE_ABOVE_PIXELS, check_memory, encode_tiled, render_latent


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


class TorchLogits:
    """The torch entropy model's logits on one thread (:class:`codec.entropy.token_coding.EntropyLogits`):
    what files without ``FLAG_PORTABLE`` were written with."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def stage_logits(self, tokens: np.ndarray, known: np.ndarray, pos: np.ndarray) -> np.ndarray:
        t, k, p = (torch.from_numpy(np.asarray(a, dtype=np.int64))[None] for a in (tokens, known, pos))
        with one_thread():
            logits = self.model(t, k, p)[0]  # [n, M, K]
        return logits.reshape(-1, logits.shape[-1]).numpy()

    @torch.no_grad()
    def group_logits(self, tokens: np.ndarray, g: int) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))[None]
        with one_thread():
            return self.model.group_logits(t, g)[0].numpy()


class ImageCodec(FileDecoder):
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
        realism_strength: tuple[float, ...] | None = None,
    ) -> None:
        self.autoencoder = autoencoder.to(device).eval()
        self.portable = portable
        # A second decoder of the same tokens (trained with the VQ-conditioned discriminator):
        # files say the model offers it (header flag); ``decompress(decoder="realism")`` uses it.
        self.realism_decoder = realism_decoder.to(device).eval() if realism_decoder is not None else None
        self.realism_strength = realism_strength  # per code count: codec.render.realism
        self.entropy_model = entropy_model.float().cpu().eval()
        self.model_id = model_id
        self.device = torch.device(device)
        self.amp = amp
        cfg = autoencoder.cfg
        if (entropy_model.cfg.M, entropy_model.cfg.K) != (cfg.M, cfg.K):
            raise ValueError("autoencoder and entropy model disagree on M, K")
        self.tokens = token_coder(
            entropy_model.cfg.to_dict(),
            schedule or CodingSchedule(),
            self._portable_logits,
            TorchLogits(self.entropy_model),
        )

    @property
    def schedule(self) -> CodingSchedule:
        """The coding schedule this codec writes (its token coder's)."""
        return self.tokens.schedule

    @schedule.setter
    def schedule(self, schedule: CodingSchedule) -> None:
        self.tokens.schedule = schedule

    # -- tokens <-> payload -------------------------------------------------------------
    def _portable_logits(self) -> PortableLogits:
        em = self.entropy_model
        return PortableLogits(em.cfg.to_dict(), {k: v.float().numpy() for k, v in em.state_dict().items()})

    def portable_models(self) -> dict:
        """The C++ inference of the entropy model: ``base`` (the masked transformer) and, for
        layered models, ``channel``."""
        p = self.tokens.logits_model(portable=True)
        return {"base": p.base} | ({"channel": p.channel} if p.channel is not None else {})

    # -- images <-> bytes ---------------------------------------------------------------
    @torch.no_grad()
    def compress(
        self,
        image,
        max_pixels: int | None = None,
        stages: int | None = None,
        effort: int = 0,
        rate: Rate | None = None,
    ) -> bytes:
        """RGB image (PIL image, or uint8 array/tensor [H, W, 3]) -> .pqm bytes.

        Grayscale, palette and RGBA PIL images are converted to RGB (alpha is dropped); arrays
        must be uint8 [H, W, 3] (ValueError otherwise). Images over ``max_pixels`` (default
        :data:`codec.format.bitstream.MAX_IMAGE_PIXELS`) or too large for the available memory are
        refused with CodecError before any work; large images are coded in tiles (:mod:`codec.engine.tiling`).
        ``stages`` < S writes only the first stages (a smaller, coarser file: the decoder
        predicts the rest, as ``decompress(stages=)`` does with a full file).
        ``effort`` 0..9: encode time spent on a better token grid (:mod:`codec.engine.effort`); the
        decoder and the file format are the same at every effort. ``rate``: this model codes
        at one rate, so only an empty :class:`~codec.format.checks.Rate` (ValueError otherwise;
        nested models: :class:`~codec.engine.layered_codec.LayeredImageCodec`).
        """
        return self.compress_batch([image], max_pixels, stages, effort=effort, rate=rate)[0]

    @torch.no_grad()
    def compress_batch(
        self,
        images: list,
        max_pixels: int | None = None,
        stages: int | None = None,
        effort: int = 0,
        rate: Rate | None = None,
    ) -> list[bytes]:
        """Several images -> their .pqm bytes. Images of one size go through the autoencoder
        as one batch (useful on a GPU); the entropy model codes each image on its own. The
        bytes are those of :meth:`compress` on each image alone (tested)."""
        if rate:
            raise ValueError("this model codes at one rate: bpp/size/quality/m need a nested (layered) model")
        xs = checked_images(images, max_pixels)
        tokens = self.tokenize(xs, effort)
        if stages is not None and not 0 <= stages <= self.schedule.stages:
            raise ValueError(f"stages must be in 0..{self.schedule.stages}, got {stages}")
        return [self._pack(x.shape[:2], t, stages) for x, t in zip(xs, tokens)]

    @torch.no_grad()
    def tokenize(self, xs: list[np.ndarray], effort: int = 0) -> list[np.ndarray]:
        """Tokens int64 [M, h, w] of uint8 images [H, W, 3]; images of one size go through the
        encoder as one batch. ``effort`` > 0 refines each grid (:func:`codec.engine.effort.refine_tokens`)."""
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
                    with torch.enable_grad():
                        t = refine_tokens(ae, xt, steps, amp=self.amp)
                else:
                    t = ae.encode(xt)
            for i, ti in zip(idx, t.cpu().numpy()):
                tokens[i] = ti
        return tokens

    @torch.no_grad()
    def encoder_latent(self, x: np.ndarray) -> torch.Tensor:
        """The encoder's latent float32 ``[D, h, w]`` of one uint8 image ``[H, W, 3]`` (in tiles
        above :data:`~codec.engine.tiling.TILE_ABOVE_PIXELS`, as :meth:`tokenize` does)."""
        ae = self.autoencoder
        if x.shape[0] * x.shape[1] > TILE_ABOVE_PIXELS:
            return encode_tiled(ae.encoder, x, ae.stride, self.device)[0].float()
        xt = torch.from_numpy(np.array(x, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
        return ae.encoder(pad_to_multiple(xt.to(self.device), ae.stride))[0].float()

    def _pack(self, size: tuple[int, int], tokens: np.ndarray, stages: int | None = None) -> bytes:
        payload, _ = self.tokens.encode_tokens(tokens, estimate=False, stages=stages, portable=self.portable)
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

    def portable_decoder(self, threads: int | None = None):
        """The torch-free decoder of this model (:class:`codec.engine.decoding.PortableDecoder`): it
        decodes the same files, to the same pixels on every machine."""
        import json
        from pathlib import Path

        from ..format import schema
        from ..format.bundle import Bundle
        from .decoding import PortableDecoder

        def arrays(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
            return {prefix + k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}

        tensors = arrays(schema.AUTOENCODER, self.autoencoder)
        tensors |= arrays(schema.ENTROPY_MODEL, self.entropy_model)
        if self.realism_decoder is not None:
            tensors |= arrays(schema.REALISM_DECODER, self.realism_decoder)
        meta = {
            schema.KIND: schema.KIND_BUNDLE,
            schema.AUTOENCODER_CONFIG: json.dumps(self.autoencoder.cfg.to_dict()),
            schema.MIM_CONFIG: json.dumps(self.entropy_model.cfg.to_dict()),
            schema.SCHEDULE: json.dumps(self.schedule.__dict__),
        }
        if self.realism_strength is not None:
            meta[schema.REALISM_STRENGTH] = json.dumps(list(self.realism_strength))
        return PortableDecoder(Bundle(Path("<in memory>"), tensors, meta, self.model_id), threads)

    @property
    def grid(self) -> tuple[int, int, int]:
        """(stride, M, K) of the token grid."""
        cfg = self.autoencoder.cfg
        return cfg.stride, cfg.M, cfg.K

    @property
    def decoders(self) -> tuple[str, ...]:
        return ("fidelity", "realism") if self.realism_decoder is not None else ("fidelity",)

    @torch.no_grad()
    def render_tokens(self, got: FileTokens, decoder: str) -> np.ndarray:
        """Through torch's decoder network (:class:`codec.engine.decoding.PortableDecoder` decodes
        the same files without torch)."""
        t = torch.from_numpy(got.tokens)[None].to(self.device)
        counts = None if got.counts is None else torch.from_numpy(got.counts)[None].to(self.device)
        return self.render(self.autoencoder.latent(t, counts), got.size, decoder, got.crop)

    @torch.no_grad()
    def render(
        self,
        z: torch.Tensor,
        size: tuple[int, int],
        decoder: str = "fidelity",
        crop: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """uint8 [H, W, 3] of the latent ``z`` [1, D, h, w] (the decoder's input), ``size`` =
        (H, W), through torch's decoder network (:func:`codec.engine.tiling.render_latent`: tiles,
        ``crop``)."""
        dec = self.realism_decoder if decoder == "realism" else self.autoencoder.decoder

        def pixels(part: torch.Tensor) -> np.ndarray:
            out = dec(part)[0].float()
            return (out.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()

        with autocast(self.amp, self.device):
            return render_latent(pixels, z, size, self.autoencoder.stride, crop)


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
