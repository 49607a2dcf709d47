"""What a VQ-conditioned discriminator has learned, on held-out photos: its cross-entropy on
the originals' labels (class label + 1) against the entropy of those labels' frequencies
(what a discriminator that ignores the image would reach), its top-1 label accuracy, and the
probability it gives "fake" (class 0) to originals, to the fidelity decoder's and to the
realism decoder's reconstructions, at a low and at the full rate.

    python bench/vq_discriminator_probe.py RUN/checkpoint [--images DIR] [--max-images 24] [--m 2]

RUN: a ``codec train realism --discriminator vq`` run (its state names the autoencoder and
the label model). Centre crops of ``--crop`` pixels, one thread, float32.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from codec.models.discriminator import ConditionalUNetDiscriminator, LabelModel
from codec.models.io import load_pqvae
from codec.train.checkpoint import load_checkpoint
from codec.train.realism_stage import RealismModel
from codec.util.imageio import list_images, load_rgb


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="the realism run's checkpoint folder")
    ap.add_argument("--images", default="../shared/data/train/bsds500/test")
    ap.add_argument("--max-images", type=int, default=24)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--m", type=int, default=2, help="the low rate: codes per position")
    args = ap.parse_args()
    torch.set_num_threads(1)
    state = json.loads((Path(args.run) / "state.json").read_text())
    if state.get("discriminator") != "vq":
        raise SystemExit(f"{args.run}: not a VQ-discriminator realism run")
    cfg = state["config"] if isinstance(state["config"], dict) else json.loads(state["config"])
    ae = load_pqvae(state["autoencoder"])
    labeler = LabelModel(load_pqvae(state["label_model"]))
    disc = ConditionalUNetDiscriminator(
        ae.cfg.latent_dim, state["classes"], tuple(int(c) for c in cfg["disc_channels"].split(","))
    )
    model = RealismModel(copy.deepcopy(ae.decoder), disc)
    load_checkpoint(args.run, model)
    model.eval()
    rates = {f"m={args.m}": args.m, f"m={ae.cfg.M} (full)": ae.cfg.M}
    ce, hits, n = 0.0, 0, 0
    counts = torch.zeros(labeler.K)
    p_fake: dict[str, list[float]] = {"originals": []}
    images = list_images(args.images)[: args.max_images]
    for path in images:
        x = load_rgb(path).float()[None] / 255
        H, W = x.shape[-2:]
        s = min(args.crop, H, W) // 16 * 16
        y0, x0 = (H - s) // 2, (W - s) // 2
        x = x[..., y0 : y0 + s, x0 : x0 + s]
        labels = labeler(x)
        idx = ae.encode(x)
        z_full = ae.latent(idx)
        real = disc(x, z_full)
        ce += float(F.cross_entropy(real, labels + 1, reduction="sum"))
        hits += int((real[:, 1:].argmax(1) == labels).sum())
        n += labels.numel()
        counts += torch.bincount(labels.flatten(), minlength=labeler.K).float()
        p_fake["originals"].append(float(real.softmax(1)[:, 0].mean()))
        for rate, m in rates.items():
            z = ae.latent(idx[:, :m])
            for name, dec in (("fidelity", ae.decoder), ("realism", model.decoder)):
                rec = dec(z)[..., :s, :s].clamp(0, 1)
                p_fake.setdefault(f"{name} {rate}", []).append(float(disc(rec, z).softmax(1)[:, 0].mean()))
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    print(f"{len(images)} held-out photos ({args.images}), centre crops <= {args.crop} px")
    print(f"run {args.run}, step {state['step']}")
    used = int((counts > 0).sum())
    print(f"labels: K={labeler.K}, {used} used; entropy of their frequencies {entropy:.3f} nats")
    chance = math.log(labeler.K + 1)
    print(f"discriminator on originals: cross-entropy {ce / n:.3f} nats (chance over K+1: {chance:.3f})")
    print(f"top-1 label accuracy {100 * hits / n:.1f}%")
    for name, v in p_fake.items():
        print(f"P(fake) on {name:24s} {sum(v) / len(v):.3f}")


if __name__ == "__main__":
    main()
