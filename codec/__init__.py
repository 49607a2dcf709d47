"""codec: a learned image codec (product-quantized VQ-VAE + masked-image-model entropy model).

Light to import: submodules that need torch or the compiled coder load on first use.
"""

from .errors import CodecError

__version__ = "0.1.0"
__all__ = ["CodecError", "__version__"]
