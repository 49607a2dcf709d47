"""Kodak evaluation of a PQ-VAE against JPEG and WebP at the same bits per pixel.

    python bench/eval_pqvae.py WEIGHTS [--kodak DIR] [--out FILE] [--prefixes 2,6,12]

WEIGHTS: exported .safetensors or a training checkpoint folder. Our rate here is the
raw bound M*log2(K)/s^2 (tokens stored at log2(K) bits each, no entropy model yet) and
the tokens' unigram entropy (what a static per-codebook entropy coder would reach).
For Pillow's JPEG (4:2:0, libjpeg-turbo), WebP and AVIF (see bench/classical.py), each
image is swept over quality and PSNR / MS-SSIM are interpolated linearly at the same bpp,
from real encoded file sizes.
All 24 Kodak images, PSNR over RGB on uint8 images, MS-SSIM from torchmetrics.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from classical import at_bpp, rd_curve, to_tensor
from PIL import Image

from codec.models.io import load_pqvae
from codec.train.autoencoder_stage import evaluate
from codec.util.imageio import list_images
from codec.util.metrics import ms_ssim, psnr, quantize_uint8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--out", default="bench/results/eval_pqvae.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classical", default="jpeg,webp,avif", help="Pillow codecs to compare at the same bpp")
    ap.add_argument("--prefixes", default="", help="nested models: also evaluate these prefix lengths m")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = load_pqvae(args.weights)
    files = list_images(args.kodak)
    imgs = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    prefixes = [int(m) for m in args.prefixes.split(",") if m]
    if prefixes and not (model.cfg.nested and all(0 < m < model.cfg.M for m in prefixes)):
        ap.error(f"--prefixes needs a nested model and 0 < m < {model.cfg.M}")
    tensors = [torch.from_numpy(i).permute(2, 0, 1) for i in imgs]
    ours = evaluate(model, tensors, torch.device("cpu"), prefixes)
    enc_ms, dec_ms, per_image = [], [], []
    for f, img in zip(files, imgs):
        x = to_tensor(img)
        t0 = time.perf_counter()
        idx = model.encode(x)
        t1 = time.perf_counter()
        y = quantize_uint8(model.decode(idx, x.shape[-2:]))
        t2 = time.perf_counter()
        enc_ms.append(1e3 * (t1 - t0))
        dec_ms.append(1e3 * (t2 - t1))
        per_image.append({"image": f.name, "psnr": float(psnr(y, x)), "ms_ssim": float(ms_ssim(y, x))})
    target = ours["raw_bpp"]
    rows = {"ours (raw bound)": (target, ours["psnr"], ours["ms_ssim"])}
    for codec in filter(None, args.classical.split(",")):
        vals = [at_bpp(rd_curve(img, codec), target) for img in imgs]
        ok = [v for v in vals if v is not None]
        rows[f"{codec} @ same bpp"] = (
            target,
            statistics.mean(v[0] for v in ok),
            statistics.mean(v[1] for v in ok),
        )
        if len(ok) < len(vals):
            print(
                f"{codec}: {len(vals) - len(ok)} images cannot reach {target:.4f} bpp; "
                f"averaged over {len(ok)}"
            )
    print(f"Kodak, {len(imgs)} images; model {args.weights}; {args.threads} threads")
    print(f"{'codec':22} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8}")
    for name, (b, p, s) in rows.items():
        print(f"{name:22} {b:7.4f} {p:8.2f} {s:8.4f}")
    for m in prefixes:
        print(
            f"ours, first {m} sub-vectors: PSNR {ours[f'psnr_m{m}']:.2f} dB, MS-SSIM "
            f"{ours[f'ms_ssim_m{m}']:.4f}, unigram {ours[f'unigram_bpp_m{m}']:.4f} bpp"
        )
    print(
        f"ours: tokens' unigram entropy {ours['unigram_bpp']:.4f} bpp; "
        f"perplexity per sub-vector {ours['perplexity']}"
    )
    print(
        f"ours: encode {statistics.median(enc_ms):.0f} ms, decode {statistics.median(dec_ms):.0f} ms "
        "(median per image, autoencoder only, float32 CPU)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "ours": ours,
                "rows": rows,
                "per_image": per_image,
                "encode_ms_median": statistics.median(enc_ms),
                "decode_ms_median": statistics.median(dec_ms),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
