"""Tests for codec.entropy.portable: the entropy models' logits (hence the range coder's
distributions, hence the files) are the same on every machine, thread count and library."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.entropy import _rangecoder
from codec.entropy.portable import PortableChannel, PortableTransformer
from codec.models.layered import LayeredEntropyModel
from codec.models.mim import MaskedEntropyModel, MIMConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "codec" / "data" / "sample.png"  # Kodak kodim23, 768 x 512


def numpy_params(model: torch.nn.Module) -> dict:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def test_transformer_matches_torch():
    # head dim 32 and 276 positions: the vector paths, their blocks of keys and their tails
    cfg = MIMConfig(M=2, K=64, dim=64, depth=2, decoder_depth=1, heads=2)
    m = randomized(MaskedEntropyModel(cfg))
    p = PortableTransformer(cfg.to_dict(), numpy_params(m))
    rng = np.random.default_rng(0)
    tok = rng.integers(0, 64, (2, 12, 23))
    perm = rng.permutation(276)
    for n_known in (0, 1, 130, 275):
        known, query = perm[:n_known], perm[n_known:]
        with torch.no_grad():
            ref = m(
                torch.from_numpy(tok)[None],
                torch.from_numpy(known)[None],
                torch.from_numpy(query)[None],
                (3, 5),
            )
        got = p.logits(tok, known, query, (3, 5))
        assert got.shape == (len(query), 2, 64) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref[0].numpy(), atol=2e-5 * max(1.0, float(ref.abs().max())))


def test_channel_model_matches_torch():
    cfg = MIMConfig(M=6, K=32, dim=32, heads=2, groups=[1, 2, 3], channel_dim=24, channel_depth=2)
    m = randomized(LayeredEntropyModel(cfg))
    p = PortableChannel(cfg.to_dict(), numpy_params(m.channel))
    tok = np.random.default_rng(1).integers(0, 32, (6, 9, 17))
    for g in (1, 2):
        with torch.no_grad():
            ref = m.group_logits(torch.from_numpy(tok)[None], g)[0].numpy()
        got = p.logits(tok, g)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=2e-5 * max(1.0, float(np.abs(ref).max())))


def test_float16_parameters_are_widened_exactly():
    """Bundles store weights as float16, handed to the extension as their bits: every one of
    the 65,536 values (zeros, subnormals, normals, infinities, NaNs) becomes the float32 that
    numpy widens it to. The channel model with zero weights returns its head's bias as logits:
    sub-vector j of symbol k reads bias row j * K + k."""
    cfg = MIMConfig(M=17, K=4096, dim=8, heads=1, groups=[1, 16], channel_dim=2, channel_depth=1)
    params = {
        k: np.zeros_like(v, dtype=np.float16)
        for k, v in numpy_params(LayeredEntropyModel(cfg).channel).items()
    }
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    params["head.bias"] = np.concatenate([np.zeros(4096, np.float16), every])
    half = PortableChannel(cfg.to_dict(), params)
    wide = PortableChannel(cfg.to_dict(), {k: v.astype(np.float32) for k, v in params.items()})
    tok = np.zeros((17, 1, 1), np.int64)
    got = half.logits(tok, 1)  # [1, 16, 4096]
    assert np.array_equal(got.reshape(-1), every.astype(np.float32), equal_nan=True)
    assert np.array_equal(got.view(np.uint32), wide.logits(tok, 1).view(np.uint32))


def shipped_default():
    from codec.engine.loading import get_codec

    return get_codec("default")


def test_shipped_model_matches_torch_and_ignores_threads_at_kodak_size():
    """The default (layered) model: its masked transformer (base layer) and its channel model."""
    c = shipped_default()
    em = c.entropy_model
    pm, pc = c.portable_models()["base"], c.portable_models()["channel"]
    rng = np.random.default_rng(2)
    tok = rng.integers(0, 256, (em.cfg.M, 32, 48))
    base = tok[: em.cfg.groups[0]]
    perm = rng.permutation(32 * 48)
    known, query = perm[:700], perm[700:]
    outs, channel = [], []
    for threads in (1, 2, 3):
        pm.threads = pc.threads = threads
        outs.append(pm.logits(base, known, query))
        channel.append(pc.logits(tok, 3))
    for o, ch in zip(outs[1:], channel[1:]):
        assert np.array_equal(o, outs[0]) and np.array_equal(ch, channel[0])  # bit for bit
    with torch.no_grad():
        ref = em.base(
            torch.from_numpy(base)[None], torch.from_numpy(known)[None], torch.from_numpy(query)[None]
        )
        ref_channel = em.group_logits(torch.from_numpy(tok)[None], 3)[0]
    np.testing.assert_allclose(outs[0], ref[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(
        channel[0], ref_channel.numpy(), atol=1e-4 * max(1.0, float(ref_channel.abs().max()))
    )


def test_bad_inputs_are_refused():
    cfg = MIMConfig(M=1, K=16, dim=16, depth=1, decoder_depth=1, heads=2)
    params = numpy_params(MaskedEntropyModel(cfg))
    p = PortableTransformer(cfg.to_dict(), params)
    with pytest.raises(ValueError, match="token out of range"):
        p.logits(np.full((1, 3, 3), 16), np.arange(3), np.arange(3, 9))
    with pytest.raises(ValueError, match="position out of range"):
        p.logits(np.zeros((1, 3, 3)), np.arange(3), np.array([9]))
    with pytest.raises(ValueError, match="was not given"):
        PortableTransformer(cfg.to_dict(), {k: v for k, v in params.items() if k != "head.bias"})
    with pytest.raises(ValueError, match="shape"):
        PortableTransformer(cfg.to_dict(), {**params, "head.bias": np.zeros(3, np.float32)})


def test_selftest_is_thread_independent():
    h = _rangecoder.portable_selftest(1)
    assert all(_rangecoder.portable_selftest(t) == h for t in (2, 3, 8))


# The self-test's logits and pixels as codec 0.5.0 computes them: the entropy model's arithmetic
# is part of the file format (a file decodes only where its logits are recomputed bit for bit)
# and the decoder's pixels are promised to be the same everywhere, so a faster kernel must
# leave this value alone.
SELFTEST_HASH = 0x336374808EEB26DD


def test_selftest_hash_is_pinned():
    assert _rangecoder.portable_selftest(1) == SELFTEST_HASH


# -- other builds: instruction sets, compilers, architectures ------------------------------------
SOURCES = [
    "csrc/portable.cc",
    "csrc/portable_decoder.cc",
    "csrc/portable_selftest.cc",
    "tests/native/portable_main.cc",
]
FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", "-Wno-psabi", "-Icsrc", "-pthread"]


def build_and_run(cxx: list[str], exe: Path, extra: list[str], run_prefix: list[str] = ()) -> str:
    p = subprocess.run(
        [*cxx, *FLAGS, *extra, *SOURCES, "-o", str(exe)], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = subprocess.run([*run_prefix, str(exe)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = out.stdout.split()
    assert a == b  # 1 and 3 threads
    return a


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def extension_hash() -> str:
    return f"{_rangecoder.portable_selftest(1):016x}"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 instruction sets")
def test_baseline_x86_64_and_native_builds_agree_with_the_extension(tmp_path):
    ext = extension_hash()
    # baseline x86-64 (SSE2, no AVX, no clones), the native CPU, and no optimisation at all
    assert build_and_run(["g++"], tmp_path / "base", ["-march=x86-64", "-DPIE_NO_CLONES"]) == ext
    assert build_and_run(["g++"], tmp_path / "native", ["-march=native", "-DPIE_NO_CLONES"]) == ext
    if _cpu_has("avx2"):  # the 16-register kernels (v8 blocks) where the extension here takes AVX-512's
        assert build_and_run(["g++"], tmp_path / "avx2", ["-march=haswell", "-DPIE_NO_CLONES"]) == ext
    assert build_and_run(["g++"], tmp_path / "o0", ["-O0"]) == ext
    if shutil.which("clang++"):
        assert build_and_run(["clang++"], tmp_path / "clang", ["-march=native"]) == ext


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
    reason="needs aarch64-linux-gnu-g++ and qemu-aarch64 (Debian: g++-aarch64-linux-gnu, qemu-user)",
)
def test_aarch64_build_under_qemu_agrees(tmp_path):
    got = build_and_run(["aarch64-linux-gnu-g++"], tmp_path / "arm", ["-static"], ["qemu-aarch64"])
    assert got == extension_hash()


# -- whole files across settings, in subprocesses ----------------------------------------------------
ENCODE_DECODE = r"""
import json, os, sys
import torch
torch.backends.mkldnn.enabled = os.environ["MKLDNN"] == "1"
from PIL import Image
from codec.engine.loading import get_codec
c = get_codec("default")
out = {}
if sys.argv[1] == "encode":
    data = c.compress(Image.open(sys.argv[2]))
    open(sys.argv[3], "wb").write(data)
