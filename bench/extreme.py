"""The extreme-rate model on Kodak: bytes per image (header included), PSNR, and a PNG
contact sheet (original | reconstruction per image, then one image decoded progressively
from the first t stages of its file).

    python bench/extreme.py BUNDLE [--kodak DIR] [--out bench/results/extreme]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from classical import to_tensor
from PIL import Image, ImageDraw

from codec.engine.loading import load_codec
from codec.format import bitstream
from codec.util.imageio import list_images
from codec.util.metrics import psnr


def thumb(img: np.ndarray, width: int) -> Image.Image:
    im = Image.fromarray(img)
    return im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)


def labelled(im: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (im.width, im.height + 14), "white")
    out.paste(im, (0, 14))
    ImageDraw.Draw(out).text((2, 1), text, fill="black")
    return out


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    w = max(sum(i.width for i in r) for r in rows)
    h = sum(max(i.height for i in r) for r in rows)
    sheet, y = Image.new("RGB", (w, h), "white"), 0
    for r in rows:
        x = 0
        for i in r:
            sheet.paste(i, (x, y))
            x += i.width
        y += max(i.height for i in r)
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--out", default="bench/results/extreme")
    ap.add_argument("--sheet-images", default="kodim01,kodim05,kodim14,kodim15,kodim20,kodim23")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.bundle)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, pairs, files = [], [], {}
    for f in list_images(args.kodak):
        img = np.asarray(Image.open(f).convert("RGB"))
        data = codec.compress(img)
        rec = codec.decompress(data)
        p = float(psnr(to_tensor(rec), to_tensor(img)))
        rows.append(
            {
                "image": f.name,
                "bytes": len(data),
                "bpp": 8 * len(data) / (img.shape[0] * img.shape[1]),
                "psnr": p,
            }
        )
        print(f"{f.name}: {len(data)} bytes, {rows[-1]['bpp']:.5f} bpp, {p:.2f} dB", flush=True)
        if f.stem in args.sheet_images.split(","):
            pairs.append(
                [labelled(thumb(img, 256), f.stem), labelled(thumb(rec, 256), f"{len(data)} B, {p:.1f} dB")]
            )
            files[f.stem] = (img, data)
    sheet_rows = [
        pairs[i] + pairs[i + 1] if i + 1 < len(pairs) else pairs[i] for i in range(0, len(pairs), 2)
    ]
    stem, (img, data) = next(iter(files.items()))
    S = bitstream.unpack(data)[0].stages
    prog = []
    for t in range(0, S + 1):
        part = codec.decompress(data, stages=t)
        prog.append(labelled(thumb(part, 128), f"{stem} stages {t}/{S}"))
    sheet = grid(sheet_rows + [prog])
    sheet.save(out / "contact_sheet.png")
    b = [r["bytes"] for r in rows]
    print(
        f"\nKodak {len(rows)} images: bytes mean {statistics.mean(b):.1f}, median {statistics.median(b)}, "
        f"max {max(b)}; PSNR mean {statistics.mean(r['psnr'] for r in rows):.2f} dB; "
        f"{sum(x <= 200 for x in b)}/{len(b)} files <= 200 bytes"
    )
    (out / "extreme.json").write_text(json.dumps({"bundle": args.bundle, "rows": rows}, indent=1))
    print(f"wrote {out / 'contact_sheet.png'} and {out / 'extreme.json'}")


if __name__ == "__main__":
    main()
