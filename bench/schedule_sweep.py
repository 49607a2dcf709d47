"""Estimated rate of the masked entropy model for coding schedules (stages S, exponent
alpha, position order) on Kodak tokens: the information content the range coder reaches
within a few bytes, so no files are written.

    python bench/schedule_sweep.py --autoencoder AE --entropy EM [--stages 1,2,4,8,12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from codec.engine.api import ImageCodec
from codec.entropy.schedule import CodingSchedule
from codec.format import schema
from codec.models.io import load_pqvae
from codec.models.mim import MaskedEntropyModel, MIMConfig
from codec.train.checkpoint import load_checkpoint
from codec.train.entropy_stage import tokenize
from codec.util.imageio import list_images, load_rgb


def load_entropy_model(path: str) -> MaskedEntropyModel:
    state = json.loads((Path(path) / "state.json").read_text())
    model = MaskedEntropyModel(MIMConfig(**state[schema.STATE_MIM_CONFIG]))
    load_checkpoint(path, model)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--autoencoder", required=True)
    ap.add_argument("--entropy", required=True, help="entropy-model checkpoint folder")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--stages", default="1,2,4,8,12")
    ap.add_argument("--alphas", default="2.2")
    ap.add_argument("--orders", default="lds")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ae = load_pqvae(args.autoencoder)
    em = load_entropy_model(args.entropy)
    files = list_images(args.kodak)[: args.images]
    grids = [g.long().numpy() for g in tokenize(ae, [load_rgb(f) for f in files], torch.device("cpu"), False)]
    pixels = sum(g.shape[1] * g.shape[2] for g in grids) * ae.stride**2
    print(
        f"Kodak {len(grids)} images; raw bound {ae.cfg.raw_bpp:.5f} bpp; payload only (no header); "
        f"{args.threads} threads"
    )
    print(f"{'S':>3} {'alpha':>6} {'order':12} {'bpp':>9} {'B/image':>9} {'vs raw':>7} {'s/image':>8}")
    for order in args.orders.split(","):
        for alpha in [float(a) for a in args.alphas.split(",")]:
            for S in [int(s) for s in args.stages.split(",")]:
                codec = ImageCodec(ae, em, CodingSchedule(S, alpha, order))
                t0 = time.perf_counter()
                bits = sum(codec.tokens.encode_tokens(g)[1] for g in grids)
                dt = (time.perf_counter() - t0) / len(grids)
                bpp = bits / pixels
                saving = 100 * (bpp / ae.cfg.raw_bpp - 1)
                per_image = bits / 8 / len(grids)
                print(
                    f"{S:3d} {alpha:6.2f} {order:12} {bpp:9.5f} {per_image:9.1f} {saving:6.1f}% {dt:8.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
