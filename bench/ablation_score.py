"""Scores autoencoder runs of an equal-budget ablation on their held-out evaluation: PSNR of the
decoded tokens against the tokens' unigram entropy at every evaluated prefix m, interpolated
(linearly in log bpp) at fixed rates; the score is the mean PSNR over those rates. Reads each
run's final evaluation (``RUN/checkpoint/state.json``), so nothing is decoded here.

    python bench/ablation_score.py runs/ablation/a runs/ablation/b --rates 0.05,0.1,0.2,0.4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def curve(metrics: dict) -> list[tuple[float, float]]:
    """(unigram bpp, PSNR dB) of every evaluated prefix, the full rate included, by rate."""
    pts = [(metrics["unigram_bpp"], metrics["psnr"])]
    for key, value in metrics.items():
        if key.startswith("psnr_m"):
            pts.append((metrics["unigram_bpp_m" + key[6:]], value))
    return sorted(pts)


def psnr_at(pts: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR at ``bpp`` on the curve (linear in log bpp); None outside its range."""
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1:
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0)) if b1 > b0 else 0.0
            return p0 + t * (p1 - p0)
    return None


def score(run: Path, rates: list[float]) -> dict:
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    pts = curve(state["metrics"])
    at = {r: psnr_at(pts, r) for r in rates}
    known = [v for v in at.values() if v is not None]
    return {
        "run": run.name,
        "step": state["step"],
        "curve": pts,
        "psnr_at": at,
        "score": sum(known) / len(known) if len(known) == len(rates) else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--rates", default="0.05,0.1,0.2,0.4", help="bpp at which PSNR is compared")
    ap.add_argument("--json", type=Path, help="write the scores here")
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    rows = [score(r, rates) for r in a.runs]
    print("run  steps  " + "  ".join(f"PSNR@{r}" for r in rates) + "  mean   (held-out photos, unigram bpp)")
    for row in rows:
        at = row["psnr_at"]
        cells = "  ".join(f"{at[r]:9.2f}" if at[r] is not None else "      n/a" for r in rates)
        mean = f"{row['score']:.3f}" if row["score"] is not None else "n/a"
        print(f"{row['run']:4s} {row['step']:6d}  {cells}  {mean}")
    scored = [r for r in rows if r["score"] is not None]
    best = max(scored, key=lambda r: r["score"])["run"] if scored else None
    print(f"best: {best}")
    if a.json:
        a.json.write_text(json.dumps({"rates": rates, "runs": rows, "best": best}, indent=1))


if __name__ == "__main__":
    main()
