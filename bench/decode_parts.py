"""In-process time of the two halves of decoding .pqm files: the tokens (entropy model and
range decoder) and the image (the fidelity decoder), with the decoder `codec decode` uses.
Needs no torch, so two installs (say, before and after a change to csrc/) can time the same
files side by side:

    python bench/decode_parts.py FILE.pqm ... [--runs 5]

Threads: the decoder's default, the usable CPUs up to 8 (``taskset -c 0`` for one).

Each file is read once, decoded once to warm up, then ``--runs`` times; prints the median and
min seconds of each half per file, and their sums over the files.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from codec.engine.loading import decoder_for_file
from codec.entropy.range_coder import default_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    threads = default_threads()
    print(f"{len(args.files)} files, {args.runs} runs each after one warm-up, {threads} threads")
    print("| file | bytes | tokens s (median / min) | image s (median / min) |")
    print("|---|---|---|---|")
    total = [0.0, 0.0]
    for path in args.files:
        data = path.read_bytes()
        decoder = decoder_for_file(data)
        times: list[tuple[float, float]] = []
        for _ in range(args.runs + 1):
            t0 = time.perf_counter()
            got = decoder.read(data)
            t1 = time.perf_counter()
            decoder.render_tokens(got, "fidelity")
            times.append((t1 - t0, time.perf_counter() - t1))
        tokens, image = ([t[i] for t in times[1:]] for i in (0, 1))
        total[0] += statistics.median(tokens)
        total[1] += statistics.median(image)
        print(
            f"| {path.name} | {len(data)} | {statistics.median(tokens):.4f} / {min(tokens):.4f} "
            f"| {statistics.median(image):.4f} / {min(image):.4f} |"
        )
    print(f"| sum of medians | | {total[0]:.4f} | {total[1]:.4f} |")


if __name__ == "__main__":
    main()
