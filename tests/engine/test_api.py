"""Tests for codec.engine.api (images <-> .pqm bytes) with tiny untrained models."""

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import CodecError
from codec.engine.api import ImageCodec
from codec.entropy.schedule import CodingSchedule, position_order
from codec.models.mim import MaskedEntropyModel, MIMConfig
from codec.models.pqvae import PQVAE, PQVAEConfig


def tiny_codec(seed=0, **kw) -> ImageCodec:
    torch.manual_seed(seed)
    ae = PQVAE(PQVAEConfig(channels=[8, 16], latent_dim=16, M=2, K=16))
    ae.train()
    ae(torch.rand(2, 3, 32, 32))  # initialise the codebooks from data
    em = MaskedEntropyModel(MIMConfig(M=2, K=16, dim=32, depth=2, heads=4))
    return ImageCodec(ae, em, CodingSchedule(4, 2.2, "lds"), model_id=b"tiny", **kw)


@pytest.mark.parametrize("order", ["raster", "permutation", "lds"])
def test_schedule_is_a_partition(order):
    for h, w in [(1, 1), (3, 5), (32, 48), (7, 2)]:
        for S in (1, 2, 4, 8, 12):
            st = CodingSchedule(S, 2.2, order).stages_for(h, w)
            assert len(st) == S
            allp = np.concatenate(st)
            assert sorted(allp.tolist()) == list(range(h * w))
            if h * w >= S:
                assert all(len(p) >= 1 for p in st)
    assert np.array_equal(position_order(9, 11, order), position_order(9, 11, order))


def test_tokens_round_trip_and_estimate():
    c = tiny_codec()
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 16, (2, 6, 9))
    payload, bits = c.tokens.encode_tokens(tokens)
    assert len(payload) <= bits / 8 * 1.01 + 2
    np.testing.assert_array_equal(c.tokens.decode_tokens(payload, tokens.shape), tokens)


def test_image_round_trip_odd_size():
    c = tiny_codec(amp="off")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (21, 35, 3), dtype=np.uint8)
    data = c.compress(img)
    out = c.decompress(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    # decoding reproduces exactly what the autoencoder makes of the tokens
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = (c.autoencoder.decode(c.autoencoder.encode(x), (21, 35))[0].clamp(0, 1) * 255).round().byte()
    np.testing.assert_array_equal(out, ref.permute(1, 2, 0).numpy())


def test_decoding_does_not_depend_on_thread_count():
    c = tiny_codec()
    img = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        d1 = c.compress(img)
        o1 = c.decompress(d1)
        torch.set_num_threads(2)
        d2 = c.compress(img)
        o2 = c.decompress(d1)
    finally:
        torch.set_num_threads(before)
    assert d1 == d2
    np.testing.assert_array_equal(o1, o2)


def test_progressive_prefix_decodes():
    c = tiny_codec()
    img = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = c.compress(img)
    for t in range(0, 5):
        assert c.decompress(data, stages=t).shape == (32, 32, 3)
    np.testing.assert_array_equal(c.decompress(data, stages=4), c.decompress(data))
    for bad in (-1, 5):
        with pytest.raises(CodecError, match="stages"):
            c.decompress(data, stages=bad)


def test_wrong_model_and_corruption_are_refused():
    c = tiny_codec()
    img = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = c.compress(img)
    other = tiny_codec()
    other.model_id = b"othr"
    with pytest.raises(CodecError, match="model"):
        other.decompress(data)
    with pytest.raises(CodecError):
        c.decompress(data[:-1])


def test_input_rules():
    c = tiny_codec()
    with pytest.raises(ValueError):
        c.compress(np.zeros((4, 4), np.uint8))
    from PIL import Image

    rgba = Image.new("RGBA", (9, 7), (10, 20, 30, 40))
    assert c.decompress(c.compress(rgba)).shape == (7, 9, 3)


def test_too_large_images_are_refused_before_work():
    c = tiny_codec()
    with pytest.raises(CodecError, match="exceeds the limit"):
        c.compress(np.zeros((64, 64, 3), np.uint8), max_pixels=64 * 63)


def test_schedule_alpha_is_what_the_header_stores():
    c = tiny_codec()
    c.schedule = CodingSchedule(5, 2.23456, "permutation")
    assert c.schedule.alpha == 2.235
    img = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    c.decompress(c.compress(img))  # the decoder rebuilds the schedule from the header


def test_batch_gives_the_bytes_of_each_image_alone():
    c = tiny_codec()
    rng = np.random.default_rng(6)
    imgs = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(24, 40, 3), (17, 9, 3), (24, 40, 3)]]
    batch = c.compress_batch(imgs)
    assert batch == [c.compress(im) for im in imgs]
    assert batch == c.compress_batch(imgs[::-1])[::-1]  # nor on the order of the calls


