"""Training images held in memory as uint8 tensors; batches are a pure function of
(seed, step, rank), so a resumed run sees exactly the batches it would have seen."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from ..util.imageio import EXTENSIONS, list_images, load_rgb  # noqa: F401 (the training stages' image I/O)


class InMemoryImages:
    """Images of at least ``min_size`` pixels on each side, decoded once with ``workers`` threads."""

    def __init__(
        self, folders: str | list[str], min_size: int, max_images: int = 0, workers: int = 4
    ) -> None:
        files = list_images(folders)
        if max_images:
            files = files[:max_images]
        with ThreadPoolExecutor(workers) as pool:
            images = list(pool.map(load_rgb, files))
        self.images = [im for im in images if min(im.shape[1:]) >= min_size]
        if not self.images:
            raise ValueError(f"no training images of at least {min_size}x{min_size} in {folders}")
        self._fitting: dict[int, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> InMemoryImages:
        self.images = [im.to(device) for im in self.images]
        self._fitting = {}
        return self

    def fitting(self, crop: int) -> list[torch.Tensor]:
        """The images of at least crop x crop pixels (larger crops late in training draw from these)."""
        if crop not in self._fitting:
            self._fitting[crop] = [im for im in self.images if min(im.shape[1:]) >= crop]
            if not self._fitting[crop]:
                raise ValueError(f"no training image of at least {crop}x{crop}")
        return self._fitting[crop]

    def batch(
        self, size: int, crop: int, seed: int, step: int, rank: int = 0, max_downscale: float = 1.0
    ) -> torch.Tensor:
        """Random crops with random horizontal flips: float [size, 3, crop, crop] in [0, 1];
        ``max_downscale`` > 1: each from the photo shrunk by a random factor in [1, this]."""
        items = self.fitting(crop)
        crops = random_crops(items, size, crop, seed, step, rank, flip=True, max_downscale=max_downscale)
        return torch.stack(crops).float() / 255


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """The random generator of one training step: a pure function of its arguments."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1009 + rank) * 7 + stream)


def random_crops(
    items: list[torch.Tensor],
    size: int,
    crop: int,
    seed: int,
    step: int,
    rank: int = 0,
    flip: bool = False,
    max_downscale: float = 1.0,
) -> list[torch.Tensor]:
    """``size`` random crop x crop windows of random tensors [C, H, W] of ``items`` (and random
    horizontal flips), a pure function of (seed, step, rank): resumed runs see the same batches.
    ``max_downscale`` > 1: a window of up to that factor times the crop (as the image allows)
    is shrunk to the crop (antialiased; uint8 in, uint8 out): downscaling averages away noise
    and compression artefacts that a codec should not learn to reproduce."""
    g = step_generator(seed, step, rank)
    out = []
    for i in torch.randint(0, len(items), (size,), generator=g).tolist():
        t = items[i]
        win = crop
        if max_downscale > 1:
            f = 1 + float(torch.rand((), generator=g)) * (max_downscale - 1)
            win = max(crop, min(round(crop * f), t.shape[1], t.shape[2]))
        y = int(torch.randint(0, t.shape[1] - win + 1, (1,), generator=g))
        x = int(torch.randint(0, t.shape[2] - win + 1, (1,), generator=g))
        c = t[:, y : y + win, x : x + win]
        if win != crop:
            c = F.interpolate(c[None].float(), size=(crop, crop), mode="bilinear", antialias=True)
            c = c[0].round().clamp(0, 255).to(t.dtype)
        if flip and bool(torch.rand((), generator=g) < 0.5):
            c = c.flip(-1)
        out.append(c)
    return out
