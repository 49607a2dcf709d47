"""File size and in-process decode time of the default at m codes when its base layer is coded
in S spatial stages (`codec encode --base-stages S`; the file records S, the tokens and the
pixels do not change). Held-out photos (BSDS500 test by default; Kodak never chooses).

    python bench/base_stages.py [--images 24] [--m 2,8,24] [--stages 8,4,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch
from PIL import Image

from codec import decompress
from codec.engine.loading import get_codec
from codec.format.checks import Rate
from codec.train.config import held_out_photos
from codec.train.data import list_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--folder", default=held_out_photos())
    ap.add_argument("--images", type=int, default=24, help="the first N photos of the folder")
    ap.add_argument("--m", default="2,8,24", help="codes per position")
    ap.add_argument("--stages", default="8,4,2", help="base-layer stages S")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = get_codec(args.model)
    own = codec.schedule
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in list_images(args.folder)[: args.images]]
    print(f"{len(photos)} photos of {args.folder}, {args.threads} threads, one decode per file")
    for m in (int(v) for v in args.m.split(",")):
        for s in (int(v) for v in args.stages.split(",")):
            codec.schedule = dataclasses.replace(own, stages=s)
            sizes, seconds = [], []
            for img in photos:
                data = codec.compress(img, rate=Rate(m=m))
                sizes.append(len(data))
                start = time.perf_counter()
                decompress(data)
                seconds.append(time.perf_counter() - start)
            median = statistics.median(seconds)
            print(f"m={m:<3d} S={s:<3d} {sum(sizes):>9,d} bytes in all   decode median {median:.3f} s")
    codec.schedule = own


if __name__ == "__main__":
    main()
