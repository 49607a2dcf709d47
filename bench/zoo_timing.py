"""Encode and decode time of each shipped model (or the given bundles) on Kodak.

Per model: each image is encoded, then decoded by the torch codec (fidelity decoder; and
realism where the model has one) and by the portable decoder that `codec decode` and
`codec.decompress` use (numpy + C++, no torch), side by side; wall time per call, median and
max over the images, at --threads threads.

    python bench/zoo_timing.py [MODEL ...] [--kodak DIR] [--threads 2] [--images 24] [--m 2,8,24]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from codec.engine.loading import load_codec
from codec.engine.registry import resolve, shipped_models
from codec.util.imageio import list_images, load_rgb


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="shipped names or bundle paths (default: every shipped model)")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--m", default="2,8,24", help="nested models: the rate points (sub-vectors) to time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = [load_rgb(p).permute(1, 2, 0).numpy() for p in list_images(args.kodak)[: args.images]]
    print(f"Kodak {len(images)} images, {args.threads} threads, torch {torch.__version__}; seconds per image")
    print(
        f"{'model':20s} {'encode med':>10s} {'max':>6s} {'torch decode med':>16s} {'max':>6s} "
        f"{'portable med':>12s} {'max':>6s} {'realism med':>11s}"
    )
    for name in args.models or shipped_models():
        codec = load_codec(resolve(name))
        portable = codec.portable_decoder(threads=args.threads)
        warm = codec.compress(images[0][:256, :256])
        codec.decompress(warm), portable.decompress(warm)
        # a nested model: every rate of --m (sub-vectors per position)
        rates = [{"m": int(m)} for m in args.m.split(",")] if codec.layered else [{}]
        for rate in rates:
            enc, dec, port, real = [], [], [], []
            for img in images:
                data, t = timed(codec.compress, img, **rate)
                enc.append(t)
                dec.append(timed(codec.decompress, data)[1])
                port.append(timed(portable.decompress, data)[1])
                if codec.realism_decoder is not None:
                    real.append(timed(codec.decompress, data, decoder="realism")[1])
            r = f"{statistics.median(real):11.3f}" if real else f"{'-':>11s}"
            label = name + (f" m={rate['m']}" if rate else "")
            print(
                f"{label:20s} {statistics.median(enc):10.3f} {max(enc):6.3f} "
                f"{statistics.median(dec):16.3f} {max(dec):6.3f} "
                f"{statistics.median(port):12.3f} {max(port):6.3f} {r}"
            )


if __name__ == "__main__":
    main()
