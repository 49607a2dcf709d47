"""How much of the realism decoder's image each rate should show (issue 31): a sweep of the
strength of ``decoder="realism"`` (:mod:`codec.render.realism`) at fixed code counts m.

Each photo is coded once per m (``Rate(m=m)``) with BUNDLE, decoded by the fidelity and the
realism decoder, and mixed at each strength (0: the fidelity image; 1: the realism decoder's).
Per m and strength: mean bpp and PSNR, FD and KID between MobileNetV2 features of 256-px
patches of the originals and of the decoded images (the offline stand-ins of bench/realism.py),
and, over 200 paired resamples of the photos, how often the strength's KID is below the
fidelity image's and below the realism decoder's. The strength with the lowest KID at each m
is the table ``codec export BUNDLE --realism-strength`` takes; choose it on photos that no
decoder trained on and that the evaluation does not use (never Kodak).

    python bench/realism_strength.py codec/weights/default.safetensors \\
        --photos ../shared/data/train/bsds500/test --start 100 --count 100 --m 1,2,3,4,6,8,12
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
RESAMPLES = 200


def resampled_kid(ref: list, rec: list, idx: np.ndarray) -> float:
    """KID of the photos ``idx`` (a resample): originals' features against decoded ones'."""
    from codec.bench.features import kernel_distance

    return kernel_distance(np.concatenate([ref[i] for i in idx]), np.concatenate([rec[i] for i in idx]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--photos", default="../shared/data/train/bsds500/test")
    ap.add_argument("--start", type=int, default=100, help="the first photo (sorted by name)")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--m", default="1,2,3,4,6,8,12", help="codes per position")
    ap.add_argument("--strengths", default=",".join(map(str, STRENGTHS)))
    args = ap.parse_args()

    import torch

    from codec.bench.features import feature_extractor, frechet_distance, kernel_distance, patches
    from codec.engine.loading import get_codec
    from codec.format.checks import Rate
    from codec.render.realism import blend
    from codec.train.data import list_images
    from codec.util.imageio import load_rgb
    from codec.util.metrics import image_quality

    torch.set_num_threads(1)
    ms = [int(v) for v in args.m.split(",")]
    strengths = [float(v) for v in args.strengths.split(",")]
    codec, features = get_codec(args.bundle), feature_extractor()[0]
    files = list_images(args.photos)[args.start : args.start + args.count]
    ref, rec, psnr, bpp = [], {}, {}, {m: [] for m in ms}
    began = time.time()
    for path in files:
        img = load_rgb(path).permute(1, 2, 0).numpy()
        ref.append(features(patches(img)))
        for m in ms:
            data = codec.compress(img, rate=Rate(m=m))
            bpp[m].append(8 * len(data) / (img.shape[0] * img.shape[1]))
            fid, real = codec.decompress(data), codec.decompress(data, decoder="realism", realism_strength=1)
            for s in strengths:
                out = blend(fid, real, s)
                rec.setdefault((m, s), []).append(features(patches(out)))
                psnr.setdefault((m, s), []).append(image_quality(out, img)["psnr"])
    everything = np.concatenate(ref)
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, len(files), len(files)) for _ in range(RESAMPLES)]
    print(
        f"# {len(files)} photos of {args.photos} from #{args.start}, {args.bundle}, one thread, "
        f"{time.time() - began:.0f} s"
    )
    for m in ms:
        row = {"m": m, "photos": len(files), "bpp": round(float(np.mean(bpp[m])), 5)}
        kids = {s: np.array([resampled_kid(ref, rec[m, s], idx) for idx in resamples]) for s in strengths}
        for s in strengths:
            mine = np.concatenate(rec[m, s])
            row[str(s)] = {
                "kid": round(kernel_distance(everything, mine), 4),
                "fd": round(frechet_distance(everything, mine), 2),
                "psnr": round(float(np.mean(psnr[m, s])), 3),
                "below_fidelity": float(np.mean(kids[s] < kids[strengths[0]])),
                "below_realism": float(np.mean(kids[s] < kids[strengths[-1]])),
            }
        row["lowest_kid"] = min(strengths, key=lambda s: row[str(s)]["kid"])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
