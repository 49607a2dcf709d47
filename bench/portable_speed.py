"""Entropy-model time of one Kodak image, all stages of the schedule: torch (the model's own
forward, as the codec ran it before the portable inference) against the portable C++
inference (codec.entropy.portable), same tokens, same calls, one run.

    python bench/portable_speed.py [--model default] [--threads 2] [--images 24]

Prints the median and max seconds per image over the images (tokens from the model's own
encoder), and checks that the portable logits match torch's to float tolerance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from codec.engine.loading import load_codec
from codec.engine.registry import resolve
from codec.util.imageio import list_images, load_rgb


def stage_calls(c, tokens: np.ndarray):
    """(known, query) flat positions of every stage of the codec's schedule."""
    M, h, w = tokens.shape
    order = np.concatenate(c.schedule.stages_for(h, w))
    done = 0
    for n in c.schedule.counts(h, w):
        yield order[:done], order[done : done + n]
        done += n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=24)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = load_codec(resolve(args.model))
    pm = c.portable_models()["base"]
    pm.threads = args.threads
    # a layered model's masked transformer codes its first pm.M codes (the base layer)
    model = getattr(c.entropy_model, "base", c.entropy_model)
    times: dict[str, list[float]] = {"torch": [], "portable": []}
    worst = 0.0
    for path in list_images(args.kodak)[: args.images]:
        x = load_rgb(path).float()[None] / 255
        tokens = c.autoencoder.encode(x)[0].numpy()[: pm.M]
        tok = torch.from_numpy(tokens)[None]
        calls = list(stage_calls(c, tokens))
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = [model(tok, torch.from_numpy(k)[None], torch.from_numpy(q)[None])[0] for k, q in calls]
        times["torch"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = [pm.logits(tokens, k, q) for k, q in calls]
        times["portable"].append(time.perf_counter() - t0)
        worst = max(worst, max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref)))
    h, w = tokens.shape[1:]
    print(
        f"{args.model}: {len(times['torch'])} Kodak images, {c.schedule.stages} stages on a {h}x{w} grid, "
        f"{args.threads} threads; seconds per image (median, max)"
    )
    for name, ts in times.items():
        print(f"  {name:9s} {statistics.median(ts):.3f}  {max(ts):.3f}")
    print(f"  largest |portable - torch| logit difference: {worst:.2e}")


if __name__ == "__main__":
    main()
