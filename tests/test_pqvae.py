"""Tests for codec.models.pqvae, the trainer and checkpoints (tiny configs, seconds)."""

import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from codec.models.io import export_checkpoint, load_pqvae
from codec.models.pqvae import PQVAE, PQVAEConfig, ResBlock
from codec.train import TrainConfig, train
from codec.train.checkpoint import load_checkpoint
from codec.train.config import PRESETS

TINY = PQVAEConfig(channels=[8, 16], latent_dim=16, M=2, K=16)


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (64, 48), (5, 100)])
def test_odd_image_sizes(size):
    torch.manual_seed(0)
    m = PQVAE(TINY).eval()
    x = torch.rand(2, 3, *size)
    idx = m.encode(x)
    assert idx.shape == (2, 2, -(-size[0] // 4), -(-size[1] // 4))
    y = m.decode(idx, size)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    x_hat, _, _ = m(x)
    assert x_hat.shape == x.shape


def test_decode_of_encode_matches_forward_in_eval():
    torch.manual_seed(0)
    m = PQVAE(TINY)
    m(torch.rand(2, 3, 16, 16))  # init codebooks
    m.eval()
    x = torch.rand(1, 3, 16, 16)
    x_hat, idx, _ = m(x)
    torch.testing.assert_close(m.decode(idx, (16, 16)), x_hat.clamp(0, 1))


def write_images(folder, n=2, size=(40, 48), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        yy, xx = np.mgrid[: size[0], : size[1]]
        img = np.stack([(xx * (3 + i)) % 256, (yy * 5) % 256, ((xx + yy) * (2 + i)) % 256], -1)
        img = (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
    return folder


def tiny_cfg(tmp_path, **kw):
    data = write_images(tmp_path / "data")
    base = dict(
        PRESETS["tiny"],
        out=str(tmp_path / "run"),
        data=str(data),
        eval_data=str(data),
        amp="off",
        threads=1,
        ckpt_every_minutes=1e9,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_model_overfits_two_images(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=150, warmup_ae_steps=30, eval_every=150, lr=3e-3, log_every=10)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] / 4, losses
    assert [r for r in rows if "psnr" in r][-1]["psnr"] > 18


def test_resume_is_bit_for_bit(tmp_path):
    full = tiny_cfg(tmp_path / "a", steps=16)
    train(full)
    half = tiny_cfg(tmp_path / "b", steps=8)
    train(half)
    resumed = tiny_cfg(tmp_path / "b", steps=16, resume=True)
    train(resumed)
    a = load_pqvae(tmp_path / "a" / "run" / "checkpoint").state_dict()
    b = load_pqvae(tmp_path / "b" / "run" / "checkpoint").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_round_trip_and_export(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=8)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoint"
    m = PQVAE(cfg.model_config())
    opt = torch.optim.Adam(m.parameters())
    state = load_checkpoint(ckpt, m, opt)
    assert state["step"] == 8 and state["config"]["M"] == 2
    assert len(opt.state) == len(list(m.parameters()))
    out = export_checkpoint(ckpt, tmp_path / "w.safetensors", command="codec train --preset tiny")
    m16 = load_pqvae(out)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(m16.state_dict()[k], v.half().to(v.dtype) if v.is_floating_point() else v)


def test_warm_start_copies_matching_modules_and_refits_the_quantizer(tmp_path):
    """--init: same-shaped modules are copied, a quantizer with another M is re-initialized
    (k-means) as a whole; a model with nothing in common is refused."""
    from codec.train.checkpoint import warm_start

    train(tiny_cfg(tmp_path / "a", steps=8, warmup_ae_steps=2))
    src = tmp_path / "a" / "run" / "checkpoint"
    old = load_pqvae(src).state_dict()
    cfg = tiny_cfg(tmp_path / "b", steps=0, M=4, init=str(src))
    fresh = PQVAE(cfg.model_config())
    copied, skipped = warm_start(fresh, src)
    new = fresh.state_dict()
    assert sorted(skipped) == sorted(k for k in new if k.startswith("quantizer."))
    assert copied and all(torch.equal(new[k], old[k]) for k in copied)
    assert not bool(new["quantizer.initialized"])  # k-means runs at the first quantized step
    train(tiny_cfg(tmp_path / "b", steps=4, M=4, warmup_ae_steps=0, init=str(src)))
    rows = (tmp_path / "b" / "run" / "log.jsonl").read_text()
    assert '"step": 4' in rows
    with pytest.raises(ValueError, match="no tensor matches"):
        warm_start(torch.nn.Linear(3, 3), src)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_dict):
    from safetensors.torch import save_file

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(**cfg_dict)
        result = train(cfg)
        save_file(
            {k: v.contiguous() for k, v in result.model.state_dict().items()},
            f"{cfg.out}/weights_rank{rank}.safetensors",
        )
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_end_identical(tmp_path):
    from dataclasses import asdict

    from safetensors.torch import load_file

    cfg = tiny_cfg(tmp_path, steps=12, warmup_ae_steps=4)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), asdict(cfg)), nprocs=2, join=True)
    w0 = load_file(f"{cfg.out}/weights_rank0.safetensors")
    w1 = load_file(f"{cfg.out}/weights_rank1.safetensors")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # and training did something: the codebooks were initialised from data on both ranks
    assert bool(w0["quantizer.initialized"])


