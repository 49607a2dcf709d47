"""Training curve of a run (the flagship's): PSNR on its evaluation photos (Kodak up to step
20,000 of the flagship, then held-out BSDS500 test photos) at each evaluated rate point against
steps and CPU-hours, from the run's log.jsonl; a Markdown table and a plot.

    python bench/training_curve.py $CODEC_RUNS/flagship --threads 1 --out results/flagship_curve

CPU-hours = the run's wall time (``time_s`` of the logged steps, summed over resumed
segments) x the threads it trained with (logged per row; ``--threads`` for older logs).

With ``--rates 0.05,0.1,0.2,0.4`` (nested models) the columns are instead the PSNR at those
rates of each evaluation's curve (unigram bpp of the tokens, linear in log bpp: the ablation's
score, bench/ablation_score.py) and their mean; ``--init-eval DIR`` puts a run folder's
evaluation first as step 0 (the model the run started from, evaluated the same way).

    python bench/training_curve.py $CODEC_RUNS/prq_long --rates 0.05,0.1,0.2,0.4 --out results/prq_cpu_curve
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


def rate_columns(curve: list[dict], rates: list[float]) -> tuple[list[str], list[list[float | None]]]:
    """(column names, one row per evaluation): PSNR at each of ``rates`` (bpp) and their mean."""
    from ablation_score import curve as rate_curve  # bench/ is the script's folder
    from ablation_score import psnr_at

    rows = []
    for r in curve:
        at = [psnr_at(rate_curve(r), bpp) for bpp in rates]
        known = [v for v in at if v is not None]
        rows.append(at + [sum(known) / len(known) if len(known) == len(at) else None])
    return [f"PSNR @ {bpp:g} bpp" for bpp in rates] + ["mean"], rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder (with log.jsonl)")
    ap.add_argument("--threads", type=float, default=1, help="CPU threads the run trained with")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.png")
    ap.add_argument("--rates", default="", help="bpp list: PSNR at these rates of each evaluation")
    ap.add_argument("--init-eval", type=Path, default=None, help="run folder whose evaluation is step 0")
    args = ap.parse_args()
    curve = read_curve(args.run, args.threads)
    if not curve:
        raise SystemExit(f"no evaluation in {args.run}/log.jsonl yet")
    if args.init_eval:
        curve = [{**read_curve(args.init_eval)[-1], "step": 0, "cpu_s": 0.0}] + curve
    if args.rates:
        names, values = rate_columns(curve, [float(v) for v in args.rates.split(",")])
        for r, v in zip(curve, values):
            r.update(zip(names, v))
        keys, labels, digits = names, names, 3
    else:
        keys = sorted((k for k in curve[-1] if k.startswith("psnr_m")), key=lambda k: int(k[6:]))
        keys, labels, digits = keys + ["psnr"], [f"PSNR m={k[6:]}" for k in keys] + ["PSNR full"], 2
    head = ["step", "CPU-hours"] + labels
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in curve:
        vals = ["-" if r.get(k) is None else f"{r[k]:.{digits}f}" for k in keys]
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
        scale = "symlog" if args.init_eval else "log"  # step 0 on a log axis
        for k, label in zip(keys, labels):
            ax[0].plot([r["step"] for r in curve], [r.get(k) for r in curve], "o-", label=label)
            ax[1].plot([r["cpu_s"] / 3600 for r in curve], [r.get(k) for r in curve], "o-")
        ax[0].set(xlabel="step", ylabel="PSNR on the evaluation photos (dB)", xscale=scale)
        ax[1].set(xlabel="CPU-hours", ylabel="PSNR on the evaluation photos (dB)", xscale=scale)
        ax[0].legend()
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=100)
        print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
