"""Large images in bounded memory and linear time: tiles.

* Entropy coding: a token grid larger than :data:`TILE_TOKENS` (48) on a side is coded as
  independent tiles of at most 48 x 48 positions, in raster order, one after another in the
  same range-coder stream; each tile has its own coding schedule and positions counted from
  its corner (what the entropy model saw in training: crops with position offsets below
  64). The cost of the masked transformer is quadratic in the positions of one tile, so
  linear in the image. Grids of one tile code exactly as before, so files of images up to
  768 x 768 pixels (at stride 16: Kodak's) are unchanged; larger ones carry the header flag
  ``FLAG_TILED``.
* Autoencoder: the encoder and the decoder run on overlapping tiles, each with a margin of
  context that is cropped away (``ENCODE_HALO_TOKENS`` and ``HALO_TOKENS`` latent
  positions), so the memory of their activations is that of one tile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .bitstream import TILE_TOKENS  # positions per side of an entropy-coding tile (a format constant)
from .bitstream import is_tiled as is_tiled  # the format's rule, named here too (tests, benchmarks)
from .models.pqvae import pad_to_multiple

# Tile sizes: the autoencoder's time per pixel grows with its input (cache-bound activations;
# on 2 threads here the decoder costs 0.33 s/MP on a Kodak-sized latent and 0.48 on 72 x 72,
# the encoder 0.37 s/MP on 576 x 576 pixels and 0.50 on 768 x 768 and more), while the
# margins cost (tile + 2 halo)^2 / tile^2: these sizes minimise the product (bench/large_images.py).

RENDER_TILE_TOKENS = 32
"""Latent positions per side of a decoder tile (512 pixels at stride 16), before its margin."""

HALO_TOKENS = 3
"""Latent positions of context on each side of a decoder tile (48 pixels at stride 16). The
flagship decoder sees about 6.7 positions to each side, but almost all of its response lies
within 3: in 16-position tiles (many seams) Kodak decodes 0.0012 dB below the whole-image
decoder on average (2 positions: 0.011 dB, 4: 0.0001 dB); (38/32)^2 = 1.41x the decoder's
work, on inputs small enough to run fastest."""

ENCODE_TILE_TOKENS = 32
"""Latent positions per side of an encoder tile (512 pixels at stride 16), before its margin."""

ENCODE_HALO_TOKENS = 2
"""Latent positions of context on each side of an encoder tile (32 pixels at stride 16): on
Kodak in 16-position tiles, 1.3% of the tokens differ from the whole-image encoder's and the
decoded PSNR does not change (+0.0007 dB; 4 positions: 0.01% differ); (36/32)^2 = 1.27x the
encoder's work."""

TILE_ABOVE_PIXELS = 768 * 768
"""Images above this many pixels run the autoencoder in tiles (smaller ones, Kodak's among
them, run whole: their pixels do not depend on tiling)."""


def token_tiles(h: int, w: int, tile: int = TILE_TOKENS) -> list[tuple[slice, slice]]:
    """The entropy-coding tiles of an ``h x w`` token grid as (rows, columns) slices in raster
    order: one tile (the whole grid) when it fits, else tiles of ``tile`` positions with the
    last row and column of tiles smaller."""
    return [
        (slice(y, min(y + tile, h)), slice(x, min(x + tile, w)))
        for y in range(0, h, tile)
        for x in range(0, w, tile)
    ]


def render_tiled(
    decoder: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    size: tuple[int, int],
    stride: int,
    tile: int = RENDER_TILE_TOKENS,
    halo: int = HALO_TOKENS,
) -> np.ndarray:
    """uint8 ``[H, W, 3]`` of ``decoder`` (latent ``[1, D, h', w']`` -> image ``[1, 3, s h', s w']``
    in [0, 1]) applied to the latent ``z`` ``[1, D, h, w]`` tile by tile: each tile with
    ``halo`` positions of context on every side (fewer at the image's edges), its centre
    written into the output as it finishes. ``size`` = (H, W) pixels."""
    H, W = size
    _, _, h, w = z.shape
    out = np.empty((H, W, 3), dtype=np.uint8)
    for rows, cols in token_tiles(h, w, tile):
        y0, y1 = max(rows.start - halo, 0), min(rows.stop + halo, h)
        x0, x1 = max(cols.start - halo, 0), min(cols.stop + halo, w)
        y = decoder(z[:, :, y0:y1, x0:x1])[0].float()
        top, left = (rows.start - y0) * stride, (cols.start - x0) * stride
        py, px = (
            min(rows.stop * stride, H) - rows.start * stride,
            min(cols.stop * stride, W) - cols.start * stride,
        )
        if py <= 0 or px <= 0:
            continue
        block = y[:, top : top + py, left : left + px]
        out[
            rows.start * stride : rows.start * stride + py, cols.start * stride : cols.start * stride + px
        ] = (block.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return out


def encode_tiled(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    stride: int,
    device: torch.device | str = "cpu",
    tile: int = ENCODE_TILE_TOKENS,
    halo: int = ENCODE_HALO_TOKENS,
) -> torch.Tensor:
    """The latent ``[1, D, h, w]`` (h = ceil(H / stride), ...) of a uint8 image ``[H, W, 3]``,
    computed by ``encoder`` on overlapping tiles (``halo`` latent positions of context on
    every side, cropped away), each converted to float and padded at the image's bottom and
    right edges (replicate, as the whole-image encoder pads) only when it is encoded: the
    memory of one tile."""
    H, W = image.shape[:2]
    h, w = -(-H // stride), -(-W // stride)
    z = None
    for rows, cols in token_tiles(h, w, tile):
        y0, y1 = max(rows.start - halo, 0), min(rows.stop + halo, h)
        x0, x1 = max(cols.start - halo, 0), min(cols.stop + halo, w)
        block = image[y0 * stride : y1 * stride, x0 * stride : x1 * stride]
        x = torch.from_numpy(np.array(block)).permute(2, 0, 1)[None].float().div(255)  # a writable copy
        x = pad_to_multiple(x.to(device), stride)
        part = encoder(x)
        if z is None:
            z = part.new_empty(1, part.shape[1], h, w)
        z[:, :, rows, cols] = part[:, :, rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0]
    return z
