"""Fills gpu_data/ with the training photos for a lent GPU machine, where only the checkout
travels (64 MiB at most): BSDS500 train+val, Sun-Hays80 and Urban100 for training (photos
larger than --max-side shrunk to it, JPEG quality 92, so the set fits), and the first 24
BSDS500 test photos for the evaluations during training (Kodak never chooses checkpoints);
with --init, a copy of the bundle to continue (gpu_data/init.safetensors: the GPU recipe's
starting point, so that codec/weights need not travel).

    python bench/gpu_data.py [--data ../shared/data] [--out gpu_data] [--max-side 512] [--init BUNDLE]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("gpu_data"))
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--held-out", type=int, default=24)
    ap.add_argument("--init", type=Path, help="a bundle to copy to OUT/init.safetensors")
    a = ap.parse_args()
    sources = {
        "train/bsds500_train": a.data / "train/bsds500/train",
        "train/bsds500_val": a.data / "train/bsds500/val",
        "train/sun_hays80": a.data / "train/sun_hays80",
        "train/urban100": a.data / "train/urban100",
    }
    for name, src in sources.items():
        dst = a.out / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
            with Image.open(f) as im:
                if max(im.size) <= a.max_side:
                    shutil.copyfile(f, dst / f.name)
                    continue
                s = a.max_side / max(im.size)
                im.convert("RGB").resize((round(im.width * s), round(im.height * s)), Image.LANCZOS).save(
                    dst / (f.stem + ".jpg"), quality=92, subsampling=0
                )
    held = a.out / "held_out"
    held.mkdir(parents=True, exist_ok=True)
    for f in sorted((a.data / "train/bsds500/test").iterdir())[: a.held_out]:
        shutil.copyfile(f, held / f.name)
    if a.init:
        shutil.copyfile(a.init, a.out / "init.safetensors")
    size = sum(p.stat().st_size for p in a.out.rglob("*") if p.is_file())
    print(f"{a.out}: {sum(1 for p in a.out.rglob('*') if p.is_file())} files, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
