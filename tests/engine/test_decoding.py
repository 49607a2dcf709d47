"""Tests for codec.engine.decoding: one path from bytes to tokens for every decoder, and the decoder
that needs no torch (the portable C++ inference end to end)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec import CodecError
from codec.engine.loading import get_codec, get_decoder
from codec.engine.registry import resolve

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
SAMPLE = ROOT / "codec" / "data" / "sample.png"  # Kodak kodim23, 768 x 512

NO_TORCH = r"""
import io, json, sys
for name in ("torch", "torchvision", "torchmetrics"):
    sys.modules[name] = None  # `import torch` fails, as in an install without the encode extra
import numpy as np
from PIL import Image
import codec
from codec.cli import main

out = {}
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    data = open(src, "rb").read()
    a = np.asarray(codec.decompress(data))
    b = np.asarray(Image.open(src))  # the Pillow plugin
    assert main(["decode", src, "-o", dst]) == 0
    c = np.asarray(Image.open(dst))
    out[src] = bool((a == b).all() and (a == c).all())
out["encode"] = main(["encode", sys.argv[2], "-o", sys.argv[2] + ".pqm"])
out["torch"] = any(m is not None for k, m in sys.modules.items() if k.split(".")[0] == "torch")
print(json.dumps(out))
"""


def test_every_golden_file_decodes_without_torch(tmp_path):
    """With torch impossible to import, codec.decompress, the Pillow plugin and `codec decode`
    decode the golden file of every shipped model (token checksums included) to the same
    pixels, close to those the torch decoder wrote; encoding says in one line what to install."""
    files = sorted(GOLDEN.glob("*.pqm"))
    args = [a for f in files for a in (str(f), str(tmp_path / f"{f.stem}.png"))]
    p = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    assert report["encode"] == 1 and "pip install 'codec[encode]'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1  # that one line, no traceback
    for f in files:
        assert report[str(f)] is True
        out = np.asarray(Image.open(tmp_path / f"{f.stem}.png")).astype(int)
        ref = np.asarray(Image.open(GOLDEN / f"{f.stem}.png")).astype(int)
        diff = np.abs(out - ref)
        assert diff.mean() < 0.5 and diff.max() <= 8, f.stem


@pytest.fixture(scope="module")
def kodim23():
    """The default model's file of Kodak's kodim23 at 8 codes per position."""
    img = np.asarray(Image.open(SAMPLE).convert("RGB"))
    return img, get_codec("default").compress(img, m=8)


def test_portable_and_torch_decoders_agree_within_one_level(kodim23):
    """The default model (product-residual codes, transform skip path) at 768 x 512: the C++
    decoder against torch's float32 decoder, whole, cut to fewer layers and cropped."""
    _, data = kodim23
    torch_codec = get_codec("default")
    torch_codec.amp = "off"
    try:
        portable = get_decoder("default")
        for kwargs in ({}, {"layers": 2}, {"crop": (100, 37, 200, 150)}):
            a = portable.decompress(data, **kwargs).astype(int)
            b = torch_codec.decompress(data, **kwargs).astype(int)
            assert a.shape == b.shape
            diff = np.abs(a - b)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, kwargs
    finally:
        torch_codec.amp = "auto"


def test_crop_and_tiles_give_the_pixels_of_the_whole_decode(kodim23, monkeypatch):
    """The portable decoder shares codec.engine.tiling's render_latent with torch's: a crop is the
    region of the whole decode (within a level), tiles too."""
    import codec.engine.tiling

    _, data = kodim23
    dec = get_decoder("default")
    whole = dec.decompress(data).astype(int)
    crop = dec.decompress(data, crop=(300, 200, 120, 90)).astype(int)
    assert np.abs(crop - whole[200:290, 300:420]).max() <= 1
    monkeypatch.setattr(codec.engine.tiling, "TILE_ABOVE_PIXELS", 1000)
    tiled = dec.decompress(data).astype(int)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).mean() < 0.05


