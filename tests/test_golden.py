"""Golden files: small .pqm files of every shipped model, committed (tests/golden/). Any change
that stops old files from decoding (format, schedule, entropy model, coder) fails here; the
token checksum in each file proves the tokens are exactly those that were written."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.engine.loading import load_codec
from codec.engine.registry import resolve, shipped_models
from codec.format import bitstream

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


def test_a_file_of_the_retired_first_flagship_names_its_model_and_release():
    """The first nested flagship (model id bb27cb9b) was `default` in codec 0.1.0; its files
    fail with one line naming the id and the release that ships it."""
    from codec import CodecError, decompress

    data = (GOLDEN / "retired" / "default-bb27cb9b.pqm").read_bytes()
    with pytest.raises(CodecError, match=r"bb27cb9b.*codec 0\.1\.0") as e:
        decompress(data)
    assert "\n" not in str(e.value)
    # its own bundle (from the repository's history) still decodes it: the format did not change
    assert bitstream.unpack(data)[0].model_id.hex() == "bb27cb9b"
