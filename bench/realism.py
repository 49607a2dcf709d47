"""Fidelity vs realism decoders of one bitstream, against AVIF and WebP at the same size, at
several rates, on Kodak and on the held-out BSDS500 test photos.

Each image is coded once per target rate with BUNDLE (``--bpp``: our rate control); the file
is decoded by the bundle's fidelity decoder, its realism decoder (``decoder="realism"``: at the
bundle's strengths, if it has them, codec.render.realism) and, with --other, the realism
decoder of another bundle over the same tokens (same model id: the discriminator ablation, a
longer run, or other strengths). Each classical codec gets the largest file not larger than ours (where it has
no file that small, its row averages fewer images: the count is printed, and it is left out
of the paired KID bootstrap). Reported per photo set, rate and decoder: bpp, PSNR, MS-SSIM,
and FD / KID between MobileNetV2 features of 256-px patches of the originals and of the
decoded images (offline stand-ins for FID/KID; Kodak gives 6 patches per image, BSDS500 one),
KID intervals by bootstrap over the images.

    python bench/realism.py BUNDLE [--other BUNDLE2] [--bpp 0.03,0.05,0.1,0.2] [--workers 2]
        [--set kodak=../shared/data/kodak --set bsds500-test=../shared/data/train/bsds500/test]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SETS = ("kodak=../shared/data/kodak", "bsds500-test=../shared/data/train/bsds500/test")
CLASSICAL = {"avif": "AVIF", "webp": "WebP"}
_worker: dict = {}


def discriminator_of(bundle: str) -> str:
    """Which discriminator trained a bundle's realism decoder (its metadata)."""
    from safetensors import safe_open

    with safe_open(bundle, "pt") as f:
        return (f.metadata() or {}).get("realism_discriminator", "?")


def _init(bundle: str, other: str | None) -> None:
    import torch

    from codec.bench.features import feature_extractor
    from codec.engine.loading import load_codec

    torch.set_num_threads(1)
    _worker["codec"] = load_codec(bundle)
    _worker["other"] = load_codec(other) if other else None
    _worker["features"] = feature_extractor()[0]


def _image(job: tuple[str, tuple[float, ...], tuple[str, ...], str, str]) -> dict:
    """One image at every rate: {rate: {decoder: {bpp, psnr, ms_ssim, features}}} and the
    original's features."""
    from codec import classical
    from codec.bench.features import patches
    from codec.format.checks import Rate
    from codec.util.imageio import load_rgb
    from codec.util.metrics import image_quality

    path, bpps, codecs, main_name, other_name = job
    codec, other, ext = _worker["codec"], _worker["other"], _worker["features"]
    feats = (lambda a: ext(patches(a))) if ext is not None else (lambda a: None)  # noqa: E731
    img = load_rgb(path).permute(1, 2, 0).numpy()
    px = img.shape[0] * img.shape[1]
    out = {"image": Path(path).name, "original": feats(img), "rates": {}}
    for b in bpps:
        data = codec.compress(img, rate=Rate(bpp=b))
        decoded = {"fidelity": (codec.decompress(data), len(data))}
        decoded[main_name] = (codec.decompress(data, decoder="realism"), len(data))
        if other is not None:
            decoded[other_name] = (other.decompress(data, decoder="realism"), len(data))
        for c in codecs:
            fit = classical.fit_size(img, c, len(data))
            if fit is not None:
                decoded[CLASSICAL[c]] = (classical.decode(fit[1]), len(fit[1]))
        out["rates"][b] = {
            n: {"bpp": 8 * size / px, **image_quality(rec, img), "features": feats(rec)}
            for n, (rec, size) in decoded.items()
        }
    return out


def kid_bootstrap(feats: dict[str, list[np.ndarray]], names: list[str], reps: int, seed: int = 0) -> dict:
    """KID of each decoder on ``reps`` resamples (with replacement) of the images, all
    decoders on the same resample: 95% percentile intervals, and for each pair of decoders
    the fraction of resamples in which the first has the lower KID."""
    from codec.bench.features import kernel_distance

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


def summarize(per_image: list[dict], rate: float, names: list[str], reps: int) -> dict:
    """Means, FD / KID and the KID bootstrap of one rate over one photo set."""
    from codec.bench.features import frechet_distance, kernel_distance

    rows = {n: [r["rates"][rate][n] for r in per_image if n in r["rates"][rate]] for n in names}
    have_features = per_image and per_image[0]["original"] is not None
    ref = np.concatenate([r["original"] for r in per_image]) if have_features else None
    out: dict = {}
    for n in names:
        r = rows[n]
        if not r:
            out[n] = None
            continue
        e = {
            "images": len(r),
            "bpp": statistics.mean(x["bpp"] for x in r),
            "psnr": statistics.mean(x["psnr"] for x in r),
            "ms_ssim": statistics.mean(x["ms_ssim"] for x in r if x["ms_ssim"] is not None),
            "fd_mobilenet": None,
            "kid_mobilenet": None,
        }
        rec = np.concatenate([x["features"] for x in r]) if ref is not None else None
        if rec is not None and min(len(rec), len(ref)) >= 2:  # distances of distributions
            e["fd_mobilenet"], e["kid_mobilenet"] = frechet_distance(ref, rec), kernel_distance(ref, rec)
        out[n] = e
    complete = [n for n in names if len(rows[n]) == len(per_image)]  # paired: every image
    if ref is not None and reps:
        feats = {"original": [r["original"] for r in per_image]}
        feats |= {n: [x["features"] for x in rows[n]] for n in complete}
        out["kid_bootstrap"] = kid_bootstrap(feats, complete, reps)
    return out


