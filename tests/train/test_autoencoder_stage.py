"""Tests for codec.train.autoencoder_stage: the PQ-VAE stage on two tiny images (seconds)."""

import json
import os
import socket

import pytest
import torch
from builders import tiny_config

from codec.models.io import load_pqvae
from codec.train import TrainConfig, train


def test_tiny_model_overfits_two_images(tmp_path):
    cfg = tiny_config(tmp_path, steps=150, warmup_ae_steps=30, eval_every=150, lr=3e-3, log_every=10)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] / 4, losses
    assert [r for r in rows if "psnr" in r][-1]["psnr"] > 18


def test_resume_is_bit_for_bit(tmp_path):
    full = tiny_config(tmp_path / "a", steps=16)
    train(full)
    half = tiny_config(tmp_path / "b", steps=8)
    train(half)
    resumed = tiny_config(tmp_path / "b", steps=16, resume=True)
    train(resumed)
    a = load_pqvae(tmp_path / "a" / "run" / "checkpoint").state_dict()
    b = load_pqvae(tmp_path / "b" / "run" / "checkpoint").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_loss_options_fail_clearly(tmp_path, monkeypatch):
    import codec.util.metrics

    with pytest.raises(ValueError, match="crop"):
        train(tiny_config(tmp_path, msssim_weight=0.1))
    monkeypatch.setattr(codec.util.metrics, "alexnet_weights_cached", lambda: False)
    with pytest.raises(RuntimeError, match="AlexNet weights"):
        train(tiny_config(tmp_path, lpips_weight=0.1))


def test_the_best_evaluation_is_kept(tmp_path):
    cfg = tiny_config(tmp_path, steps=20, eval_every=5, warmup_ae_steps=0)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "psnr" in r]
    assert len(evals) == 4
    best = max(evals, key=lambda r: r["psnr"])
    state = json.loads((tmp_path / "run" / "best" / "state.json").read_text())
    assert state["step"] == best["step"] and state["metrics"]["psnr"] == best["psnr"]
    # the best folder is a checkpoint: it loads
    assert load_pqvae(tmp_path / "run" / "best").cfg.M == cfg.M


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
        cfg = TrainConfig("autoencoder", **cfg_dict)
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

    cfg = tiny_config(tmp_path, steps=12, warmup_ae_steps=4)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), asdict(cfg)), nprocs=2, join=True)
    w0 = load_file(f"{cfg.out}/weights_rank0.safetensors")
    w1 = load_file(f"{cfg.out}/weights_rank1.safetensors")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # and training did something: the codebooks were initialised from data on both ranks
    assert bool(w0["quantizer.initialized"])


def test_freeze_encoder_adds_decoder_blocks_and_keeps_the_tokens(tmp_path):
    """--init a trained run, --extra-decoder-blocks, --freeze-encoder: the warm-started model
    decodes exactly as before (the new blocks start as the identity); training then moves only
    the decoder: encoder, codebooks and fill are unchanged, so are the tokens."""
    from codec.train.loop import warm_start

    base = tiny_config(tmp_path / "a", steps=40, warmup_ae_steps=10, nested=True, M=4)
    train(base)
    before = load_pqvae(tmp_path / "a" / "run" / "checkpoint")
    kw = dict(nested=True, M=4, init=str(tmp_path / "a" / "run" / "checkpoint"), warmup_ae_steps=0)
    cfg = tiny_config(
        tmp_path / "b", steps=20, lr=3e-3, extra_decoder_blocks="0,1", freeze_encoder=True, **kw
    )
    fresh = type(before)(cfg.model_config())
    copied, skipped = warm_start(fresh, cfg.init)
    assert skipped and all(k.startswith("decoder.extra.") for k in skipped)
    x = torch.rand(1, 3, 16, 24)
    idx = before.encode(x)
    assert torch.equal(fresh.eval().decode(idx[:, :2], (16, 24)), before.decode(idx[:, :2], (16, 24)))
    train(cfg)
    after = load_pqvae(tmp_path / "b" / "run" / "checkpoint")
    a, b = before.state_dict(), after.state_dict()
    for k in a:
        if k.startswith("decoder."):
            continue
        assert torch.equal(a[k], b[k]), k  # encoder, quantizer (codebooks, EMA state), fill
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    assert any(k.startswith("decoder.extra.") for k in b)
    assert torch.equal(after.encode(x), idx)


def test_product_residual_transform_model_trains_and_resumes(tmp_path):
    """The prq recipe's parts on tiny images: the code order is chosen from data, the transform
    starts as a PCA of patches (a step-0 model decodes like it), resume keeps both."""
    kw = dict(M=3, latent_dim=24, groups=4, max_stages=2, transform=True, nested=True, max_downscale=1.5)
    cfg = tiny_config(tmp_path, steps=8, eval_every=8, warmup_ae_steps=2, **kw)
    train(cfg)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    order = state["model_config"]["code_groups"]
    assert len(order) == 3 and max(order.count(g) for g in order) <= 2 and order[0] == 0  # group 0: the mean
    m = load_pqvae(tmp_path / "run" / "checkpoint")
    assert m.cfg.transform and m.cfg.G == 4
    # the linear encoder path is orthonormal at the start and still close to it after 8 steps
    w = m.encoder.linear.weight.reshape(24, -1)
    torch.testing.assert_close(w @ w.T, torch.eye(24), atol=0.05, rtol=0)
    train(tiny_config(tmp_path, steps=12, eval_every=100, resume=True, **kw))
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 12 and state["model_config"]["code_groups"] == order
