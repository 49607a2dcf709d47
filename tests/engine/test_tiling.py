"""Tests for codec.engine.tiling: tiled entropy coding (large grids), tiled encoder and decoder."""

import dataclasses

import numpy as np
import pytest
import torch
from test_api import tiny_codec
from test_layered_codec import tiny_layered

from codec import CodecError
from codec.engine.tiling import encode_tiled, render_tiled
from codec.format import bitstream
from codec.format.bitstream import TILE_TOKENS, is_tiled, token_tiles
from codec.models.pqvae import pad_to_multiple


@pytest.mark.parametrize("h, w", [(1, 1), (64, 64), (65, 3), (130, 200), (64, 129)])
def test_tiles_cover_the_grid_once_in_raster_order(h, w):
    seen = np.zeros((h, w), dtype=int)
    tiles = token_tiles(h, w)
    for rows, cols in tiles:
        assert rows.stop - rows.start <= TILE_TOKENS and cols.stop - cols.start <= TILE_TOKENS
        seen[rows, cols] += 1
    assert (seen == 1).all()
    assert (len(tiles) == 1) == (not is_tiled(h, w))
    assert tiles == sorted(tiles, key=lambda t: (t[0].start, t[1].start))


def wide_image(seed=0, h=24, w=4 * (TILE_TOKENS + 6) - 3):
    """A grid of 6 x (TILE_TOKENS + 6) tokens for the tiny stride-4 models: two tiles."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_grid_of_two_tiles_round_trips_and_says_so():
    c = tiny_codec(amp="off")
    img = wide_image()
    data = c.compress(img)
    header, payload = bitstream.unpack(data)
    assert header.flags & bitstream.FLAG_TILED and header.token_shape[2] > TILE_TOKENS
    assert c.decompress(data).shape == img.shape  # the token checksum holds
    small = bitstream.unpack(c.compress(img[:, : 4 * TILE_TOKENS]))[0]
    assert not small.flags & bitstream.FLAG_TILED
    for flags in (header.flags & ~bitstream.FLAG_TILED, small.flags | bitstream.FLAG_TILED):
        base = header if flags == header.flags & ~bitstream.FLAG_TILED else small
        with pytest.raises(CodecError, match="tiled flag"):
            bitstream.pack(dataclasses.replace(base, flags=flags), payload)
    # each tile is coded on its own: the first tile's tokens code as a file of that tile alone
    t = c.tokenize([img])[0]
    first, _ = c.tokens.encode_tokens(t[:, :, :TILE_TOKENS], estimate=False)
    whole, _ = c.tokens.encode_tokens(t, estimate=False)
    assert len(whole) > len(first)


def test_progressive_stages_of_a_tiled_file():
    c = tiny_codec(amp="off")
    img = wide_image(1)
    data = c.compress(img, stages=2)
    assert c.decompress(data).shape == img.shape  # checksum over the coded positions of each tile
    with pytest.raises(CodecError):
        c.decompress(bitstream.pack(bitstream.unpack(data)[0], bitstream.unpack(c.compress(img))[1]))


def test_a_layered_file_of_two_tiles_round_trips():
    c = tiny_layered()
    img = wide_image(2)
    for m in (1, 4):
        data = c.compress(img, m=m)
        assert bitstream.unpack(data)[0].flags & bitstream.FLAG_TILED
        assert c.decompress(data).shape == img.shape


def test_tiled_decoder_and_encoder_match_the_whole_image():
    c = tiny_codec(amp="off")
    ae = c.autoencoder
    img = wide_image(3, h=60, w=150)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    z = ae.quantizer.codes_from_indices(ae.encode(x))
    whole = c.render(z, img.shape[:2])

    @torch.no_grad()
    def pixels(part: torch.Tensor) -> np.ndarray:
        return (ae.decoder(part)[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    tiled = render_tiled(pixels, z, img.shape[:2], ae.stride, tile=5, halo=6)  # its field: 5.75
    assert np.abs(whole.astype(int) - tiled).max() <= 1
    with torch.no_grad():
        tiled_z = encode_tiled(ae.encoder, img, ae.stride, tile=5, halo=6)
        assert torch.allclose(tiled_z, ae.encoder(pad_to_multiple(x, ae.stride)), atol=1e-5)
        no_halo = render_tiled(pixels, z, img.shape[:2], ae.stride, tile=5, halo=0)
    assert np.abs(whole.astype(int) - no_halo).max() > 1  # the halo is what makes tiles agree


def test_codecs_switch_to_the_tiled_autoencoder_above_the_threshold(monkeypatch):
    """Images over TILE_ABOVE_PIXELS are encoded and decoded in tiles: the same file format,
    pictures close to the whole-image path; effort > 0 is refused above EFFORT_MAX_PIXELS."""
    import codec.engine.api
    import codec.engine.tiling

    c = tiny_codec(amp="off")
    img = wide_image(4, h=120, w=150)
    whole = c.decompress(c.compress(img))
    monkeypatch.setattr(codec.engine.api, "TILE_ABOVE_PIXELS", 1000)  # the encoder's switch
    monkeypatch.setattr(codec.engine.tiling, "TILE_ABOVE_PIXELS", 1000)  # the decoder's
    data = c.compress(img)
    tiled = c.decompress(data)
    assert tiled.shape == img.shape
    assert np.mean(np.abs(tiled.astype(int) - whole)) < 2.0
    assert c.compress(img, effort=1)[:3] == b"PQM"  # effort refines the whole image, up to a limit
    monkeypatch.setattr(codec.engine.api, "EFFORT_MAX_PIXELS", 1000)
    with pytest.raises(CodecError, match="effort"):
        c.compress(img, effort=1)


def test_a_crop_decodes_like_the_same_region_of_the_whole_image(tmp_path):
    c = tiny_layered()
    img = wide_image(5, h=64, w=96)
    data = c.compress(img, m=4)
    whole = c.decompress(data)
    part = c.decompress(data, crop=(37, 10, 30, 41))
    assert part.shape == (41, 30, 3)
    diff = np.abs(part.astype(int) - whole[10:51, 37:67])  # the tiny decoder sees 5.75 positions, the
    assert diff.mean() < 0.3 and diff.max() <= 6  # margin is 3: a few levels at some pixels
    for bad in ((90, 0, 10, 10), (0, 0, 0, 5), (-1, 0, 5, 5)):
        with pytest.raises(CodecError, match="crop"):
            c.decompress(data, crop=bad)
    from codec.cli import main

    (tmp_path / "a.pqm").write_bytes(codec_file := tiny_codec(amp="off").compress(img))
    assert codec_file[:3] == b"PQM"
    assert main(["decode", str(tmp_path / "a.pqm"), "-o", str(tmp_path / "a.png"), "--crop", "1,2,3"]) == 1
