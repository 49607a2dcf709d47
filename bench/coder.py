"""Entropy-coder benchmark: logits in -> bytes out -> symbols, side by side in one run.

    python bench/coder.py [--ks 256,1024,4096] [--runs 3] [--threads 2] [--out FILE]

Every symbol has its own categorical distribution, given as float32 logits [N, K]
(N = 1M for K=256; for larger K, N shrinks so the logits stay at 1 GiB). Coders:

* ours: codec.entropy.RangeEncoder/RangeDecoder.encode_logits/decode_logits (softmax and
  quantization in C++, included in the time);
* constriction: stream.queue.RangeEncoder + Categorical(perfect=False), timed including
  the torch softmax it needs (float32, same threads);
* compressai: RansEncoder.encode_with_indexes / RansDecoder.decode_with_indexes, timed
  including its CDF preparation (softmax, pmf_to_quantized_cdf per row, list conversion);
  run on fewer symbols (--compressai-n) because it needs Python lists of every table.

Times are medians over --runs; throughput in Msym/s (1e6 symbols per second).
Overhead: coded bits over the information content of the symbols under the exact float
softmax (the ideal), in percent; for ours also over its own quantized distributions.
Symbols are drawn from the distributions (logits ~ N(0, 2^2), about 5.3 bits/symbol at K=256).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from codec.entropy import RangeDecoder, RangeEncoder, information_content, quantize_logits


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_time(fn, runs: int):
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def softmax32(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def ideal_bits(symbols: np.ndarray, logits: np.ndarray) -> float:
    """Information content under the exact softmax (float64), in bits."""
    total = 0.0
    for i in range(0, len(symbols), 65536):  # chunks: bounded memory
        x = torch.from_numpy(logits[i : i + 65536]).double()
        lp = torch.log_softmax(x, dim=-1)[torch.arange(x.shape[0]), torch.from_numpy(symbols[i : i + 65536])]
        total -= float(lp.sum()) / np.log(2)
    return total


def bench_ours(symbols, logits, runs, threads):
    def enc():
        e = RangeEncoder(threads=threads)
        e.encode_logits(symbols, logits)
        return e.finish()

    t_enc, data = median_time(enc, runs)
    t_dec, out = median_time(lambda: RangeDecoder(data, threads=threads).decode_logits(logits), runs)
    assert np.array_equal(out, symbols), "ours: round trip failed"
    return t_enc, t_dec, 8 * len(data)


def bench_constriction(symbols, logits, runs):
    import constriction

    model = constriction.stream.model.Categorical(perfect=False)

    def enc():
        e = constriction.stream.queue.RangeEncoder()
        e.encode(symbols, model, softmax32(logits))
        return e.get_compressed()

    t_enc, data = median_time(enc, runs)
    t_dec, out = median_time(
        lambda: constriction.stream.queue.RangeDecoder(data).decode(model, softmax32(logits)), runs
    )
    assert np.array_equal(out, symbols), "constriction: round trip failed"
    return t_enc, t_dec, 32 * len(data)


def bench_compressai(symbols, logits, runs):
    from compressai._CXX import pmf_to_quantized_cdf
    from compressai.ans import RansDecoder, RansEncoder

    n, k = logits.shape

    def tables():
        p = softmax32(logits).astype(np.float64)
        cdfs = [pmf_to_quantized_cdf(row.tolist() + [0.0], 16) for row in p]  # + tail mass slot
        return cdfs, [k + 2] * n, [0] * n, list(range(n))

    def enc():
        cdfs, lengths, offsets, idx = tables()
        return RansEncoder().encode_with_indexes(symbols.tolist(), idx, cdfs, lengths, offsets)

    def dec():
        cdfs, lengths, offsets, idx = tables()
        return RansDecoder().decode_with_indexes(data, idx, cdfs, lengths, offsets)

    t_enc, data = median_time(enc, runs)
    t_dec, out = median_time(dec, runs)
    assert np.array_equal(np.asarray(out), symbols), "compressai: round trip failed"
    return t_enc, t_dec, 8 * len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="256,1024,4096")
    ap.add_argument("--n", type=int, default=1_000_000, help="symbols for K=256")
    ap.add_argument("--max-elements", type=int, default=2**28, help="cap on N*K (logits memory / 4 bytes)")
    ap.add_argument("--compressai-n", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/coder.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    print(
        f"coder benchmark: threads={args.threads}, runs={args.runs} (median), logits ~ N(0, 4), "
        f"CPU: {cpu_name()}, {os.cpu_count()} CPUs visible"
    )
    hdr = f"{'K':>5} {'N':>8} {'coder':13} {'enc Msym/s':>11} {'dec Msym/s':>11} "
    hdr += f"{'overhead %':>11} {'vs own q. %':>12}"
    print(hdr)
    for k in [int(x) for x in args.ks.split(",")]:
        n = min(args.n, args.max_elements // k)
        logits = (rng.standard_normal((n, k), dtype=np.float32) * 2.0).astype(np.float32)
        q = quantize_logits(logits)
        u = rng.integers(0, 2**24, n)
        symbols = np.empty(n, np.int32)
        for i in range(0, n, 65536):
            symbols[i : i + 65536] = (np.cumsum(q[i : i + 65536], axis=1) > u[i : i + 65536, None]).argmax(1)
        del q
        ideal = ideal_bits(symbols, logits)
        own = information_content(symbols, logits)
        results = {"ours": bench_ours(symbols, logits, args.runs, args.threads)}
        try:
            results["constriction"] = bench_constriction(symbols, logits, args.runs)
        except ImportError:
            print("  constriction not installed: skipped")
        nc = min(n, args.compressai_n)
        try:
            results["compressai"] = bench_compressai(symbols[:nc], logits[:nc], args.runs)
        except ImportError:
            print("  compressai not installed: skipped")
        for name, (te, td, bits) in results.items():
            nn = nc if name == "compressai" else n
            base = ideal if nn == n else ideal_bits(symbols[:nn], logits[:nn])
            row = dict(
                K=k,
                N=nn,
                coder=name,
                threads=args.threads,
                runs=args.runs,
                encode_s=te,
                decode_s=td,
                encode_msym_s=nn / te / 1e6,
                decode_msym_s=nn / td / 1e6,
                bits=bits,
                ideal_bits=base,
                overhead_percent=100 * (bits - base) / base,
                overhead_vs_own_quantized_percent=100 * (bits - own) / own if name == "ours" else None,
            )
            rows.append(row)
            own_s = f"{row['overhead_vs_own_quantized_percent']:12.5f}" if name == "ours" else f"{'':12}"
            print(
                f"{k:5d} {nn:8d} {name:13} {row['encode_msym_s']:11.2f} {row['decode_msym_s']:11.2f} "
                f"{row['overhead_percent']:11.5f} {own_s}"
            )
        by = {r["coder"]: r for r in rows if r["K"] == k}
        for other in ("constriction", "compressai"):
            if other in by:
                ours, them = by["ours"], by[other]
                enc_x = ours["encode_msym_s"] / them["encode_msym_s"]
                dec_x = ours["decode_msym_s"] / them["decode_msym_s"]
                print(f"{'':15}ours / {other}: encode x{enc_x:.1f}, decode x{dec_x:.1f}")
        out = Path(args.out)  # after every K, so a long run keeps what it measured
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"config": vars(args), "cpu": cpu_name(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