def table(name: str, n_images: int, rate: float, s: dict, names: list[str]) -> str:
    lines = [
        f"{name} ({n_images} images), target {rate:g} bpp",
        f"{'decoder':18s} {'bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} {'FD':>9s} {'KID':>8s}",
    ]
    for n in names:
        e = s[n]
        if e is None:
            lines.append(f"{n:18s} n/a (no file of at most our size for any image)")
            continue
        fd = f"{e['fd_mobilenet']:9.3f}" if e["fd_mobilenet"] is not None else "      n/a"
        kid = f"{e['kid_mobilenet']:8.4f}" if e["kid_mobilenet"] is not None else "     n/a"
        lines.append(
            f"{n:18s} {e['bpp']:7.4f} {e['psnr']:7.2f} {e['ms_ssim']:8.4f} {fd} {kid}  ({e['images']} images)"
        )
    b = s.get("kid_bootstrap")
    if b:
        lines.append(f"KID 95% interval, {b['reps']} resamples of the images (paired):")
        lines += [f"  {n:18s} [{lo:.4f}, {hi:.4f}]" for n, (lo, hi) in b["ci"].items()]
        lines += [
            f"  {pair}: lower KID in {100 * f:.1f}% of resamples" for pair, f in b["lower_than"].items()
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="a bundle with a realism decoder (codec export --realism)")
    ap.add_argument(
        "--other",
        "--binary",
        dest="other",
        help="another bundle over the same tokens: its realism decoder too",
    )
    ap.add_argument(
        "--set", action="append", help="NAME=FOLDER of photos (repeatable; default Kodak, BSDS test)"
    )
    ap.add_argument("--bpp", default="0.03,0.05,0.1,0.2", help="target rates of our files")
    ap.add_argument("--codecs", default="avif,webp", help="classical codecs at our file size")
    ap.add_argument("--max-images", type=int, default=0, help="only the first N images of each set")
    ap.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    ap.add_argument("--out", default="bench/results/realism")
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples of the images for KID intervals")
    args = ap.parse_args()

    from codec.bench.features import feature_extractor
    from codec.engine.loading import load_codec
    from codec.util.imageio import list_images

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codec = load_codec(args.bundle)
    if "realism" not in codec.decoders:
        raise SystemExit(f"{args.bundle} has no realism decoder")
    if args.other and load_codec(args.other).model_id != codec.model_id:
        raise SystemExit(f"{args.other} must share the model id of {args.bundle}")
    why = feature_extractor()[1]
    bpps = tuple(float(b) for b in args.bpp.split(","))
    codecs = tuple(c for c in args.codecs.split(",") if c)
    main_name = f"realism ({discriminator_of(args.bundle)})"
    other_name = f"realism ({discriminator_of(args.other)})" if args.other else ""
    if other_name == main_name:  # two decoders of one discriminator: named by their files
        main_name, other_name = (
            f"{n[:-1]}, {Path(b).stem})" for n, b in ((main_name, args.bundle), (other_name, args.other))
        )
    names = ["fidelity", main_name, *([other_name] if args.other else []), *(CLASSICAL[c] for c in codecs)]
    summary: dict = {
        "bundle": args.bundle,
        "other": args.other,
        "model_id": codec.model_id.hex(),
        "sets": {},
    }
    per_image_all = {}
    report = []
    t0 = time.time()
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(args.bundle, args.other)) as pool:
        for item in args.set or SETS:
            name, _, folder = item.partition("=")
            images = list_images(folder)[: args.max_images or None]
            jobs = [(str(p), bpps, codecs, main_name, other_name) for p in images]
            per_image = list(pool.map(_image, jobs))
            summary["sets"][name] = {
                "folder": folder,
                "images": len(images),
                "rates": {b: summarize(per_image, b, names, args.bootstrap) for b in bpps},
            }
            per_image_all[name] = [
                {
                    "image": r["image"],
                    "rates": {
                        b: {
                            n: {k: v for k, v in d.items() if k != "features"}
                            for n, d in r["rates"][b].items()
                        }
                        for b in bpps
                    },
                }
                for r in per_image
            ]
            for b in bpps:
                report.append(table(name, len(images), b, summary["sets"][name]["rates"][b], names))
                print(report[-1] + "\n", flush=True)
    how = f"{args.workers} processes, one thread each, {time.time() - t0:.0f} s; FD/KID: " + (
        why or "MobileNetV2 (TFLite) pooled features of 256-px patches, originals vs decoded (not Inception)"
    )
    print(how)
    summary["how"] = how
    (out / "realism.json").write_text(json.dumps({"summary": summary, "per_image": per_image_all}, indent=1))
    (out / "realism.txt").write_text("\n\n".join(report) + "\n\n" + how + "\n")
    print(f"wrote {out}/realism.json and {out}/realism.txt")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