else:  # the tokens only (what must not depend on the machine), checked against the layers' CRCs
    from codec.format import bitstream
    from codec.errors import CodecError
    for f in sys.argv[2:]:
        h, payload = bitstream.unpack(open(f, "rb").read())
        assert h.flags & bitstream.FLAG_PORTABLE
        try:
            c.decode_layers(h, payload, len(h.layer_bytes))
            out[f] = True
        except CodecError:
            out[f] = False
print(json.dumps({"threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.enabled, **out}))
"""


def settings() -> list[dict]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isas = ["default", "avx2"] + (["avx512"] if "avx512f" in flags else [])
    combos = [
        (1, "default", "1"),
        (2, "avx2", "0"),
        (3, "avx512", "1"),
        (2, "default", "0"),
        (1, "avx512", "0"),
        (3, "avx2", "1"),
    ]
    return [
        {"OMP_NUM_THREADS": str(t), "ATEN_CPU_CAPABILITY": isa, "MKLDNN": mk}
        for t, isa, mk in combos
        if isa in isas
    ]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="ATEN_CPU_CAPABILITY values are x86-64's")
def test_files_decode_across_threads_instruction_sets_and_mkldnn(tmp_path):
    """Each setting encodes Kodak's kodim23 with the shipped default model; every setting then
    decodes every file (the layers' token checksums prove identical tokens)."""
    runs = settings()
    files = []
    for i, env in enumerate(runs):
        f = tmp_path / f"s{i}.pqm"
        p = subprocess.run(
            [sys.executable, "-c", ENCODE_DECODE, "encode", str(SAMPLE), str(f)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, (env, p.stderr[-2000:])
        files.append(str(f))
    for env in runs:
        p = subprocess.run(
            [sys.executable, "-c", ENCODE_DECODE, "decode", *files],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, (env, p.stderr[-2000:])
        report = json.loads(p.stdout.strip().splitlines()[-1])
        assert report["mkldnn"] == (env["MKLDNN"] == "1")
        assert all(report[f] is True for f in files)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_threads():
    """DataLoader workers fork: the child must not wait on the parent's worker threads."""
    h = _rangecoder.portable_selftest(2)  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if _rangecoder.portable_selftest(2) == h else 3)
    deadline = 60
    import time

    t0 = time.time()
    while time.time() - t0 < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WEXITSTATUS(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung")
