"""Fidelity vs realism decoders of one bitstream, against AVIF at the same size, on Kodak.

Each image is coded once with BUNDLE (its tokens, its file, its bpp); the file is decoded by
the bundle's fidelity decoder, its realism decoder and, with --binary, the realism decoder of
another bundle over the same tokens (the binary-discriminator ablation: same model id).
AVIF gets the largest file not larger than ours (where AVIF has no file that small, its row
averages fewer images: the count is printed, and it is left out of the paired KID
bootstrap). Reported per decoder: bpp, PSNR, MS-SSIM, and FD / KID between MobileNetV2
features of 256-px patches of the originals and of the decoded images (offline stand-ins for
FID/KID), KID intervals by bootstrap over the images; a PNG contact sheet of center crops.

    python bench/realism.py BUNDLE [--binary BUNDLE2] [--kodak DIR] [--out bench/results/realism]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from codec import classical
from codec.bench.features import feature_extractor, frechet_distance, kernel_distance, patches
from codec.engine.loading import load_codec
from codec.util.imageio import list_images, load_rgb
from codec.util.metrics import image_quality


def crop(img: np.ndarray, size: int) -> Image.Image:
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return Image.fromarray(img[y : y + size, x : x + size])


def sheet(rows: list[list[tuple[str, np.ndarray]]], size: int = 192) -> Image.Image:
    """One row per image: labelled center crops side by side."""
    cols = len(rows[0])
    out = Image.new("RGB", (cols * size, len(rows) * (size + 14)), "white")
    draw = ImageDraw.Draw(out)
    for r, row in enumerate(rows):
        for c, (text, img) in enumerate(row):
            out.paste(crop(img, size), (c * size, r * (size + 14) + 14))
            draw.text((c * size + 2, r * (size + 14) + 1), text, fill="black")
    return out


def discriminator_of(bundle: str) -> str:
    """Which discriminator trained a bundle's realism decoder (its metadata)."""
    from safetensors import safe_open

    with safe_open(bundle, "pt") as f:
        return (f.metadata() or {}).get("realism_discriminator", "?")


