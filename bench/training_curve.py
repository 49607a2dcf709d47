"""Training curve of a run (the flagship's): PSNR on its evaluation photos (Kodak up to step
20,000 of the flagship, then held-out BSDS500 test photos) at each evaluated rate point against
steps and CPU-hours, from the run's log.jsonl; a Markdown table and a plot.

    python bench/training_curve.py $CODEC_RUNS/flagship --threads 1 --out results/flagship_curve

CPU-hours = the run's wall time (``time_s`` of the logged steps, summed over resumed
segments) x the threads it trained with (logged per row; ``--threads`` for older logs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_curve(run: Path, threads: float = 1) -> list[dict]:
    """Evaluation rows of ``run/log.jsonl`` with the CPU time (s) spent when they were reached."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    cpu, last_t, out = 0.0, 0.0, []
    for r in rows:
        if "time_s" in r:  # a resumed segment restarts its clock at 0
            dt = r["time_s"] - last_t if r["time_s"] >= last_t else r["time_s"]
            cpu += dt * (r.get("threads") or threads)
            last_t = r["time_s"]
        elif "psnr" in r:
            out.append({**r, "cpu_s": cpu})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder (with log.jsonl)")
    ap.add_argument("--threads", type=float, default=1, help="CPU threads the run trained with")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.png")
    args = ap.parse_args()
    curve = read_curve(args.run, args.threads)
    if not curve:
        raise SystemExit(f"no evaluation in {args.run}/log.jsonl yet")
    keys = sorted((k for k in curve[-1] if k.startswith("psnr_m")), key=lambda k: int(k[6:]))
    head = ["step", "CPU-hours"] + [f"PSNR m={k[6:]}" for k in keys] + ["PSNR full"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in curve:
        vals = [f"{r.get(k, float('nan')):.2f}" for k in keys] + [f"{r['psnr']:.2f}"]
        lines.append(f"| {r['step']} | {r['cpu_s'] / 3600:.2f} | " + " | ".join(vals) + " |")
    table = "\n".join(lines)
    print(f"{args.run}: PSNR (dB) of the evaluations in log.jsonl (the run's --eval-data)\n{table}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table + "\n")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
        for k in keys + ["psnr"]:
            label = f"m={k[6:]}" if k != "psnr" else "full"
            ax[0].plot([r["step"] for r in curve], [r.get(k) for r in curve], "o-", label=label)
            ax[1].plot([r["cpu_s"] / 3600 for r in curve], [r.get(k) for r in curve], "o-")
        ax[0].set(xlabel="step", ylabel="PSNR on the evaluation photos (dB)", xscale="log")
        ax[1].set(xlabel="CPU-hours", ylabel="PSNR on the evaluation photos (dB)", xscale="log")
        ax[0].legend()
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=100)
        print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
