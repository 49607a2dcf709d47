"""Large images in bounded memory and linear time: tiles.

* Entropy coding: a token grid larger than :data:`codec.format.bitstream.TILE_TOKENS` (48)
  on a side is coded as independent tiles of at most 48 x 48 positions, in raster order, one
  after another in the same range-coder stream; each tile has its own coding schedule and
  positions counted from its corner (what the entropy model saw in training: crops with
  position offsets below 64). The cost of the masked transformer is quadratic in the
  positions of one tile, so linear in the image. Grids of one tile code exactly as before,
  so files of images up to 768 x 768 pixels (at stride 16: Kodak's) are unchanged; larger
  ones carry the header flag ``FLAG_TILED``.
* Autoencoder: the encoder and the decoder run on overlapping tiles, each with a margin of
  context that is cropped away (``ENCODE_HALO_TOKENS`` and ``HALO_TOKENS`` latent
  positions), so the memory of their activations is that of one tile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CodecError
from ..format.bitstream import token_tiles  # the entropy-coding tiles: a format rule
from ..format.checks import checked_crop

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


def render_tiled(
    render: Callable[[Any], np.ndarray],
    z: Any,
    size: tuple[int, int],
    stride: int,
    tile: int = RENDER_TILE_TOKENS,
    halo: int = HALO_TOKENS,
) -> np.ndarray:
    """uint8 ``[H, W, 3]`` of ``render`` (a latent ``[..., h', w']`` -> uint8 ``[s h', s w', 3]``)
    applied to the latent ``z`` ``[..., h, w]`` (a torch tensor or a numpy array) tile by
    tile: each tile with ``halo`` positions of context on every side (fewer at the image's
    edges), its centre written into the output as it finishes. ``size`` = (H, W) pixels."""
    H, W = size
    h, w = z.shape[-2:]
    out = np.empty((H, W, 3), dtype=np.uint8)
    for rows, cols in token_tiles(h, w, tile):
        y0, y1 = max(rows.start - halo, 0), min(rows.stop + halo, h)
        x0, x1 = max(cols.start - halo, 0), min(cols.stop + halo, w)
        top, left = (rows.start - y0) * stride, (cols.start - x0) * stride
        py, px = (
            min(rows.stop * stride, H) - rows.start * stride,
            min(cols.stop * stride, W) - cols.start * stride,
        )
        if py <= 0 or px <= 0:
            continue
        block = render(z[..., y0:y1, x0:x1])
        y, x = rows.start * stride, cols.start * stride
        out[y : y + py, x : x + px] = block[top : top + py, left : left + px]
    return out


def render_latent(
    render: Callable[[Any], np.ndarray],
    z: Any,
    size: tuple[int, int],
    stride: int,
    crop: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """uint8 [H, W, 3] of the latent ``z`` ``[..., h, w]`` (``size`` = (H, W)) through
    ``render`` (see :func:`render_tiled`); images over :data:`TILE_ABOVE_PIXELS` are rendered in
    tiles. ``crop`` = (x, y, width, height): only that region, from the latent positions that
    cover it and a margin of ``HALO_TOKENS`` (the pixels of the whole decode, within a few
    levels where the decoder sees further than the margin). Every decoder renders through
    this one function, with torch or without."""
    s = stride
    if crop is not None:
        x, y, w, h = checked_crop(crop, size)
        r0, c0 = max(y // s - HALO_TOKENS, 0), max(x // s - HALO_TOKENS, 0)
        r1 = min(-(-(y + h) // s) + HALO_TOKENS, z.shape[-2])
        c1 = min(-(-(x + w) // s) + HALO_TOKENS, z.shape[-1])
        part = render_latent(render, z[..., r0:r1, c0:c1], ((r1 - r0) * s, (c1 - c0) * s), s)
        return part[y - r0 * s : y - r0 * s + h, x - c0 * s : x - c0 * s + w]
    if size[0] * size[1] > TILE_ABOVE_PIXELS:
        return render_tiled(render, z, size, s)
    return np.ascontiguousarray(render(z)[: size[0], : size[1]])


def encode_tiled(
    encoder: Callable[[Any], Any],
    image: np.ndarray,
    stride: int,
    device: Any = "cpu",
    tile: int = ENCODE_TILE_TOKENS,
    halo: int = ENCODE_HALO_TOKENS,
) -> Any:
    """The latent (torch) ``[1, D, h, w]`` (h = ceil(H / stride), ...) of a uint8 image ``[H, W, 3]``,
    computed by ``encoder`` on overlapping tiles (``halo`` latent positions of context on
    every side, cropped away), each converted to float and padded at the image's bottom and
    right edges (replicate, as the whole-image encoder pads) only when it is encoded: the
    memory of one tile."""
    import torch

    H, W = image.shape[:2]
    h, w = -(-H // stride), -(-W // stride)
    z = None
    for rows, cols in token_tiles(h, w, tile):
        y0, y1 = max(rows.start - halo, 0), min(rows.stop + halo, h)
        x0, x1 = max(cols.start - halo, 0), min(cols.stop + halo, w)
        block = image[y0 * stride : y1 * stride, x0 * stride : x1 * stride]
        ph, pw = (-block.shape[0]) % stride, (-block.shape[1]) % stride  # as pad_to_multiple: replicate
        block = np.pad(block, ((0, ph), (0, pw), (0, 0)), mode="edge")  # a writable copy
        x = torch.from_numpy(block).permute(2, 0, 1)[None].float().div(255).to(device)
        part = encoder(x)
        if z is None:
            z = part.new_empty(1, part.shape[1], h, w)
        z[:, :, rows, cols] = part[:, :, rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0]
    return z


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
    or of one tile for images over TILE_ABOVE_PIXELS, plus what grows with the pixels in
    tiled mode (the image, the output, the channel model's logits)."""
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
