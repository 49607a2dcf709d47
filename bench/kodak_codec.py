"""The whole codec on Kodak: real .pqm files against JPEG / WebP / AVIF at the same bpp.

    python bench/kodak_codec.py BUNDLE [--kodak DIR] [--threads 2] [--out FILE]

For each image: compress to .pqm (bpp = 8 * file bytes / pixels, header included),
decompress, PSNR (RGB) and MS-SSIM of the decoded uint8 image, encode and decode wall
time (median over images); the saving of the entropy model against the raw bound
M * log2(K) / s^2; classical codecs interpolated at each image's own bpp
(bench/classical.py). One run, one table.
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

from codec.engine.loading import load_codec
from codec.format import bitstream
from codec.util.imageio import list_images
from codec.util.metrics import ms_ssim, psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classical", default="jpeg,webp,avif")
    ap.add_argument("--out", default="bench/results/kodak_codec.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    codec = load_codec(args.bundle)
    cfg = codec.autoencoder.cfg
    rows = []
    for f in list_images(args.kodak):
        img = np.asarray(Image.open(f).convert("RGB"))
        t0 = time.perf_counter()
        data = codec.compress(img)
        t1 = time.perf_counter()
        out = codec.decompress(data)
        t2 = time.perf_counter()
        header, payload = bitstream.unpack(data)
        _, bits = codec.tokens.encode_tokens(
            codec.tokens.decode_tokens(payload, header.token_shape)
        )  # the model's estimate
        x, y = to_tensor(img), to_tensor(out)
        bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
        s = ms_ssim(y, x)
        row = {
            "image": f.name,
            "bytes": len(data),
            "bpp": bpp,
            "psnr": float(psnr(y, x)),
            "ms_ssim": float(s) if s is not None else None,
            "encode_ms": 1e3 * (t1 - t0),
            "decode_ms": 1e3 * (t2 - t1),
            "payload_bytes": len(payload),
            "estimated_bytes": bits / 8,
        }
        for name in args.classical.split(","):
            row[name] = at_bpp(rd_curve(img, name), bpp)
        rows.append(row)
        print(f"{f.name}: {len(data)} bytes, {bpp:.4f} bpp, {row['psnr']:.2f} dB", flush=True)
    mean = lambda k: statistics.mean(r[k] for r in rows)  # noqa: E731
    print(f"\nKodak, {len(rows)} images, {args.threads} threads, bundle {args.bundle}")
    print(f"{'codec':18} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8}")
    print(f"{'ours (.pqm files)':18} {mean('bpp'):7.4f} {mean('psnr'):8.2f} {mean('ms_ssim'):8.4f}")
    for name in args.classical.split(","):
        ok = [r[name] for r in rows if r[name] is not None]
        if ok:
            print(
                f"{name + ' @ same bpp':18} {mean('bpp'):7.4f} {statistics.mean(v[0] for v in ok):8.2f} "
                f"{statistics.mean(v[1] for v in ok):8.4f}  ({len(ok)} images in range)"
            )
    print(
        f"raw bound {cfg.raw_bpp:.4f} bpp; entropy model saves {100 * (1 - mean('bpp') / cfg.raw_bpp):.1f}% "
        "(header included)"
    )
    over = 100 * max(r["payload_bytes"] / r["estimated_bytes"] - 1 for r in rows)
    print(f"payload vs the model's estimated bits: at most {over:+.3f}% (header excluded)")
    print(
        f"encode {statistics.median(r['encode_ms'] for r in rows):.0f} ms, decode "
        f"{statistics.median(r['decode_ms'] for r in rows):.0f} ms (median per image)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bundle": args.bundle, "threads": args.threads, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
