"""Short fuzz runs (the long ones: `make fuzz`). A crash, sanitizer report or an escaped
exception fails the test; the native run needs clang with libFuzzer."""

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.entropy import RangeEncoder
from codec.format import bitstream as bs

ROOT = Path(__file__).resolve().parents[1]


def seed_corpus(folder: Path) -> None:
    """Valid .pqm files (mode byte 0) and streams (mode 1), so the fuzzers start deep."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        enc = RangeEncoder()
        enc.encode_logits(rng.integers(0, 16, 50), rng.standard_normal((50, 16)).astype(np.float32))
        stream = enc.finish()
        h = bs.Header(
            height=int(rng.integers(1, 600)),
            width=int(rng.integers(1, 600)),
            stages=4,
            stages_present=i,
            alpha=2.2,
            order=bs.ORDERS[i % 3],
            token_crc=i,
        )
        (folder / f"pqm{i}").write_bytes(b"\x00" + bs.pack(h, stream))
        (folder / f"raw{i}").write_bytes(b"\x01" + stream)


def run(cmd: list[str], timeout: int) -> str:
    # libFuzzer's RSS limit (2 GB) reads the process's peak RSS, which on Linux a child
    # inherits from this one (pytest's, large after the model tests): count the 2 GB from there
    # (a single allocation over 2 GB still fails: -malloc_limit_mb).
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    cmd = [*cmd, f"-rss_limit_mb={inherited + 2048}", "-malloc_limit_mb=2048"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "Done" in out, out[-3000:]
    return out


def test_fuzz_python_parser_and_decoder(tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    seed_corpus(corpus)
    run([sys.executable, "fuzz/fuzz_pqm.py", "-runs=4000", "-seed=1", str(corpus)], timeout=240)


def test_fuzz_native_decoder(tmp_path):
    if shutil.which("clang++") is None:
        pytest.skip("clang++ with libFuzzer not installed (apt-get install clang libclang-rt-dev)")
    exe = tmp_path / "fuzz_decoder"
    build = subprocess.run(
        [
            "clang++",
            "-std=c++17",
            "-g",
            "-O1",
            "-fsanitize=fuzzer,address,undefined",
            "-fno-sanitize-recover=undefined",
            "-ffp-contract=off",
            "-Icsrc",
            "fuzz/fuzz_decoder.cc",
            "csrc/range_coder.cc",
            "csrc/batch.cc",
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if build.returncode != 0 and "fuzzer" in build.stderr:
        pytest.skip("libFuzzer runtime missing: " + build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr
    run([str(exe), "-runs=3000", "-seed=1"], timeout=240)
