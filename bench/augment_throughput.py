"""Throughput of the compressed-training augmentations on 224-px images (images/s).

RandomCompression per codec, one process of one thread (what one DataLoader worker does):
bpp-search mode (target log-uniform in --bpp, 5-7 encodes per image) and quality mode (one
encode); ``ours`` codes real .pqm files. NeuralCompression (batched autoencoder round trip,
with and without the entropy model's bpp estimate) at --batch, at 1 and 2 threads.
Median over --runs runs of --images Imagenette val images.

    python bench/augment_throughput.py [--images 64] [--runs 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.transforms import NeuralCompression, RandomCompression


def images(root: Path, n: int) -> list[Image.Image]:
    files = sorted(root.glob("val/*/*"))
    files = files[:: max(1, len(files) // n)][:n]
    return [Image.open(f).convert("RGB").resize((224, 224)) for f in files]


def rate(fn, n: int, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/imagenette")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bpp", default="0.1,1.0")
    ap.add_argument("--codecs", default="jpeg,webp,avif,ours")
    args = ap.parse_args()
    imgs = images(Path(args.data), args.images)
    bpp = tuple(map(float, args.bpp.split(",")))
    print(
        f"{len(imgs)} Imagenette val images at 224x224; median of {args.runs} runs; torch {torch.__version__}"
    )
    torch.set_num_threads(1)
    for codec in args.codecs.split(","):
        modes = (
            [("own rate", {})]
            if codec == "ours"
            else [("bpp search", {"bpp": bpp}), ("quality 10-90", {"quality": (10, 90)})]
        )
        for mode, kw in modes:
            t = RandomCompression(codec, seed=0, **kw)
            t(imgs[0])  # warm up (model load for ours)
            r = rate(lambda t=t: [t(im) for im in imgs], len(imgs), args.runs)
            print(f"RandomCompression {codec:5s} {mode:14s} 1 thread : {r:8.1f} images/s")
    x = torch.from_numpy(np.stack([np.asarray(im) for im in imgs])).permute(0, 3, 1, 2).float() / 255
    for estimate in (False, True):
        n = NeuralCompression(estimate=estimate)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            n(x[: args.batch])
            r = rate(lambda n=n: [n(b) for b in x.split(args.batch)], len(x), args.runs)
            what = "with bpp estimate" if estimate else "no estimate"
            print(f"NeuralCompression batch {args.batch} {what:17s} {threads} thread(s): {r:8.1f} images/s")


if __name__ == "__main__":
    main()
