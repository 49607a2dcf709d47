"""Writes the golden files: a 64 x 96 crop of the bundled sample coded by a shipped model
(portable logits), with the pixels it decodes to. By default only models without one get a
file (a newly shipped model); ``--all`` rewrites every file: only on purpose (a format or
model change that is meant to break old files), and say so in the commit.

    python tests/golden/make_golden.py [--all]
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from codec.engine.loading import get_codec
from codec.engine.registry import shipped_models

HERE = Path(__file__).resolve().parent
CROP = (slice(200, 264), slice(300, 396))  # rows, columns of codec/data/sample.png


def crop() -> np.ndarray:
    return np.asarray(Image.open(HERE.parents[1] / "codec" / "data" / "sample.png").convert("RGB"))[CROP]


def main() -> None:
    img = crop()
    for name in shipped_models():
        if (HERE / f"{name}.pqm").exists() and "--all" not in sys.argv[1:]:
            continue
        c = get_codec(name)
        data = c.compress(img)
        (HERE / f"{name}.pqm").write_bytes(data)
        Image.fromarray(c.decompress(data)).save(HERE / f"{name}.png")
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