def test_images_that_would_not_fit_in_memory_are_refused(monkeypatch):
    import codec.engine.tiling

    c = tiny_codec()
    img = np.zeros((64, 64, 3), np.uint8)
    data = c.compress(img)
    monkeypatch.setattr(codec.engine.tiling, "available_memory", lambda: codec.engine.tiling.BASE_BYTES + 100)
    for call in (lambda: c.compress(img), lambda: c.decompress(data)):
        with pytest.raises(CodecError, match="GiB is available"):
            call()
    monkeypatch.setattr(codec.engine.tiling, "available_memory", lambda: None)  # unknown: no refusal
    assert c.decompress(c.compress(img)).shape == (64, 64, 3)


def test_token_checksum_mismatch_is_refused():
    """A well-formed file whose tokens do not match its checksum (what a decoder that
    computes other logits than the encoder would produce) -> CodecError, not garbage."""
    import dataclasses

    from codec.format import bitstream

    c = tiny_codec()
    data = c.compress(np.random.default_rng(7).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    header, payload = bitstream.unpack(data)
    forged = bitstream.pack(dataclasses.replace(header, token_crc=header.token_crc ^ 1), payload)
    with pytest.raises(CodecError, match="checksum"):
        c.decompress(forged)
    # a payload from another image under this header also decodes to the wrong tokens
    other = c.compress(np.random.default_rng(8).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    with pytest.raises(CodecError, match="checksum"):
        c.decompress(bitstream.pack(header, bitstream.unpack(other)[1]))


def test_a_forged_size_decodes_only_as_a_crop_of_the_same_grid():
    """A header re-checksummed with another image size: a size on another token grid fails
    the token checksum; one on the same grid decodes as that crop (bitstream docstring)."""
    import dataclasses

    from codec.format import bitstream

    c = tiny_codec()
    data = c.compress(np.random.default_rng(7).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    header, payload = bitstream.unpack(data)
    for height, width in [(32, 52), (36, 48), (28, 48), (32, 40)]:  # grid 8x12 -> another
        with pytest.raises(CodecError, match="checksum"):
            c.decompress(bitstream.pack(dataclasses.replace(header, height=height, width=width), payload))
    crop = c.decompress(bitstream.pack(dataclasses.replace(header, width=45), payload))
    np.testing.assert_array_equal(crop, c.decompress(data)[:, :45])


def test_bf16_decoder_changes_pixels_only_slightly():
    img = np.random.default_rng(9).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    exact, fast = tiny_codec(amp="off"), tiny_codec(amp="bf16")
    data = exact.compress(img)
    assert fast.compress(img) == data  # the encoder is float32 either way
    a, b = exact.decompress(data).astype(int), fast.decompress(data).astype(int)
    assert np.abs(a - b).mean() < 2.0


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(max_size=64), stages=st.integers(0, 4))
def test_any_payload_decodes_to_valid_tokens_or_codec_error(payload, stages):
    """Garbage after a valid header: the token decoder neither crashes nor hangs; what it
    returns is in range (the header's token checksum then rejects it)."""
    c = _shared_codec()
    try:
        tok = c.tokens.decode_tokens(payload, (2, 3, 5), stages=stages)
    except CodecError:
        return
    assert tok.shape == (2, 3, 5) and tok.min() >= 0 and tok.max() < 16


@functools.cache
def _shared_codec() -> ImageCodec:
    return tiny_codec()


def test_files_with_a_prefix_of_the_stages():
    """compress(stages=t) writes a real, smaller file; it decodes like decompress(stages=t)
    of the full file, and its checksum covers the coded tokens."""
    from codec.format import bitstream

    c = tiny_codec()
    img = np.random.default_rng(10).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    full = c.compress(img)
    sizes = []
    for t in range(0, 5):
        part = c.compress(img, stages=t)
        assert bitstream.unpack(part)[0].stages_present == t
        np.testing.assert_array_equal(c.decompress(part), c.decompress(full, stages=t))
        sizes.append(len(part))
    assert sizes == sorted(sizes) and sizes[-1] == len(full)
    with pytest.raises(CodecError, match="stages"):
        c.decompress(c.compress(img, stages=2), stages=3)
    with pytest.raises(ValueError):
        c.compress(img, stages=5)


def test_images_are_taken_as_a_viewer_shows_them():
    """EXIF orientation applied, 16-bit and float images scaled to 8 bits, an ICC profile
    converted to sRGB, empty images refused before any work."""
    import io

    from PIL import Image, ImageCms

    from codec.engine.api import checked_images, to_uint8_rgb

    base = np.zeros((16, 32, 3), dtype=np.uint8)
    base[:8, :8] = (255, 0, 0)  # a red block top left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer rotates by 90 degrees clockwise
    buf = io.BytesIO()
    Image.fromarray(base).save(buf, format="JPEG", exif=exif, quality=95)
    shown = to_uint8_rgb(Image.open(buf))
    assert shown.shape == (32, 16, 3)
    assert shown[:8, 8:, 0].mean() > 200 and shown[:8, :8, 0].mean() < 50  # now top right
    # 16-bit grayscale: 65535 is white, 32768 mid-grey (not everything above 255 clipped to white)
    g16 = Image.new("I;16", (3, 1))
    g16.putdata([0, 32768, 65535])
    out = to_uint8_rgb(g16)
    assert out[0, :, 0].tolist() == [0, 128, 255] and out.shape == (1, 3, 3)
    out = to_uint8_rgb(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert out[0, :, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="float image"):
        to_uint8_rgb(Image.fromarray(np.array([[-1.0, 300.0]], dtype=np.float32)))
    # an embedded profile is applied (converted to sRGB): an sRGB one changes (nearly) nothing
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = Image.new("RGB", (2, 2), (10, 200, 30))
    tagged.info["icc_profile"] = srgb  # an sRGB profile: (nearly) unchanged
    assert np.abs(to_uint8_rgb(tagged).astype(int) - [10, 200, 30]).max() <= 2
    for empty in (np.zeros((0, 5, 3), np.uint8), Image.new("RGB", (0, 5))):
        with pytest.raises(CodecError, match="empty"):
            checked_images([empty])


def test_a_forged_huge_header_fails_in_time_proportional_to_the_file(monkeypatch):
    """A few payload bytes under a valid header (CRC included) of a 12000 x 12000 image: the
    range decoder runs past the end of the payload in the first tile and the decode stops
    with CodecError, instead of decoding zeros through every tile for minutes."""
    import time

    from codec.engine import tiling
    from codec.format import bitstream

    monkeypatch.setattr(tiling, "available_memory", lambda: None)  # the decoder is what is tested
    c = _shared_codec()
    for payload in (b"", b"\x5a\x13\x77\x01\x99"):
        data = bitstream.pack(c.header((12000, 12000), token_crc=0), payload)
        assert bitstream.unpack(data)[1] == payload  # a well-formed file
        t = time.perf_counter()
        with pytest.raises(CodecError, match="past the end"):
            c.decompress(data)
        assert time.perf_counter() - t < 5.0


def test_a_single_rate_model_refuses_a_rate_and_takes_an_empty_one():
    from codec.format.checks import Rate

    c = tiny_codec()
    img = np.random.default_rng(4).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert c.compress(img, rate=Rate()) == c.compress(img)
    with pytest.raises(ValueError, match="one rate"):
        c.compress(img, rate=Rate(m=2))
