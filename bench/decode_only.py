"""The decode-only install: a fresh virtual environment with `pip install codec` (no torch)
decodes every golden file; its install size; whole-process `codec decode` timing and peak
memory against the torch decoder and Pillow's AVIF, side by side.

    python bench/decode_only.py [--runs 7] [--venv /tmp/codec-decode] [--threads 2]

Builds a wheel of this checkout (compiles the extension), installs it into a new venv
(numpy, Pillow and safetensors come from the package index), and prints what it measured.
The torch figures run in this interpreter's environment (which has torch).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from codec.cli import PNG_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SAMPLE = ROOT / "codec" / "data" / "sample.png"

# Every arm writes its PNG as `codec decode` does (codec.cli.PNG_OPTIONS: zlib level 1, the
# run-length strategy), so that the timings differ by decoding alone
PNG = ", ".join(f"{k}={v!r}" for k, v in PNG_OPTIONS.items())
TORCH_DECODE = (
    "import sys; from PIL import Image; from codec.engine.loading import codec_for_file; "
    "data = open(sys.argv[1], 'rb').read(); "
    "Image.fromarray(codec_for_file(data).decompress(data)).save(sys.argv[2], " + PNG + ")"
)
AVIF_DECODE = "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], " + PNG + ")"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p


# Timing runs in a small driver process: a child forked from this one (which holds torch)
# would report this process's memory as its own peak.
DRIVER = r"""
import json, os, subprocess, sys, time
cmds, runs, env = json.loads(sys.argv[1]), int(sys.argv[2]), {**os.environ, **json.loads(sys.argv[3])}

def timed(cmd):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"failed: {' '.join(cmd)}: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024

for cmd in cmds.values():  # warm-up: file caches, the zoo's verified-hash cache
    timed(cmd)
rows = {name: [] for name in cmds}
for _ in range(runs):  # interleaved: A B C A B C ...
    for name, cmd in cmds.items():
        rows[name].append(timed(cmd))
print(json.dumps(rows))
"""


def timed_side_by_side(cmds: dict[str, list[str]], runs: int, env: dict) -> dict[str, list]:
    """{name: [(wall s, peak resident MiB), ...]} of ``runs`` interleaved runs per command."""
    p = run([sys.executable, "-c", DRIVER, json.dumps(cmds), str(runs), json.dumps(env)], timeout=3600)
    return json.loads(p.stdout)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "codec-decode"))
    args = ap.parse_args()
    venv, work = Path(args.venv), Path(tempfile.mkdtemp(prefix="codec-decode-"))

    # 1. the wheel and the decode-only install
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work), str(ROOT)], timeout=1800)
    wheel = next(work.glob("codec-*.whl"))
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--force-reinstall", str(wheel)], timeout=1800)
    has_torch = run([py, "-c", "import importlib.util as u; print(u.find_spec('torch') is not None)"])
    site = Path(run([py, "-c", "import site; print(site.getsitepackages()[0])"]).stdout.strip())
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB")
    print(f"decode-only venv {venv}: torch installed: {has_torch.stdout.strip()}")
    sizes = {p.name: du(p) for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")}
    print(
        f"site-packages {du(site) / 2**20:.1f} MiB in all; largest: "
        + ", ".join(f"{n} {b / 2**20:.1f}" for n, b in sorted(sizes.items(), key=lambda kv: -kv[1])[:6])
        + " (MiB)"
    )

    # 2. every golden file decodes there
    for f in sorted(GOLDEN.glob("*.pqm")):
        out = work / f"{f.stem}.png"
        run([str(venv / "bin" / "codec"), "decode", str(f), "-o", str(out)], timeout=300)
        a = np.asarray(Image.open(out)).astype(int)
        b = np.asarray(Image.open(GOLDEN / f"{f.stem}.png")).astype(int)
        diff = np.abs(a - b)
        print(
            f"golden {f.name}: decoded, mean |diff| {diff.mean():.4f}, max {diff.max()} "
            "levels vs its golden PNG (written by the torch decoder, amp=auto)"
        )

    # 3. whole-process timing, side by side (A B C A B C ...)
    from codec.engine.loading import get_codec

    img = Image.open(SAMPLE).convert("RGB")
    pqm = work / "kodim23.pqm"
    pqm.write_bytes(get_codec("default").compress(img, m=8))
    buf = io.BytesIO()
    q = 60
    while True:  # the AVIF file nearest in size, not larger
        buf = io.BytesIO()
        img.save(buf, format="AVIF", quality=q)
        if buf.tell() <= pqm.stat().st_size or q <= 1:
            break
        q -= 2
    avif = work / "kodim23.avif"
    avif.write_bytes(buf.getvalue())
    env = {"OMP_NUM_THREADS": str(args.threads)}
    cmds = {
        "codec decode (decode-only install, portable C++)": [
            str(venv / "bin" / "codec"),
            "decode",
            str(pqm),
            "-o",
            str(work / "a.png"),
            "--force",
        ],
        "torch decoder (this environment)": [
            sys.executable,
            "-c",
            TORCH_DECODE,
            str(pqm),
            str(work / "b.png"),
        ],
        "Pillow AVIF decode": [sys.executable, "-c", AVIF_DECODE, str(avif), str(work / "c.png")],
    }
    rows = timed_side_by_side(cmds, args.runs, env)
    print(
        f"\nkodim23 768x512: .pqm {pqm.stat().st_size} bytes (m=8), AVIF {avif.stat().st_size} bytes "
        f"(quality {q}); {args.runs} runs each, interleaved, median [min-max], "
        f"OMP_NUM_THREADS={args.threads}, {os.cpu_count()} CPUs"
    )
    print("| whole process | wall s | peak MiB |\n|---|---|---|")
    for name, r in rows.items():
        w, m = [x[0] for x in r], [x[1] for x in r]
        span = f"{statistics.median(w):.3f} [{min(w):.3f}-{max(w):.3f}]"
        print(f"| {name} | {span} | {statistics.median(m):.0f} |")


if __name__ == "__main__":
    main()
