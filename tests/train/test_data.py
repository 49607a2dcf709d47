"""Tests for codec.train.data: batches as a pure function of (seed, step, rank)."""

import torch

from codec.train.data import random_crops


def test_downscaled_crops_are_reproducible_and_smoother():
    torch.manual_seed(0)
    noisy = [torch.randint(0, 256, (3, 200, 150), dtype=torch.uint8) for _ in range(3)]
    a = random_crops(noisy, 6, 32, seed=1, step=5, max_downscale=3.0)
    b = random_crops(noisy, 6, 32, seed=1, step=5, max_downscale=3.0)
    plain = random_crops(noisy, 6, 32, seed=1, step=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == (3, 32, 32) and x.dtype == torch.uint8 for x in a)
    # shrinking averages noise away: the crops' spread falls below that of plain crops
    spread = lambda crops: torch.stack(crops).float().std()  # noqa: E731
    assert spread(a) < 0.8 * spread(plain)
    # a window never exceeds the image: a photo of exactly the crop size still works
    small = [torch.zeros(3, 32, 32, dtype=torch.uint8)]
    assert random_crops(small, 2, 32, seed=0, step=0, max_downscale=2.0)[0].shape == (3, 32, 32)
