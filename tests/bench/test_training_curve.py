"""bench/training_curve.py: CPU-hours over resumed segments and PSNR at fixed rates."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def evaluation(step: int, shift: float) -> dict:
    """An evaluation row of a nested run: full rate and prefixes m = 2, 8 (unigram bpp)."""
    return {
        "step": step,
        "psnr": 30.0 + shift,
        "unigram_bpp": 0.8,
        "psnr_m2": 24.0 + shift,
        "unigram_bpp_m2": 0.05,
        "psnr_m8": 26.0 + shift,
        "unigram_bpp_m8": 0.2,
    }


def test_the_curve_sums_resumed_segments_and_reads_psnr_at_fixed_rates(tmp_path):
    run, start = tmp_path / "run", tmp_path / "start"
    run.mkdir()
    start.mkdir()
    rows = [
        {"step": 50, "loss": 1.0, "time_s": 1800.0, "threads": 1},
        evaluation(100, 0.1),
        {"step": 150, "loss": 1.0, "time_s": 900.0, "threads": 2},  # resumed: the clock restarts
        evaluation(200, 0.3),
    ]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (start / "log.jsonl").write_text(json.dumps(evaluation(1, 0.0)) + "\n")
    out = tmp_path / "curve"
    cmd = [sys.executable, "bench/training_curve.py", str(run), "--rates", "0.1,0.2,1.0"]
    cmd += ["--init-eval", str(start), "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = (out.with_suffix(".md")).read_text().splitlines()
    assert lines[0].split("|")[3].strip() == "PSNR @ 0.1 bpp"
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    # 0.1 bpp is halfway between 0.05 and 0.2 in log bpp; 1.0 bpp is past the curve: no mean
    assert cells[0] == ["0", "0.00", "25.000", "26.000", "-", "-"]
    assert cells[1] == ["100", "0.50", "25.100", "26.100", "-", "-"]
    assert cells[2] == ["200", "1.00", "25.300", "26.300", "-", "-"]  # + 900 s on 2 threads
    assert out.with_suffix(".png").stat().st_size > 0
