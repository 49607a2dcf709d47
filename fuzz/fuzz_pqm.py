"""atheris fuzz target: the .pqm parser and the Python decoder API on arbitrary bytes.

Anything but CodecError escaping is a bug. Short run (CI, via tests/test_fuzz.py):
    python fuzz/fuzz_pqm.py -runs=3000
Long run by hand:
    python fuzz/fuzz_pqm.py -max_total_time=3600 fuzz/corpus
"""

import sys

import atheris
import numpy as np

from codec.entropy import RangeDecoder, cdf_from_counts
from codec.errors import CodecError
from codec.format import bitstream


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # the container parser
        try:
            header, payload = bitstream.unpack(fdp.ConsumeBytes(fdp.remaining_bytes()), max_pixels=10**6)
        except CodecError:
            return
        assert header.height * header.width <= 10**6
        assert len(payload) <= bitstream.max_payload_bytes(header)
        return
    k = fdp.ConsumeIntInRange(1, 64)
    n = fdp.ConsumeIntInRange(0, 200)
    seed = fdp.ConsumeUInt(4)
    rng = np.random.default_rng(seed)
    dec = RangeDecoder(fdp.ConsumeBytes(fdp.remaining_bytes()))
    try:
        if mode == 1:
            out = dec.decode_logits(rng.standard_normal((n, k)).astype(np.float32) * 5)
        else:
            out = dec.decode_cdf(cdf_from_counts(rng.integers(0, 50, (n, k)), 12), 12)
    except CodecError:
        return
    assert out.shape == (n,) and ((out >= 0) & (out < k)).all()


def main() -> None:
    atheris.instrument_all()  # (instrument_imports gave no coverage of our modules here)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
