"""Tests for codec.train.realism_stage: a second decoder trained against the discriminator
(tiny models, seconds)."""

import copy
import dataclasses

import pytest
import torch
from builders import tiny_config


def test_realism_stage_trains_the_decoder_only(tmp_path):
    """codec train --stage realism on tiny models: the decoder and the discriminator move,
    the autoencoder's file (and so its tokens) is untouched; both discriminators run."""
    from codec.models.io import load_pqvae
    from codec.train import TrainConfig, train
    from codec.train.checkpoint import load_checkpoint
    from codec.train.realism_stage import RealismModel

    train(tiny_config(tmp_path / "ae", steps=8, warmup_ae_steps=2))
    train(tiny_config(tmp_path / "lab", steps=8, warmup_ae_steps=2, channels="8,16,16", M=1, K=16))
    ae_path = tmp_path / "ae" / "run" / "checkpoint"
    before = (ae_path / "model.safetensors").read_bytes()
    for kind in ("vq", "binary"):
        cfg = tiny_config(
            tmp_path / "ae",
            "realism",
            out=str(tmp_path / kind),
            autoencoder=str(ae_path),
            label_model=str(tmp_path / "lab" / "run" / "checkpoint") if kind == "vq" else "",
            discriminator=kind,
            disc_channels="8,8,16,16",
            steps=4,
            eval_every=4,
        )
        result = train(cfg)
        assert "psnr" in result.metrics
        ae = load_pqvae(ae_path)
        dec = result.model.decoder.state_dict()
        assert any(not torch.equal(dec[k], v) for k, v in ae.decoder.state_dict().items())
        m = RealismModel(copy.deepcopy(ae.decoder), result.model.discriminator)
        load_checkpoint(tmp_path / kind / "checkpoint", m)
        assert all(torch.equal(m.decoder.state_dict()[k], v) for k, v in dec.items())
        assert result.model.discriminator.classes == (17 if kind == "vq" else 1)
    assert (ae_path / "model.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="--label-model"):
        train(dataclasses.replace(cfg, discriminator="vq", label_model=""))
    from codec.util.metrics import alexnet_weights_cached

    if not alexnet_weights_cached():  # LPIPS is asked for but cannot run: a clear error, no download
        with pytest.raises(RuntimeError, match="AlexNet"):
            train(dataclasses.replace(cfg, lpips_weight=1.0, out=str(tmp_path / "lp")))
    # A bundle gains the realism decoder without changing its model id: a file made before
    # decodes with either decoder, to the same tokens.
    import numpy as np

    from codec.cli import main
    from codec.engine.loading import load_codec
    from codec.errors import CodecError
    from codec.format.bitstream import FLAG_REALISM, unpack
    from codec.models.io import model_id, save_bundle

    em_cfg = dict(
        autoencoder=str(ae_path),
        data=cfg.data,
        eval_data=cfg.data,
        em_dim=16,
        em_depth=1,
        em_decoder_depth=1,
        em_heads=2,
        token_crop=4,
        batch=2,
        steps=3,
        eval_every=1000,
        eval_images=1,
        amp="off",
        threads=1,
        ckpt_every_minutes=1e9,
    )
    train(TrainConfig("entropy", out=str(tmp_path / "em"), **em_cfg))
    em = tmp_path / "em" / "checkpoint"
    plain = save_bundle(tmp_path / "plain.safetensors", ae_path, em)
    both = save_bundle(tmp_path / "both.safetensors", ae_path, em, realism=tmp_path / "vq" / "checkpoint")
    assert model_id(plain) == model_id(both)
    # --init BUNDLE continues the bundle's realism decoder; the discriminator starts fresh
    from safetensors.torch import load_file

    from codec.format import schema
    from codec.models.io import widened_tensors
    from codec.train.checkpoint import warm_start

    fresh = RealismModel(copy.deepcopy(ae.decoder), copy.deepcopy(result.model.discriminator))
    copied, skipped = warm_start(fresh, both, schema.STAGE_PREFIX["realism"])
    stored = widened_tensors(load_file(str(both)))  # the realism decoder's weights are int8 there
    raw = load_file(str(both))
    assert any(v.dtype == torch.int8 for k, v in raw.items() if k.startswith(schema.REALISM_DECODER))
    assert copied and all(k.startswith("decoder.") for k in copied)
    assert skipped and all(k.startswith("discriminator.") for k in skipped)
    for k in copied:
        assert torch.equal(fresh.state_dict()[k], stored["realism_" + k].float()), k
    old, new = load_codec(plain), load_codec(both)
    old.amp = new.amp = "off"  # torch in float32: the portable decoder's pixels within one level
    img = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    data = old.compress(img)
    assert not unpack(data)[0].flags & FLAG_REALISM and unpack(new.compress(img))[0].flags & FLAG_REALISM
    assert np.array_equal(new.decompress(data), old.decompress(data))  # same tokens, same fidelity decoder
    realism = new.decompress(data, decoder="realism")
    assert realism.shape == img.shape and not np.array_equal(realism, old.decompress(data))
    with pytest.raises(CodecError, match="no realism decoder"):
        old.decompress(data, decoder="realism")
    (tmp_path / "f.pqm").write_bytes(data)
    out = tmp_path / "r.png"
    assert (
        main(
            ["decode", str(tmp_path / "f.pqm"), "-o", str(out), "--model", str(both), "--decoder", "realism"]
        )
        == 0
    )
    from PIL import Image

    cli = np.asarray(Image.open(out)).astype(int)  # the torch-free decoder: within one level of torch's
    assert np.abs(cli - realism).max() <= 1 and np.abs(cli - old.decompress(data)).max() > 1
    with pytest.raises(ValueError, match="not a realism run"):
        save_bundle(tmp_path / "x.safetensors", ae_path, em, realism=em)
    # codec export BUNDLE --realism RUN: the bundle's realism decoder replaced, same model id
    import codec

    swapped = tmp_path / "swapped.safetensors"
    args = ["export", str(both), "--realism", str(tmp_path / "binary" / "checkpoint"), "-o", str(swapped)]
    assert main(args) == 0 and model_id(swapped) == model_id(both)
    binary = save_bundle(
        tmp_path / "bin.safetensors", ae_path, em, realism=tmp_path / "binary" / "checkpoint"
    )
    by_binary, by_swapped = load_codec(binary), load_codec(swapped)
    by_binary.amp = by_swapped.amp = "off"
    want = by_binary.decompress(data, decoder="realism")
    assert np.array_equal(by_swapped.decompress(data, decoder="realism"), want)
    assert not np.array_equal(want, realism)
    assert main(args) == 1  # never over an existing file
    portable = np.asarray(codec.decompress(data, str(swapped), decoder="realism"))
    assert np.abs(portable.astype(int) - want).max() <= 1  # the torch-free path, within one level
    with pytest.raises(CodecError, match="no realism decoder"):
        codec.decompress(data, str(plain), decoder="realism")


def binary_realism_config(tmp_path, **kw):
    """A 3-step binary-discriminator realism run over the tiny autoencoder in tmp_path/ae."""
    return tiny_config(
        tmp_path / "ae",
        "realism",
        out=str(tmp_path / "real"),
        autoencoder=str(tmp_path / "ae" / "run" / "checkpoint"),
        discriminator="binary",
        disc_channels="8,8,16,16",
        steps=3,
        **kw,
    )


def test_realism_stage_on_a_nested_model(tmp_path):
    """A nested product-residual autoencoder: the realism decoder trains over random prefixes
    (every rate) and is evaluated at each prefix asked for."""
    from codec.train import train

    kw = dict(M=3, latent_dim=24, groups=4, max_stages=2, transform=True, nested=True)
    train(tiny_config(tmp_path / "ae", steps=4, eval_every=4, warmup_ae_steps=2, **kw))
    result = train(binary_realism_config(tmp_path, eval_prefixes="1,2", eval_every=3, max_prefix=2))
    assert {"psnr", "psnr_m1", "psnr_m2"} <= set(result.metrics)
    assert result.metrics["psnr_m1"] < result.metrics["psnr"]  # fewer codes, a coarser picture
    with pytest.raises(ValueError, match="--max-prefix"):
        train(binary_realism_config(tmp_path, max_prefix=-1))


def _realism_worker(rank, world, port, cfg_dict):
    import os

    from safetensors.torch import save_file

    from codec.train import TrainConfig, train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = train(TrainConfig("realism", **cfg_dict))
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        save_file(state, f"{cfg_dict['out']}/rank{rank}.safetensors")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_train_one_realism_decoder(tmp_path):
    """The realism stage under two gloo processes: gradients are averaged, so both ranks end
    with the same decoder and discriminator (the stage cannot run under DDP's wrapper)."""
    from safetensors.torch import load_file
    from test_autoencoder_stage import _free_port

    from codec.train import train

    train(tiny_config(tmp_path / "ae", steps=6, warmup_ae_steps=2))
    cfg = binary_realism_config(tmp_path, eval_every=1000)
    torch.multiprocessing.spawn(
        _realism_worker, args=(2, _free_port(), dataclasses.asdict(cfg)), nprocs=2, join=True
    )
    w0, w1 = (load_file(str(tmp_path / "real" / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
