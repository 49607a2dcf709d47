"""Writes the golden files: a 64 x 96 crop of the bundled sample coded by every shipped model
(portable logits), with the pixels each decodes to. Rerun only on purpose (a format or model
change that is meant to break old files), and say so in the commit.

    python tests/golden/make_golden.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from codec.zoo import get_codec, shipped_models

HERE = Path(__file__).resolve().parent
CROP = (slice(200, 264), slice(300, 396))  # rows, columns of codec/data/sample.png


def crop() -> np.ndarray:
    return np.asarray(Image.open(HERE.parents[1] / "codec" / "data" / "sample.png").convert("RGB"))[CROP]


def main() -> None:
    img = crop()
    for name in shipped_models():
        c = get_codec(name)
        data = c.compress(img)
        (HERE / f"{name}.pqm").write_bytes(data)
        Image.fromarray(c.decompress(data)).save(HERE / f"{name}.png")
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
