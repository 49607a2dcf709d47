"""Portable inference of the autoencoder's decoder: the same pixels on every machine.

The C++ extension (csrc/portable_decoder.h) evaluates codec.models.pqvae.Decoder with float32
arithmetic whose results are fixed by the inputs alone, under the discipline of the portable
entropy models (codec.entropy.portable): every sum in one fixed order, no fused multiply-add,
vector lanes across outputs only, threads across rows only. So every CPU, instruction set,
compiler and thread count renders bit-identical images; torch's kernels do not. Its 3x3
convolutions run in Winograd form F(4x4, 3x3) (part of the definition, the same everywhere),
which makes exact arithmetic faster than torch's float32. The image agrees with the torch
decoder's to float tolerance (about 1e-5 relative at worst; tested), so 8-bit pixels differ
from torch's by at most one level, and rarely (2e-5 of them for Kodak's kodim23). No torch
here: parameters come as numpy arrays named as in the torch state_dict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..entropy import _rangecoder as _rc
from ..entropy.portable import set_parameters
from ..entropy.range_coder import default_threads
from ..format.bundle import widened


class PortableDecoder:
    """codec.models.pqvae.Decoder: ``forward(z)`` (the float image), ``pixels(z, size)`` (8-bit).

    ``config``: the PQVAEConfig fields (a bundle's ``autoencoder_config``): channels, blocks
    (one int or one per stage), latent_dim, transform, extra_decoder_blocks; attention must be
    off (ValueError). ``params``: name -> array (the decoder's state_dict, names after
    ``prefix``, e.g. ``"autoencoder.decoder."`` for a bundle; keys without the prefix are
    skipped), float16 or wider, used as float32, or int8 with its scale as a bundle stores them
    (:func:`codec.format.bundle.widened`). ValueError for a missing, unknown or misshapen
    parameter; CodecError for a malformed int8 one.
    """

    def __init__(
        self, config: Mapping, params: Mapping[str, np.ndarray], prefix: str = "", threads: int | None = None
    ):
        c = config
        if c.get("attention", False):
            raise ValueError("PortableDecoder: a decoder with attention (attention=True) is not supported")
        channels = [int(x) for x in c["channels"]]
        blocks = c.get("blocks", 1)
        blocks = [int(blocks)] * len(channels) if isinstance(blocks, int) else [int(x) for x in blocks]
        if len(blocks) != len(channels):
            raise ValueError(f"blocks {blocks} needs one count per stage of channels {channels}")
        extra = [int(x) for x in c.get("extra_decoder_blocks") or []]
        if extra and len(extra) != len(channels):
            raise ValueError(f"extra_decoder_blocks {extra} needs one count per stage of {channels}")
        self._model = _rc.ImageDecoder(
            int(c["latent_dim"]), channels, blocks, extra, bool(c.get("transform", False))
        )
        set_parameters(
            self._model, widened({k: v for k, v in params.items() if k.startswith(prefix)}), prefix
        )
        self.threads = threads or default_threads()
        self._model.finalize(self.threads)  # ValueError naming any parameter that was not given
        self.latent_dim: int = self._model.latent_dim
        self.stride: int = self._model.stride

    def _latent(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if z.ndim != 3 or z.shape[0] != self.latent_dim or 0 in z.shape:
            raise ValueError(f"the latent must be [{self.latent_dim}, h, w], got {list(z.shape)}")
        return np.ascontiguousarray(z, dtype=np.float32)

    def forward(self, z: np.ndarray) -> np.ndarray:
        """float32 [3, h*s, w*s] (unclamped, ~[0, 1]) from the latent z float [D, h, w]."""
        return self._model.forward(self._latent(z), self.threads)

    def pixels(self, z: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """uint8 [H, W, 3] from the latent z float [D, h, w], cropped to size = (H, W) (at most
        (h*s, w*s)): round(clamp(x, 0, 1) * 255) in float32, ties to even, exactly as torch's
        ``(x.clamp(0, 1) * 255).round()`` on :meth:`forward`'s image (NaN gives 0)."""
        z = self._latent(z)
        H, W = int(size[0]), int(size[1])
        return self._model.pixels(z, H, W, self.threads)