def kid_bootstrap(feats: dict[str, list[np.ndarray]], names: list[str], reps: int, seed: int = 0) -> dict:
    """KID of each decoder on ``reps`` resamples (with replacement) of the images, all
    decoders on the same resample: 95% percentile intervals, and for each pair of decoders
    the fraction of resamples in which the first has the lower KID."""
    rng = np.random.default_rng(seed)
    n = len(feats["original"])
    kids = {name: [] for name in names}
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        ref = np.concatenate([feats["original"][i] for i in idx])
        for name in names:
            kids[name].append(kernel_distance(ref, np.concatenate([feats[name][i] for i in idx])))
    k = {name: np.array(v) for name, v in kids.items()}
    return {
        "reps": reps,
        "ci": {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in k.items()},
        "lower_than": {
            f"{a} < {b}": float(np.mean(k[a] < k[b])) for i, a in enumerate(names) for b in names[i + 1 :]
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="a bundle with a realism decoder (codec export --realism)")
    ap.add_argument(
        "--binary", help="a bundle over the same tokens whose realism decoder used --discriminator binary"
    )
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--out", default="bench/results/realism")
    ap.add_argument("--sheet-images", type=int, default=6)
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples of the images for KID intervals")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codec = load_codec(args.bundle)
    if codec.realism_decoder is None:
        raise SystemExit(f"{args.bundle} has no realism decoder")
    binary = load_codec(args.binary) if args.binary else None
    if binary is not None and (binary.model_id != codec.model_id or binary.realism_decoder is None):
        raise SystemExit(f"{args.binary} must share the model id of {args.bundle} and have a realism decoder")
    ext, why = feature_extractor()
    main_name = f"realism ({discriminator_of(args.bundle)})"
    names = ["fidelity", main_name] + (["realism (binary)"] if binary else []) + ["AVIF"]
    rows: dict[str, list[dict]] = {n: [] for n in names}
    feats: dict[str, list[np.ndarray]] = {n: [] for n in ["original", *names]}
    contact = []
    images = list_images(args.kodak)
    for i, path in enumerate(images):
        img = load_rgb(path).permute(1, 2, 0).numpy()
        data = codec.compress(img)
        px = img.shape[0] * img.shape[1]
        decoded = {
            "fidelity": codec.decompress(data),
            main_name: codec.decompress(data, decoder="realism"),
        }
        if binary:
            decoded["realism (binary)"] = binary.decompress(data, decoder="realism")
        avif = classical.fit_size(img, "avif", len(data))
        if avif is None:  # AVIF's row then averages fewer images (its count is printed)
            print(f"{path.name}: no AVIF file of at most {len(data)} bytes")
        else:
            decoded["AVIF"] = classical.decode(avif[1])
        for n, rec in decoded.items():
            size = len(avif[1]) if n == "AVIF" else len(data)
            rows[n].append({"image": path.name, "bpp": 8 * size / px, **image_quality(rec, img)})
        if ext is not None:
            feats["original"].append(ext(patches(img)))
            for n, rec in decoded.items():
                feats[n].append(ext(patches(rec)))
        if i < args.sheet_images:
            contact.append(
                [("original", img)] + [(f"{n} {rows[n][-1]['bpp']:.3f} bpp", decoded[n]) for n in decoded]
            )
        print(
            f"{path.name}: {len(data)} bytes, "
            + ", ".join(f"{n} {rows[n][-1]['psnr']:.2f} dB" for n in decoded)
        )
    summary = {"bundle": args.bundle, "binary": args.binary, "images": len(images), "feature_note": why or ""}
    print(f"\nKodak {len(images)} images, bundle {args.bundle} (model id {codec.model_id.hex()})")
    print(f"{'decoder':18s} {'bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} {'FD':>9s} {'KID':>8s}")
    ref = np.concatenate(feats["original"]) if ext is not None and feats["original"] else None
    for n in names:
        r = rows[n]
        if not r:
            summary[n] = None
            print(f"{n:18s} n/a (no file of at most our size for any image)")
            continue
        entry = {
            "images": len(r),
            "bpp": statistics.mean(x["bpp"] for x in r),
            "psnr": statistics.mean(x["psnr"] for x in r),
            "ms_ssim": statistics.mean(x["ms_ssim"] for x in r),
            "fd_mobilenet": None,
            "kid_mobilenet": None,
        }
        if ref is not None and feats[n]:
            rec = np.concatenate(feats[n])
            entry["fd_mobilenet"], entry["kid_mobilenet"] = (
                frechet_distance(ref, rec),
                kernel_distance(ref, rec),
            )
        summary[n] = entry
        fd = f"{entry['fd_mobilenet']:9.3f}" if entry["fd_mobilenet"] is not None else "      n/a"
        kid = f"{entry['kid_mobilenet']:8.4f}" if entry["kid_mobilenet"] is not None else "     n/a"
        print(
            f"{n:18s} {entry['bpp']:7.4f} {entry['psnr']:7.2f} {entry['ms_ssim']:8.4f} {fd} {kid}"
            f"  ({len(r)} images)"
        )
    print(
        "FD/KID: " + (why or "MobileNetV2 (TFLite) pooled features of 256-px patches, originals vs decoded")
    )
    complete = [n for n in names if len(feats[n]) == len(feats["original"])]  # paired: every image
    if ref is not None and len(ref):
        np.savez(out / "features.npz", **{n: np.concatenate(f) for n, f in feats.items() if f})
        summary["kid_bootstrap"] = kid_bootstrap(feats, complete, args.bootstrap)
        b = summary["kid_bootstrap"]
        print(
            f"KID, 95% interval over {args.bootstrap} resamples of the images (paired: same images for all):"
        )
        for n in complete:
            lo, hi = b["ci"][n]
            print(f"  {n:18s} [{lo:.4f}, {hi:.4f}]")
        for pair, frac in b["lower_than"].items():
            print(f"  {pair}: lower KID in {100 * frac:.1f}% of resamples")
    (out / "realism.json").write_text(json.dumps({"summary": summary, "per_image": rows}, indent=1))
    sheet(contact).save(out / "realism_contact_sheet.png")
    print(f"wrote {out}/realism.json and {out}/realism_contact_sheet.png")


if __name__ == "__main__":
    main()
