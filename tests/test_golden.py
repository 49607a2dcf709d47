"""Golden files: small .pqm files of every shipped model, committed (tests/golden/). Any change
that stops old files from decoding (format, schedule, entropy model, coder) fails here; the
token checksum in each file proves the tokens are exactly those that were written."""

import re
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


RETIRED = {
    "default-bb27cb9b": "0.1.0",
    "s16-m4-k256-4f1a4bf7": "0.2.0",
}  # golden file -> release shipping its model


@pytest.mark.parametrize("name, release", sorted(RETIRED.items()))
def test_a_file_of_a_retired_model_names_its_model_and_release(name, release):
    """Files of a retired model fail with one line naming its id and the release that ships
    it (the name of each golden file in golden/retired/ ends with the model id)."""
    from codec import CodecError, decompress

    data = (GOLDEN / "retired" / f"{name}.pqm").read_bytes()
    model_id = name.rsplit("-", 1)[1]
    with pytest.raises(CodecError, match=rf"{model_id}.*codec {re.escape(release)}") as e:
        decompress(data)
    assert "\n" not in str(e.value)
    # its own bundle (from the repository's history) still decodes it: the format did not change
    assert bitstream.unpack(data)[0].model_id.hex() == model_id


def test_every_retired_golden_file_is_tested():
    assert {p.stem for p in (GOLDEN / "retired").glob("*.pqm")} == set(RETIRED)
