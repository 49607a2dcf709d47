"""Compares settings of the rate-distortion search of nested models' encoder effort
(``codec.engine.effort.rd_optimize``) on held-out photos: each setting's PSNR BD-rate against
effort 0 over the rate points, with real files decoded by the shipped decoder.

    python bench/effort_search.py [MODEL] --photos ../shared/data/train/bsds500/test --first 0 --count 12 \\
        --search 0,0,0 1,2,3 2,8,5 [--m 2,4,8,24] [--threads 1] [--json out.json]

A setting is ``passes,foresight,measured`` (the keywords of ``rd_optimize``; ``0,0,0`` is the
greedy pass of effort 1). Every setting codes the same grids from the encoder's latent at each
rate point ``m`` (codes per position), as ``codec.compress(..., m=m, effort=E)`` does.
Choose settings on held-out photos, never on Kodak.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from effort import psnr  # bench/effort.py

from codec.bench.bdrate import bd_rate
from codec.engine.effort import rd_optimize
from codec.engine.loading import load_codec
from codec.engine.registry import resolve
from codec.entropy.token_coding import RatePoint
from codec.util.imageio import list_images, load_rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="default")
    ap.add_argument("--photos", default="../shared/data/train/bsds500/test")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--search", nargs="+", default=["0,0,0", "1,2,3"], help="passes,foresight,measured")
    ap.add_argument("--m", default="2,4,8,24")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the curves and BD-rates here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = load_codec(resolve(args.model))
    if not c.layered:
        raise SystemExit("effort_search: the rate-distortion search is for nested (layered) models")
    q = c.autoencoder.quantizer
    points = [int(m) for m in args.m.split(",")]
    settings = {
        s: dict(zip(("passes", "foresight", "measured"), map(int, s.split(",")), strict=True))
        for s in args.search
    }
    files = list_images(args.photos)[args.first : args.first + args.count]
    rows: dict[str, dict[int, list[tuple[float, float]]]] = {
        k: {m: [] for m in points} for k in ["effort 0", *settings]
    }
    seconds = {k: 0.0 for k in settings}
    for f in files:
        img = load_rgb(f).permute(1, 2, 0).numpy()
        hw = img.shape[:2]
        z = c.encoder_latent(img)
        nearest = q.indices(z[None])[0].cpu().numpy()
        costs = c.symbol_costs(nearest)[1]
        for m in points:
            grids = {"effort 0": nearest}
            for name, kw in settings.items():
                t = time.perf_counter()
                grids[name] = rd_optimize(
                    q, c.tokens, z, m, nearest=nearest, costs=costs, weights=c.latent_weights, **kw
                )
                seconds[name] += time.perf_counter() - t
            for name, tokens in grids.items():
                data = c.pack_tokens(tokens, hw, RatePoint(m, 0))
                rows[name][m].append((8 * len(data) / (hw[0] * hw[1]), psnr(c.decompress(data), img)))
    curves = {k: [tuple(np.mean(r[m], axis=0)) for m in points] for k, r in rows.items()}
    result = {}
    print(
        f"{len(files)} photos of {args.photos} from #{args.first}, m = {args.m}, real files, "
        f"{args.threads} thread(s); mean bpp / PSNR per point; search seconds: total rd_optimize "
        "time over the photos and points"
    )
    for name, pts in curves.items():
        bd = 0.0 if name == "effort 0" else bd_rate(curves["effort 0"], pts)
        result[name] = {"curve": pts, "bd_rate": bd, "search_s": seconds.get(name)}
        cells = " ".join(f"{b:.4f}/{p:.2f}" for b, p in pts)
        extra = f"  {seconds[name]:.1f} s" if name in seconds else ""
        print(f"{name:10s} BD-rate {bd:+.2f}%  {cells}{extra}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
