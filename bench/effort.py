"""Encoder effort levels on Kodak (or ``--kodak DIR``): rate, PSNR and encode time per effort,
BD-rate against effort 0 of the same model (real files, header included; decoded with the
shipped decoder).

    python bench/effort.py MODEL [--efforts 0,2,4,6,9] [--m 2,4,8,24] [--images 24] [--skip 0]
                           [--threads 2] [--out results/effort_run]

Rate points: ``--m`` sub-vectors per position for a nested model, the model's one rate
otherwise. Per effort: the mean bpp and PSNR over the images at each rate point, the PSNR
BD-rate of that curve against effort 0's (negative: fewer bits for the same PSNR), and the
median encode time per image (``codec.compress`` in this process, after one warm-up).
Rows are kept in OUT.jsonl as they finish (a rerun continues); OUT.md gets the table. To
share the work between processes, give each its own ``--skip`` (images passed over) and
``--out``, then concatenate their .jsonl files into one OUT.jsonl and run the whole range on
it: it finds every row and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from codec.bench.bdrate import bd_rate
from codec.engine.loading import load_codec
from codec.engine.registry import resolve
from codec.util.imageio import list_images, load_rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--efforts", default="0,2,4,6,9")
    ap.add_argument("--m", default="2,4,8,24", help="rate points of a nested model")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--skip", type=int, default=0, help="images passed over before --images are taken")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/effort_run", help="OUT.jsonl (rows), OUT.md (table), OUT.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = load_codec(resolve(args.model))
    files = list_images(args.kodak)[args.skip : args.skip + args.images]
    efforts = [int(e) for e in args.efforts.split(",")]
    points = [int(m) for m in args.m.split(",")] if c.layered else [None]
    rows_path = Path(args.out + ".jsonl")
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["model"], r["image"], r["m"], r["effort"])] = r
    c.compress(load_rgb(files[0]).permute(1, 2, 0).numpy()[:64, :64], effort=max(efforts))  # warm-up
    for f in files:
        img = load_rgb(f).permute(1, 2, 0).numpy()
        for m in points:
            for e in efforts:
                key = (args.model, f.name, m, e)
                if key in done:
                    continue
                t = time.perf_counter()
                data = c.compress(img, effort=e, **({} if m is None else {"m": m}))
                seconds = time.perf_counter() - t
                rec = c.decompress(data)
                row = dict(
                    model=args.model,
                    image=f.name,
                    m=m,
                    effort=e,
                    bpp=8 * len(data) / (img.shape[0] * img.shape[1]),
                    psnr=psnr(rec, img),
                    encode_s=seconds,
                    threads=args.threads,
                )
                done[key] = row
                with rows_path.open("a") as out:
                    out.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    rows = [r for r in done.values() if r["model"] == args.model and r["image"] in {f.name for f in files}]
    n = len({r["image"] for r in rows})
    curve = {
        e: [
            (
                statistics.mean(r["bpp"] for r in rows if r["effort"] == e and r["m"] == m),
                statistics.mean(r["psnr"] for r in rows if r["effort"] == e and r["m"] == m),
            )
            for m in points
        ]
        for e in efforts
    }
    lines = [
        f"`python bench/effort.py {args.model} --efforts {args.efforts} --m {args.m} --images {args.images} "
        + (f"--skip {args.skip} " if args.skip else "")
        + f"--threads {args.threads}`: {n} images of {args.kodak}, real files, mean bpp / mean PSNR per "
        "rate point, "
        f"encode time = median seconds per image of `codec.compress` on {args.threads} threads.",
        "",
        "| effort | method | "
        + " | ".join(f"m={m}: bpp, PSNR" if m else "bpp, PSNR" for m in points)
        + " | PSNR BD-rate vs effort 0 | encode s (median) |",
        "|" + "---|" * (len(points) + 4),
    ]
    from codec.engine.effort import EFFORT_STEPS

    for e in efforts:
        bd = "-" if e == efforts[0] or len(points) < 2 else bd_rate(curve[efforts[0]], curve[e])
        bd_text = bd if isinstance(bd, str) else ("n/a" if bd is None else f"{bd:+.1f}%")
        if len(points) == 1 and e != efforts[0]:  # one rate: PSNR and rate change instead
            (b0, p0), (b1, p1) = curve[efforts[0]][0], curve[e][0]
            bd_text = f"{p1 - p0:+.2f} dB at {100 * (b1 / b0 - 1):+.1f}% bpp"
        time_s = statistics.median(r["encode_s"] for r in rows if r["effort"] == e)
        cells = " | ".join(f"{b:.4f}, {p:.2f}" for b, p in curve[e])
        method = "-" if not e else rd_method(e) if c.layered else f"{EFFORT_STEPS[e]} gradient steps"
        lines.append(f"| {e} | {method} | {cells} | {bd_text} | {time_s:.2f} |")
    table = "\n".join(lines)
    print(table)
    Path(args.out + ".md").write_text(table + "\n")
    if len(points) > 1:
        plot(curve, args.model, Path(args.out + ".png"))


def rd_method(effort: int) -> str:
    """How a nested model's codes are chosen at an effort > 0 (``codec.engine.effort.RD_SEARCH``)."""
    from codec.engine.effort import rd_search

    s = rd_search(effort)
    if not s["passes"]:
        return "RD-optimised codes"
    return f"RD codes + {s['passes']} pass(es), {s['foresight']} layer(s) ahead, {s['measured']} measured"


def plot(curve: dict, model: str, path: Path) -> None:
    """PSNR against bpp, one curve per effort."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for e, pts in curve.items():
        ax.plot([b for b, _ in pts], [q for _, q in pts], "o-", ms=3, label=f"effort {e}")
    ax.set(
        xscale="log",
        xlabel="bpp (Kodak mean)",
        ylabel="PSNR dB (Kodak mean)",
        title=f"{model}: encoder effort",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
