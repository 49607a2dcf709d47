"""Tests for codec.train.entropy_stage: the masked entropy model over a frozen tiny PQ-VAE."""

import json

import torch
from builders import tiny_config

from codec.train import TrainConfig, train


def test_entropy_stage_trains_and_resumes(tmp_path):
    """Stage 2 over a frozen tiny PQ-VAE: bits per token fall, resume is bit for bit."""
    ae_cfg = tiny_config(tmp_path / "ae", steps=30, warmup_ae_steps=5)
    train(ae_cfg)
    data = ae_cfg.data
    common = dict(
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
    full = TrainConfig("entropy", out=str(tmp_path / "em_a"), steps=60, **common)
    result = train(full)
    rows = [json.loads(r) for r in (tmp_path / "em_a" / "log.jsonl").read_text().splitlines()]
    bits = [r["bits_per_token"] for r in rows if "bits_per_token" in r]
    assert bits[-1] < bits[0]
    assert 0 < result.metrics["estimated_bpp"] < result.metrics["raw_bpp"] * 1.5
    train(TrainConfig("entropy", out=str(tmp_path / "em_b"), steps=30, **common))
    train(TrainConfig("entropy", out=str(tmp_path / "em_b"), steps=60, resume=True, **common))
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "em_a" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "em_b" / "checkpoint" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
