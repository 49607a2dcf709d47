"""Entropy coding: the C++ range coder wrapped for numpy (no torch here)."""

from .range_coder import (
    LOGIT_PRECISION,
    RangeDecoder,
    RangeEncoder,
    cdf_from_counts,
    information_content,
    quantize_logits,
    symbol_bits,
)

__all__ = [
    "LOGIT_PRECISION",
    "RangeDecoder",
    "RangeEncoder",
    "cdf_from_counts",
    "information_content",
    "quantize_logits",
    "symbol_bits",
]
