"""Old run folders and bundles keep working: tests/data/layout-2026-11 was written by the code
of 2026-11-29 (one flat TrainConfig); today's code loads the bundle, resumes both runs and
exports them."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from codec.engine.loading import load_codec
from codec.models.io import export_checkpoint, load_pqvae, save_bundle
from codec.train import TrainConfig, train
from codec.train.config import load_recipe

OLD = Path(__file__).resolve().parents[1] / "data" / "layout-2026-11"


def test_an_old_bundle_loads_and_codes():
    c = load_codec(OLD / "bundle.safetensors")
    img = np.asarray(Image.open(OLD / "images" / "im0.png").convert("RGB"))
    out = c.decompress(c.compress(img))
    assert out.shape == img.shape


def test_old_runs_resume_and_export(tmp_path):
    ae, em = tmp_path / "autoencoder", tmp_path / "entropy"
    shutil.copytree(OLD / "autoencoder", ae / "checkpoint")
    shutil.copytree(OLD / "entropy", em / "checkpoint")
    images = str(OLD / "images")
    common = dict(data=images, eval_data=images, amp="off", threads=1, ckpt_every_minutes=1e9, resume=True)
    tiny = {**load_recipe("tiny", "autoencoder"), "warmup_ae_steps": 2, "eval_every": 1000}
    result = train(TrainConfig("autoencoder", **{**tiny, **common, "out": str(ae), "steps": 8}))
    assert result.metrics["psnr"] > 0
    assert load_pqvae(ae / "checkpoint").cfg.M == 2
    em_cfg = dict(
        em_dim=16, em_depth=1, em_decoder_depth=1, em_heads=2, token_crop=4, batch=2, eval_every=1000
    )
    train(
        TrainConfig("entropy", **em_cfg, **common, out=str(em), steps=5, autoencoder=str(ae / "checkpoint"))
    )
    import json

    assert json.loads((em / "checkpoint" / "state.json").read_text())["step"] == 5
    exported = export_checkpoint(ae / "checkpoint", tmp_path / "ae.safetensors")
    bundle = save_bundle(tmp_path / "b.safetensors", exported, em / "checkpoint")
    assert load_codec(bundle).autoencoder.cfg.K == 16
