"""Image files in, for the library, the benchmarks and training: which files are images, and
how they are read (uint8 RGB tensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm"}


def list_images(folders: str | list[str]) -> list[Path]:
    """All image files under the given folders (comma-separated string or list), sorted."""
    if isinstance(folders, str):
        folders = [f for f in folders.split(",") if f]
    files: list[Path] = []
    for folder in folders:
        p = Path(folder)
        if not p.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        files += sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS)
    return files


def load_rgb(path: Path) -> torch.Tensor:
    """uint8 [3, H, W] (grayscale and RGBA converted to RGB)."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