def test_gpu_recipe_runs_on_cpu_with_a_tiny_config(tmp_path):
    """bench/train_gpu.sh end to end (autoencoder, entropy model, fp16 bundle) with the tiny
    preset on the CPU."""
    import subprocess
    import sys
    from pathlib import Path

    data = write_images(tmp_path / "data")
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        OUT=str(tmp_path / "gpu"),
        PYTHON=sys.executable,
        INIT="",
        DATA=str(data),
        EVAL=str(data),
    )
    p = subprocess.run(
        [
            "bash",
            "bench/train_gpu.sh",
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--amp",
            "off",
            "--threads",
            "1",
            "--crop",
            "32",
            "--batch",
            "2",
            "--token-crop",
            "8",
            "--em-dim",
            "32",
            "--em-heads",
            "4",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    from codec.zoo import load_codec

    c = load_codec(tmp_path / "gpu" / "flagship.safetensors")
    assert c.autoencoder.cfg.M == 2 and c.autoencoder.cfg.K == 16


def test_loss_options_fail_clearly(tmp_path, monkeypatch):
    import codec.metrics

    with pytest.raises(ValueError, match="crop"):
        train(tiny_cfg(tmp_path, msssim_weight=0.1))
    monkeypatch.setattr(codec.metrics, "alexnet_weights_cached", lambda: False)
    with pytest.raises(RuntimeError, match="AlexNet weights"):
        train(tiny_cfg(tmp_path, lpips_weight=0.1))


def test_entropy_stage_trains_and_resumes(tmp_path):
    """Stage 2 over a frozen tiny PQ-VAE: bits per token fall, resume is bit for bit."""
    ae_cfg = tiny_cfg(tmp_path / "ae", steps=30, warmup_ae_steps=5)
    train(ae_cfg)
    data = ae_cfg.data
    common = dict(
        stage="entropy",
        autoencoder=f"{ae_cfg.out}/checkpoint",
        data=data,
        eval_data=data,
        em_dim=32,
        em_depth=1,
        em_heads=2,
        token_crop=8,
        batch=4,
        lr=3e-3,
        eval_every=1000,
        log_every=5,
        amp="off",
        threads=1,
        ckpt_every_minutes=1e9,
        eval_images=1,
    )
    full = TrainConfig(out=str(tmp_path / "em_a"), steps=60, **common)
    result = train(full)
    rows = [json.loads(r) for r in (tmp_path / "em_a" / "log.jsonl").read_text().splitlines()]
    bits = [r["bits_per_token"] for r in rows if "bits_per_token" in r]
    assert bits[-1] < bits[0]
    assert 0 < result.metrics["estimated_bpp"] < result.metrics["raw_bpp"] * 1.5
    train(TrainConfig(out=str(tmp_path / "em_b"), steps=30, **common))
    train(TrainConfig(out=str(tmp_path / "em_b"), steps=60, resume=True, **common))
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "em_a" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "em_b" / "checkpoint" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigterm_checkpoints_and_stops(tmp_path):
    """A SIGTERM mid-run finishes the step, writes a checkpoint and exits cleanly."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    data = write_images(tmp_path / "data")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codec",
            "train",
            "--preset",
            "tiny",
            "--steps",
            "100000",
            "--data",
            str(data),
            "--eval-data",
            str(data),
            "--out",
            str(out),
            "--amp",
            "off",
            "--threads",
            "1",
            "--ckpt-every-minutes",
            "1000",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 60
    while not (out / "log.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    output = p.communicate(timeout=60)[0]
    assert p.returncode == 0, output[-2000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert 0 < state["step"] < 100000
    resumed = TrainConfig(
        **{
            **PRESETS["tiny"],
            "out": str(out),
            "data": str(data),
            "eval_data": str(data),
            "amp": "off",
            "threads": 1,
            "steps": state["step"] + 2,
            "resume": True,
            "lr": 1e-5,
        }
    )
    train(resumed)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == state["step"] + 2


def test_spike_guard_skips_bad_steps(tmp_path):
    from codec.train.loop import Run, fit

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 3)
    seen = []

    def step(i):
        loss = (model(x) ** 2).mean()
        if i == 5:
            loss = loss * float("nan")
        if i == 7:
            loss = loss * 1e6
        seen.append(model.weight.detach().clone())
        return loss, {}

    cfg = TrainConfig(
        out=str(tmp_path / "run"), steps=10, log_every=1, eval_every=1000, ckpt_every_minutes=1e9
    )
    fit(Run(cfg, model, opt, step, lambda done: None, {}, 0, 1, torch.device("cpu")))
    assert torch.equal(seen[5], seen[6]) and torch.equal(seen[7], seen[8])  # no update after 5 and 7
    assert not torch.equal(seen[4], seen[5])
    rows = [json.loads(r) for r in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum("skipped_spike" in r for r in rows) == 2


def nested_model(M=4):
    torch.manual_seed(0)
    m = PQVAE(PQVAEConfig(channels=[8, 16], latent_dim=4 * M, M=M, K=16, nested=True))
    m.train()
    m(torch.rand(2, 3, 32, 32))  # codebooks from data
    with torch.no_grad():
        m.fill.normal_()
    return m.eval()


def test_nested_prefix_decodes_with_the_fill():
    m = nested_model()
    x = torch.rand(1, 3, 32, 40)
    idx = m.encode(x)
    for k in (1, 2, 3):
        by_prefix = m.decode(idx[:, :k], (32, 40))
        # the same as the per-position count map, and as the forward pass with prefix k
        assert torch.equal(by_prefix, m.decode(idx, (32, 40), counts=torch.full((1, 8, 10), k)))
        with torch.no_grad():
            fwd = m(x, prefix=torch.tensor([k]))[0].clamp(0, 1)
        assert torch.allclose(fwd, by_prefix, atol=1e-5)
        # tokens past the prefix are never read
        other = idx.clone()
        other[:, k:] = (other[:, k:] + 1) % 16
        assert torch.equal(m.decode(other[:, :k], (32, 40)), by_prefix)
    assert not torch.equal(m.decode(idx[:, :1], (32, 40)), m.decode(idx, (32, 40)))
    with pytest.raises(ValueError):
        m.decode(idx[:, :0], (32, 40))


def test_plain_model_refuses_prefixes():
    m = PQVAE(PQVAEConfig(channels=[8, 16], latent_dim=16, M=4, K=16))
    with pytest.raises(ValueError, match="nested"):
        m(torch.rand(1, 3, 16, 16), prefix=torch.tensor([2]))
    with pytest.raises(ValueError, match="not nested"):
        m.decode(torch.zeros(1, 2, 4, 4, dtype=torch.long), (16, 16))
    assert not hasattr(m, "fill")


def test_random_prefix_covers_every_rate():
    from codec.models.pqvae import random_prefix

    c = random_prefix(4000, 6, 3, 3, torch.Generator().manual_seed(0))
    assert c.shape == (4000, 3, 3) and int(c.min()) == 1 and int(c.max()) == 6
    mixed = (c.flatten(1).max(1).values != c.flatten(1).min(1).values).float().mean()
    assert 0.5 < float(mixed) < 1.0  # most images mix two counts (fractional prefixes)
    assert abs(float(c.float().mean()) - 3.5) < 0.1  # r ~ U(1, 6): mean 3.5


def test_stage_blocks():
    cfg = PQVAEConfig(channels=[8, 16, 24], blocks=[1, 0, 2])
    assert cfg.stage_blocks == [1, 0, 2]
    m = PQVAE(cfg)
    n = sum(isinstance(layer, ResBlock) for layer in m.decoder.net)
    assert n == 3
    with pytest.raises(ValueError, match="one count per stage"):
        _ = PQVAEConfig(channels=[8, 16], blocks=[1, 2, 3]).stage_blocks


def test_lr_schedule_and_late_crops():
    cfg = TrainConfig(out="x", lr=1e-3, lr_schedule="cosine", lr_warmup_steps=10, steps=110, lr_min_ratio=0.1)
    lrs = [cfg.lr_at(i) for i in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # decays after the warm-up
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert TrainConfig(out="x").lr_at(57) == TrainConfig(out="x").lr
    with pytest.raises(ValueError):
        TrainConfig(out="x", lr_schedule="step").lr_at(0)
    cfg = TrainConfig(out="x", crop=128, batch=8, late_crop=256, late_crop_from=0.8, steps=100)
    assert cfg.crop_at(79) == (128, 8) and cfg.crop_at(80) == (256, 2)


def test_runs_dir(monkeypatch, tmp_path):
    from codec.train.config import runs_dir

    monkeypatch.setenv("CODEC_RUNS", str(tmp_path / "r"))
    assert runs_dir() == tmp_path / "r"
    assert TrainConfig(stage="entropy").out == str(tmp_path / "r" / "entropy")
    monkeypatch.delenv("CODEC_RUNS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert runs_dir() == tmp_path / "c" / "codec" / "runs"


def test_the_best_evaluation_is_kept(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=20, eval_every=5, warmup_ae_steps=0)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "psnr" in r]
    assert len(evals) == 4
    best = max(evals, key=lambda r: r["psnr"])
    state = json.loads((tmp_path / "run" / "best" / "state.json").read_text())
    assert state["step"] == best["step"] and state["metrics"]["psnr"] == best["psnr"]
    # the best folder is a checkpoint: it loads
    assert load_pqvae(tmp_path / "run" / "best").cfg.M == cfg.M
