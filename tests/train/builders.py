"""Builders the training tests share: tiny images, tiny configs of each stage (also served
as fixtures by conftest.py)."""

import numpy as np
from PIL import Image

from codec.train import TrainConfig
from codec.train.config import load_recipe


def write_images(folder, n=2, size=(40, 48), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        yy, xx = np.mgrid[: size[0], : size[1]]
        img = np.stack([(xx * (3 + i)) % 256, (yy * 5) % 256, ((xx + yy) * (2 + i)) % 256], -1)
        img = (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
    return folder


def tiny_config(tmp_path, stage="autoencoder", **kw):
    """The ``tiny`` recipe's config of ``stage`` on two synthetic images, float32, one thread."""
    data = write_images(tmp_path / "data")
    base = dict(
        load_recipe("tiny", stage),
        out=str(tmp_path / "run"),
        data=str(data),
        eval_data=str(data),
        amp="off",
        threads=1,
        ckpt_every_minutes=1e9,
    )
    base.update(kw)
    return TrainConfig(stage, **base)
