"""Tests for codec.train.checkpoint: atomic pickle-free checkpoints, export, warm starts."""

import pytest
import torch
from builders import tiny_config

from codec.format import schema
from codec.models.io import export_checkpoint, load_pqvae
from codec.models.pqvae import PQVAE
from codec.train import train
from codec.train.checkpoint import load_checkpoint


def test_checkpoint_round_trip_and_export(tmp_path):
    cfg = tiny_config(tmp_path, steps=8)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoint"
    m = PQVAE(cfg.model_config())
    opt = torch.optim.Adam(m.parameters())
    state = load_checkpoint(ckpt, m, opt)
    assert state["step"] == 8 and state["config"]["M"] == 2
    # the file names schema.py gives are the ones on disk (checkpoints written before keep loading)
    assert sorted(f.name for f in ckpt.iterdir()) == ["model.safetensors", "optim.safetensors", "state.json"]
    assert (schema.CHECKPOINT_MODEL, schema.CHECKPOINT_OPTIMIZER, schema.CHECKPOINT_STATE) == (
        "model.safetensors",
        "optim.safetensors",
        "state.json",
    )
    assert not [f for f in ckpt.parent.iterdir() if f.name != "checkpoint" and "checkpoint" in f.name]
    assert len(opt.state) == len(list(m.parameters()))
    out = export_checkpoint(ckpt, tmp_path / "w.safetensors", command="codec train --preset tiny")
    m16 = load_pqvae(out)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(m16.state_dict()[k], v.half().to(v.dtype) if v.is_floating_point() else v)


def test_warm_start_copies_matching_modules_and_refits_the_quantizer(tmp_path):
    """--init: same-shaped modules are copied, a quantizer with another M is re-initialized
    (k-means) as a whole; a model with nothing in common is refused."""
    from codec.train.checkpoint import warm_start

    train(tiny_config(tmp_path / "a", steps=8, warmup_ae_steps=2))
    src = tmp_path / "a" / "run" / "checkpoint"
    old = load_pqvae(src).state_dict()
    cfg = tiny_config(tmp_path / "b", steps=0, M=4, init=str(src))
    fresh = PQVAE(cfg.model_config())
    copied, skipped = warm_start(fresh, src)
    new = fresh.state_dict()
    assert sorted(skipped) == sorted(k for k in new if k.startswith("quantizer."))
    assert copied and all(torch.equal(new[k], old[k]) for k in copied)
    assert not bool(new["quantizer.initialized"])  # k-means runs at the first quantized step
    train(tiny_config(tmp_path / "b", steps=4, M=4, warmup_ae_steps=0, init=str(src)))
    rows = (tmp_path / "b" / "run" / "log.jsonl").read_text()
    assert '"step": 4' in rows
    with pytest.raises(ValueError, match="no tensor matches"):
        warm_start(torch.nn.Linear(3, 3), src)
