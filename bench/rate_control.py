"""Rate control of a nested model on Kodak: how close ``--bpp`` lands to its target and
whether ``--size`` ever exceeds its budget (real files, header included).

    python bench/rate_control.py MODEL [--targets 0.05,0.1,0.2,0.3,0.4,0.6] [--images 24]

Per target: the mean and the largest relative error |bpp - target| / target over the
images; per size budget (each image's file at the target bpp, budget = target bpp in
bytes): how many files exceed it (must be 0) and how much of the budget they use.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from codec.engine.loading import load_codec
from codec.engine.registry import resolve
from codec.util.imageio import list_images, load_rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--targets", default="0.05,0.1,0.2,0.3,0.4,0.6")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = load_codec(resolve(args.model))
    images = [load_rgb(p).permute(1, 2, 0).numpy() for p in list_images(args.kodak)[: args.images]]
    targets = [float(t) for t in args.targets.split(",")]
    print(f"{args.model}: {len(images)} Kodak images, real .pqm files (header included)")
    head = ["target bpp", "mean bpp", "mean |err|", "max |err|", "size: over", "used"]
    print(" ".join(f"{h:>10s}" for h in head))
    for t in targets:
        errs, got, over, used = [], [], 0, []
        for img in images:
            pixels = img.shape[0] * img.shape[1]
            bpp = 8 * len(c.compress(img, bpp=t)) / pixels
            got.append(bpp)
            errs.append(abs(bpp - t) / t)
            budget = int(t * pixels / 8)
            try:
                n = len(c.compress(img, size=budget))
            except Exception:  # no file fits (below the base layer): counted, not over
                n = 0
            over += n > budget
            used.append(n / budget)
        print(
            f"{t:10.3f} {statistics.mean(got):10.4f} {100 * statistics.mean(errs):9.1f}% "
            f"{100 * max(errs):9.1f}% {over:10d} {100 * statistics.mean(used):9.1f}%"
        )


if __name__ == "__main__":
    main()
