"""codec: a learned image codec (product-quantized VQ-VAE + masked-image-model entropy model).

Light to import: submodules that need torch or the compiled coder load on first use.
``import codec`` registers the ``.pqm`` format with Pillow.
"""

from .errors import CodecError

__version__ = "0.1.0"
__all__ = ["CodecError", "__version__", "compress", "decompress"]


def compress(image, model=None) -> bytes:
    """RGB image (PIL image, or uint8 array/tensor [H, W, 3]; other PIL modes are converted
    to RGB, alpha dropped) -> .pqm bytes. ``model``: a bundle path (default: see codec.zoo)."""
    from .zoo import get_codec

    return get_codec(model).compress(image)


def decompress(data: bytes, model=None, stages: int | None = None):
    """.pqm bytes -> PIL RGB image. ``stages``: decode only that many stages (progressive)."""
    from PIL import Image

    from .zoo import get_codec

    return Image.fromarray(get_codec(model).decompress(data, stages=stages))


try:
    from .pillow_plugin import register as _register_pillow

    _register_pillow()
except ImportError:  # pragma: no cover - Pillow is a core dependency
    pass
