"""The one-call API: ``codec.compress(image) -> bytes`` and ``codec.decompress(bytes) -> image``
with a shipped model or a bundle path (re-exported by the package)."""

from __future__ import annotations

from .format.checks import checked_rate


def compress(
    image,
    model=None,
    *,
    bpp: float | None = None,
    size: int | None = None,
    quality: float | None = None,
    m: int | None = None,
    effort: int = 0,
) -> bytes:
    """RGB image (PIL image, or uint8 array/tensor [H, W, 3]; other PIL modes are converted
    to RGB, alpha dropped) -> .pqm bytes. ``model``: a bundle path (default: see codec.engine.registry).

    Rate control (nested models, at most one): ``bpp`` (the nearest file size the model
    offers), ``size`` (the best file not larger than that many bytes), ``quality`` (0-100,
    monotone in rate) or ``m`` (sub-vectors per position). Without one: ``quality`` 30 (see
    :data:`codec.engine.layered_codec.DEFAULT_QUALITY`; 100 is the full rate). Several of them, or
    an invalid one (nan, inf, <= 0, a string, a fractional ``size`` or ``m``): ValueError.
    ``effort`` (0..9, as cjxl's): encode time spent on a better token grid for the same
    decoder (:mod:`codec.engine.effort`; 0 is the encoder network alone).
    """
    from .engine.loading import get_codec

    rate = checked_rate(bpp=bpp, size=size, quality=quality, m=m)  # before the model loads
    return get_codec(model).compress(image, effort=effort, rate=rate)


def decompress(
    data: bytes,
    model=None,
    stages: int | None = None,
    layers: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
    decoder: str = "fidelity",
    realism_strength: float | None = None,
):
    """.pqm bytes -> PIL RGB image. ``model``: a bundle path or shipped name (default:
    the shipped model whose id the file names, else ``$CODEC_MODEL``). ``stages``: decode
    only that many stages (progressive, version-1 files); ``layers``: decode only the first
    quality layers (layered files); ``crop`` = (x, y, width, height): only that region;
    ``decoder``: ``fidelity`` (MSE-trained) or ``realism`` (discriminator-trained, where the
    model has one: CodecError otherwise) renders the same tokens; ``realism_strength`` (0 to 1,
    realism only): the realism decoder's share over the fidelity decoder's image (default: the
    model's own for the file's rate; :mod:`codec.render.realism`).
    CodecError for data that is not the bytes of a .pqm file this codec decodes (a path too)
    and for arguments out of range or of the wrong type. Needs no torch: the portable decoder
    (:class:`codec.engine.decoding.PortableDecoder`) gives the same pixels on every machine."""
    from PIL import Image

    from .engine.loading import decoder_for_file

    portable = decoder_for_file(data, model)
    return Image.fromarray(
        portable.decompress(
            data, stages=stages, layers=layers, crop=crop, decoder=decoder, realism_strength=realism_strength
        )
    )
