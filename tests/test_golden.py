"""Golden files: small .pqm files of every shipped model, committed (tests/golden/). Any change
that stops old files from decoding (format, schedule, entropy model, coder) fails here; the
token checksum in each file proves the tokens are exactly those that were written."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec import bitstream
from codec.zoo import load_codec, resolve, shipped_models

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_every_shipped_model_has_a_golden_file():
    assert {p.stem for p in GOLDEN.glob("*.pqm")} >= set(shipped_models())


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.pqm")))
@pytest.mark.parametrize("amp", ["auto", "off"])
def test_golden_file_decodes_to_its_tokens_and_pixels(name, amp):
    data = (GOLDEN / f"{name}.pqm").read_bytes()
    header, _ = bitstream.unpack(data)
    assert header.flags & bitstream.FLAG_PORTABLE
    c = load_codec(resolve(name))
    c.amp = amp  # the autoencoder's precision may change pixels a little, never tokens
    assert header.model_id == c.model_id
    out = c.decompress(data).astype(int)  # CodecError if a token differs (checksums)
    ref = np.asarray(Image.open(GOLDEN / f"{name}.png")).astype(int)
    assert out.shape == ref.shape == (64, 96, 3)
    diff = np.abs(out - ref)
    assert diff.mean() < 0.5 and diff.max() <= 8
