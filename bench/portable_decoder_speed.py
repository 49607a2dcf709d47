"""The portable C++ decoder (codec.render.portable) against torch's Decoder, side by side.

The shipped default model, the latent of Kodak's kodim23 (768 x 512; a 48 x 32 latent):
median wall time of N runs (after one warm-up) at 1 and 2 threads of the C++ decoder, torch
float32 and torch bf16 autocast; the peak memory each adds to a fresh process; the C++
image's distance from torch float32's.

    .venv/bin/python bench/portable_decoder_speed.py [--runs 7] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "codec" / "weights" / "default.safetensors"
SAMPLE = ROOT / "codec" / "data" / "sample.png"


def load():
    from codec.models.pqvae import PQVAE, PQVAEConfig

    with safe_open(str(BUNDLE), "np") as f:
        config = json.loads(f.metadata()["autoencoder_config"])
    tensors = load_file(str(BUNDLE))
    ae = PQVAE(PQVAEConfig(**config))
    prefix = "autoencoder."
    ae.load_state_dict(
        {k[len(prefix) :]: torch.from_numpy(v).float() for k, v in tensors.items() if k.startswith(prefix)}
    )
    return config, tensors, ae.eval()


def latent(ae) -> torch.Tensor:
    x = torch.from_numpy(np.array(Image.open(SAMPLE).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return ae.latent(ae.encode(x))


def pixels(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


MEMORY = r"""
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[2])
from portable_decoder_speed import load, latent
config, tensors, ae = load()
z = latent(ae)
what = sys.argv[1]
if what == "cpp":
    from codec.render.portable import PortableDecoder
    p = PortableDecoder(config, tensors, prefix="autoencoder.decoder.", threads=1)
    zn = z[0].numpy().copy()
    p.forward(zn[:, :4, :4])
    run = lambda: p.forward(zn)
else:
    torch.set_num_threads(1)
    d = ae.decoder
    def run():
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=what == "bf16"):
            return d(z)
    with torch.no_grad():
        d(z[:, :, :4, :4])
del tensors
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS:")
out = run()
print(status("VmHWM:") - before)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    from codec.render.portable import PortableDecoder

    config, tensors, ae = load()
    z = latent(ae)
    zn = z[0].numpy().copy()
    dec = ae.decoder
    p = PortableDecoder(config, tensors, prefix="autoencoder.decoder.")
    print(f"latent {list(zn.shape)} -> image 3 x {zn.shape[1] * p.stride} x {zn.shape[2] * p.stride}")

    def torch_run(bf16: bool):
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return dec(z)[0].float()

    rows = []
    for t in args.threads:
        torch.set_num_threads(t)
        p.threads = t
        runs = {
            "C++ portable": lambda: p.forward(zn),
            "torch fp32": lambda: torch_run(False),
            "torch bf16 autocast": lambda: torch_run(True),
        }
        times = {k: [] for k in runs}
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(args.runs):  # interleaved: drift hits every contender alike
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        for k, v in times.items():
            rows.append((t, k, statistics.median(v), min(v)))
    print(f"\n{'threads':>7}  {'decoder':<20} {'median s':>9} {'min s':>7}   (N = {args.runs})")
    for t, k, med, mn in rows:
        print(f"{t:>7}  {k:<20} {med:>9.3f} {mn:>7.3f}")

    got = p.forward(zn)
    ref = torch_run(False)
    bf = torch_run(True)
    px = p.pixels(zn, (got.shape[1], got.shape[2]))
    diff = np.abs(px.astype(int) - pixels(ref))
    print(
        f"\nC++ vs torch fp32: max |float diff| {np.abs(got - ref.numpy()).max():.2e}, "
        f"pixels differing {(diff > 0).mean():.2e} (max {diff.max()} level)"
    )
    diff_bf = np.abs(pixels(bf).astype(int) - pixels(ref))
    print(
        f"torch bf16 vs fp32: max |float diff| {(bf - ref).abs().max():.2e}, "
        f"pixels differing {(diff_bf > 0).mean():.2e} (max {diff_bf.max()} levels)"
    )

    print("\npeak memory added by one decode (fresh process, 1 thread):")
    for what in ("cpp", "fp32", "bf16"):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY, what, str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"  {what:<5} {int(out.stdout.split()[-1]) / 2**20:7.1f} MiB")


if __name__ == "__main__":
    main()
