"""Large photos: whole-process `codec encode` / `codec decode` time and peak memory per image
size, and the tiled decoder against the whole-image decoder on Kodak.

    python bench/large_images.py [--model default] [--sizes 768x512,1024x1024,2048x2048,4000x3000]
                                 [--threads 2] [--kodak ../shared/data/kodak] [--out results/large_images.md]

Images are kodim23 upscaled (bicubic) to each size, as in issue 20. Each command runs once
in a fresh process (`/usr/bin/time -v`: wall seconds and maximum resident set size); time
per megapixel subtracts the start-up (the same commands on a 64 x 64 image).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from codec.engine.tiling import (
    ENCODE_HALO_TOKENS,
    ENCODE_TILE_TOKENS,
    HALO_TOKENS,
    RENDER_TILE_TOKENS,
    TILE_ABOVE_PIXELS,
)


def timed(cmd: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in GiB) of one run of ``cmd``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    h, m, s = (float(g) if g else 0.0 for g in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return 3600 * h + 60 * m + s, rss / 2**20


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def tiled_vs_whole(model: str, kodak: str) -> tuple[int, float, float, float, float]:
    """(images, mean PSNR whole, mean PSNR with the decoder in tiles, mean PSNR with the
    encoder in tiles, share of tokens the tiled encoder changes) of the model's full-rate
    tokens of the Kodak images, in 16-position tiles (so that every image has many seams)
    with codec.engine.tiling's margins. The decoder is the portable one (`codec decode`'s)."""
    import torch

    from codec.engine.loading import get_codec
    from codec.engine.tiling import encode_tiled, render_tiled
    from codec.util.imageio import list_images, load_rgb

    c = get_codec(model)
    ae = c.autoencoder
    dec = c.portable_decoder()
    net, s = dec.network(), dec.stride

    def render(tokens: np.ndarray, size: tuple[int, int], tile: int | None = None) -> np.ndarray:
        z = dec.dequantizer.latent(tokens, None)
        if tile is None:
            return net.pixels(z, size)
        part = lambda p: net.pixels(p, (p.shape[-2] * s, p.shape[-1] * s))  # noqa: E731
        return render_tiled(part, z, size, s, tile=tile)

    whole, tiled, tiled_enc, changed = [], [], [], []
    for f in list_images(kodak):
        img = load_rgb(f).permute(1, 2, 0).numpy()
        t = c.tokenize([img])[0]
        whole.append(psnr(render(t, img.shape[:2]), img))
        tiled.append(psnr(render(t, img.shape[:2], tile=16), img))
        with torch.no_grad():
            t_enc = ae.quantizer.indices(encode_tiled(ae.encoder, img, ae.stride, tile=16))[0].numpy()
        tiled_enc.append(psnr(render(t_enc, img.shape[:2]), img))
        changed.append(float((t_enc != t).mean()))
    return len(whole), *(float(np.mean(v)) for v in (whole, tiled, tiled_enc, changed))


def in_process(
    model: str, sizes: list[tuple[int, int]], src: Image.Image, threads: int, repeat: int
) -> list[tuple]:
    """(size, MP, encode s, decode s) of codec.compress / decompress in this process (the
    model's default rate), the model loaded and warmed up first: the cost per megapixel
    without start-up; the median of ``repeat`` runs per size."""
    import statistics
    import time

    import torch

    from codec.engine.loading import get_codec

    torch.set_num_threads(threads)
    c = get_codec(model)
    decoder = c.portable_decoder(threads)  # what codec.decompress and `codec decode` use
    decoder.decompress(c.compress(np.asarray(src.resize((64, 64)))))
    rows = []
    for w, h in sizes:
        img = np.asarray(src.resize((w, h), Image.BICUBIC))
        enc, dec = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            data = c.compress(img)
            t1 = time.perf_counter()
            decoder.decompress(data)
            enc.append(t1 - t0)
            dec.append(time.perf_counter() - t1)
        rows.append((f"{w}x{h}", w * h / 1e6, statistics.median(enc), statistics.median(dec)))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--sizes", default="768x512,1024x1024,2048x2048,4000x3000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--out", default="results/large_images.md")
    ap.add_argument("--in-process", action="store_true", help="time compress/decompress in one process")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size (in-process): the median")
    args = ap.parse_args()
    src = Image.open(Path(args.kodak) / "kodim23.png").convert("RGB")
    if args.in_process:
        sizes = [tuple(int(v) for v in spec.split("x")) for spec in args.sizes.split(",")]
        rows = in_process(args.model, sizes, src, args.threads, args.repeat)
        e0, d0 = rows[0][2] / rows[0][1], rows[0][3] / rows[0][1]
        lines = [
            f"In-process (`python bench/large_images.py --in-process --model {args.model} --sizes "
            f"{args.sizes} --threads {args.threads} --repeat {args.repeat}`; model loaded and warmed "
            f"up, the model's default rate, median of {args.repeat} runs per size; s/MP also as a "
            "ratio to the first size's):",
            "",
            "| image | MP | encode s | decode s | encode s/MP | decode s/MP |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[2] / r[1]:.2f} "
                f"({r[2] / r[1] / e0:.2f}x) | {r[3] / r[1]:.2f} ({r[3] / r[1] / d0:.2f}x) |"
                for r in rows
            ),
        ]
        print("\n".join(lines))
        with open(args.out, "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
        return
    codec = [sys.executable, "-m", "codec"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def run(size: tuple[int, int]) -> tuple[float, float, float, float]:
            png, pqm, out = tmp / f"{size}.png", tmp / f"{size}.pqm", tmp / f"{size}.out.png"
            src.resize(size, Image.BICUBIC).save(png)
            enc = timed(
                [*codec, "encode", str(png), "-o", str(pqm), "--model", args.model, "--force"], args.threads
            )
            dec = timed([*codec, "decode", str(pqm), "-o", str(out), "--force"], args.threads)
            return (*enc, *dec)

        start = run((64, 64))
        print(f"start-up (64x64): encode {start[0]:.2f} s, decode {start[2]:.2f} s", flush=True)
        for spec in args.sizes.split(","):
            w, h = (int(v) for v in spec.split("x"))
            enc_s, enc_gb, dec_s, dec_gb = run((w, h))
            mp = w * h / 1e6
            row = (spec, mp, enc_s, dec_s, (enc_s - start[0]) / mp, (dec_s - start[2]) / mp, enc_gb, dec_gb)
            rows.append(row)
            print(row, flush=True)
    n, p_whole, p_tiled, p_enc, changed = tiled_vs_whole(args.model, args.kodak)
    lines = [
        "# Large photos: time and memory per image size, tiles against whole images",
        "",
        "Token grids over 48 x 48 positions (768 px at stride 16) are entropy-coded in independent "
        "48 x 48 tiles (codec.engine.tiling, header flag FLAG_TILED), so the masked transformer's cost is "
        f"linear in the image; images over {TILE_ABOVE_PIXELS / 1e6:.2f} MP run the encoder in "
        f"{ENCODE_TILE_TOKENS} x "
        f"{ENCODE_TILE_TOKENS}-position tiles with {ENCODE_HALO_TOKENS} positions of context on "
        f"each side and the decoder in {RENDER_TILE_TOKENS} x {RENDER_TILE_TOKENS} tiles with "
        f"{HALO_TOKENS}. Kodak-sized images are one tile: their files and rates are unchanged "
        "(the golden files did not change).",
        "",
        f"`python bench/large_images.py --model {args.model} --sizes {args.sizes} --threads {args.threads}`: "
        f"kodim23 upscaled, whole-process CLI, one run each, {args.threads} threads; start-up "
        f"(64x64 image) {start[0]:.2f} s encode, {start[2]:.2f} s decode, subtracted for s/MP.",
        "",
        "| image | MP | encode s | decode s | encode s/MP | decode s/MP | peak GiB: encode | decode |",
        "|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join([r[0], *(f"{v:.2f}" for v in r[1:])]) + " |" for r in rows),
        "",
        f"Tiles against the whole image, {n} Kodak images at the full rate, 16-position tiles "
        f"(many seams per image): mean PSNR {p_whole:.4f} dB whole; decoder in tiles "
        f"({HALO_TOKENS} positions of margin) {p_tiled:.4f} dB ({p_tiled - p_whole:+.4f} dB); encoder "
        f"in tiles ({ENCODE_HALO_TOKENS} positions of margin) {p_enc:.4f} dB ({p_enc - p_whole:+.4f} "
        f"dB, {100 * changed:.2f}% of the tokens differ).",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
