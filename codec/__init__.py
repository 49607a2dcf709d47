"""codec: a learned image codec (product-quantized VQ-VAE + masked-image-model entropy model).

Light to import: submodules that need torch or the compiled coder load on first use.
``import codec`` registers the ``.pqm`` format with Pillow.
"""

from .errors import CodecError
from .simple import compress, decompress

__version__ = "0.7.0"  # the one place; pyproject reads it
__all__ = ["CodecError", "__version__", "compress", "decompress"]


try:
    from .pillow_plugin import register as _register_pillow

    _register_pillow()
except ImportError:  # pragma: no cover - Pillow is a core dependency
    pass