def test_pixels_do_not_depend_on_the_thread_count(kodim23):
    _, data = kodim23
    from codec.engine.decoding import load_portable_decoder
    from codec.engine.registry import resolve

    digests = {
        t: hashlib.sha256(
            load_portable_decoder(resolve("default"), threads=t).decompress(data).tobytes()
        ).hexdigest()
        for t in (1, 2, 3)
    }
    assert len(set(digests.values())) == 1, digests


DECODE_HASH = r"""
import hashlib, sys
from codec.engine.decoding import load_portable_decoder
d = load_portable_decoder(sys.argv[1], threads=int(sys.argv[2]))
print(hashlib.sha256(d.decompress(open(sys.argv[3], "rb").read()).tobytes()).hexdigest())
"""


def test_pixels_are_the_same_in_other_processes(kodim23, tmp_path):
    """Across processes and thread counts (the instruction sets and architectures are the
    C++ self-test's, tests/entropy/test_portable.py): the same pixel hash."""
    _, data = kodim23
    f = tmp_path / "k.pqm"
    f.write_bytes(data)
    here = hashlib.sha256(get_decoder("default").decompress(data).tobytes()).hexdigest()
    for threads in (1, 2):
        p = subprocess.run(
            [sys.executable, "-c", DECODE_HASH, str(resolve("default")), str(threads), str(f)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        )
        assert p.returncode == 0, p.stderr[-2000:]
        assert p.stdout.strip() == here


def test_a_torch_codec_hands_over_its_portable_decoder():
    """ImageCodec.portable_decoder: the same model without torch (same id, same files)."""
    c = get_codec("extreme-s32-m1-k16")
    data = (GOLDEN / "extreme-s32-m1-k16.pqm").read_bytes()
    d = c.portable_decoder()
    assert d.model_id == c.model_id
    assert np.array_equal(d.decompress(data), get_decoder("extreme-s32-m1-k16").decompress(data))


def test_bad_arguments_fail_in_one_line_before_decoding(kodim23):
    _, data = kodim23
    dec = get_decoder("default")
    cases = [
        ({"stages": 2}, "layers, not stages"),
        ({"layers": 0}, "layers must be in"),
        ({"layers": 2.5}, "layers"),
        ({"decoder": "pretty"}, "fidelity or realism"),
        ({"crop": (0, 0, 5)}, "crop"),
        ({"max_pixels": 1000}, "exceeds"),
    ]
    for kwargs, message in cases:
        with pytest.raises(CodecError, match=message) as e:
            dec.decompress(data, **kwargs)
        assert "\n" not in str(e.value)
    other = (GOLDEN / "extreme-s32-m1-k16.pqm").read_bytes()
    with pytest.raises(CodecError, match="file made with model"):
        dec.decompress(other)
    with pytest.raises(CodecError, match="no realism decoder"):  # the extreme model has one decoder
        get_decoder("extreme-s32-m1-k16").decompress(other, decoder="realism")
    forged = bytearray(data)
    forged[-3] ^= 0x55  # a payload byte: the layers' checksums catch it
    with pytest.raises(CodecError):
        dec.decompress(bytes(forged))


def test_the_default_realism_decoder_renders_any_layer_of_a_file(kodim23):
    """`--decoder realism` on a default file, whole and cut to fewer layers: the portable
    decoder within one level of torch's float32 one, and not the fidelity decoder's picture."""
    _, data = kodim23
    torch_codec = get_codec("default")
    torch_codec.amp = "off"
    try:
        portable = get_decoder("default")
        assert portable.decoders == ("fidelity", "realism")
        for kwargs in ({}, {"layers": 2}):
            real = portable.decompress(data, decoder="realism", **kwargs).astype(int)
            assert np.abs(real - torch_codec.decompress(data, decoder="realism", **kwargs)).max() <= 1
            assert np.abs(real - portable.decompress(data, **kwargs)).mean() > 0.5, kwargs
    finally:
        torch_codec.amp = "auto"
