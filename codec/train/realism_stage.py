"""Stage 3 (``codec train --stage realism``): a second decoder for the same bitstream, trained
with the VQ-conditioned discriminator of ILLM (or the binary one, ``--discriminator binary``).

The PQ-VAE's encoder and quantizer (and so the tokens, the entropy model and the file) are
frozen; a copy of its decoder is fine-tuned with ``mse_weight * MSE + adv_weight * generator
loss`` (ILLM: 150 and 0.008; ``--lpips-weight`` adds LPIPS where its AlexNet weights are
cached) while the discriminator learns real -> label + 1, reconstruction -> 0. One AdamW,
betas (0.5, 0.9), two parameter groups: decoder at ``--lr`` (ILLM 1e-4), discriminator at
``d_lr_scale`` times that (ILLM 4e-4). The generator pass runs the discriminator with its
parameters frozen, so each loss only moves its own network.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..format import schema
from ..models.discriminator import (
    ConditionalUNetDiscriminator,
    LabelModel,
    binary_discriminator_loss,
    binary_generator_loss,
    vq_discriminator_loss,
    vq_generator_loss,
)
from ..models.io import load_pqvae
from ..models.pqvae import PQVAE, random_prefix
from ..util.metrics import load_lpips
from .autoencoder_stage import evaluate
from .config import RealismConfig
from .data import InMemoryImages, list_images, load_rgb, step_generator
from .loop import Run, autocast_for, resume_if_asked, start_run


class RealismModel(nn.Module):
    """What a realism run trains and checkpoints: ``decoder`` and ``discriminator``."""

    def __init__(self, decoder: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        self.discriminator = discriminator


def check_config(cfg: RealismConfig) -> None:
    """ValueError, before any work, for a configuration this stage cannot train."""
    if cfg.discriminator not in ("vq", "binary"):
        raise ValueError(f"--discriminator {cfg.discriminator!r}: vq or binary")
    if not cfg.autoencoder or (cfg.discriminator == "vq" and not cfg.label_model):
        raise ValueError(
            "--stage realism needs --autoencoder (the codec's PQ-VAE or bundle) and, for the vq "
            "discriminator, --label-model"
        )
    if cfg.crop % 16:
        raise ValueError("--stage realism needs --crop a multiple of 16")
    if cfg.max_prefix < 0:
        raise ValueError(f"--max-prefix {cfg.max_prefix}: 0 (all codes) or more")


def build(cfg: RealismConfig) -> Run:
    """Trains a second decoder of the autoencoder's tokens against a discriminator (VQ-
    conditioned, ILLM, or binary); the encoder and quantizer stay frozen."""
    check_config(cfg)
    rank, world, device = start_run(cfg)
    ae = load_pqvae(cfg.autoencoder, device).requires_grad_(False)
    labeler = LabelModel(load_pqvae(cfg.label_model, device)) if cfg.discriminator == "vq" else None
    classes = labeler.K + 1 if labeler is not None else 1
    disc = ConditionalUNetDiscriminator(
        ae.cfg.latent_dim, classes, tuple(int(c) for c in cfg.disc_channels.split(","))
    )
    model = RealismModel(copy.deepcopy(ae.decoder).requires_grad_(True), disc).to(device).train()
    opt = torch.optim.AdamW(
        [
            {"params": model.decoder.parameters()},
            {"params": disc.parameters(), "lr": cfg.lr * cfg.d_lr_scale, "lr_scale": cfg.d_lr_scale},
        ],
        lr=cfg.lr,
        betas=(0.5, 0.9),
    )
    start, loss_ema = resume_if_asked(cfg, model, opt, rank, device)
    data = InMemoryImages(cfg.data, cfg.crop, cfg.max_train_images)
    eval_images = [load_rgb(p) for p in list_images(cfg.eval_data)[: cfg.eval_images]] if rank == 0 else []
    lpips_fn = load_lpips(device) if cfg.lpips_weight else None  # RuntimeError without AlexNet weights
    prefixes = [int(m) for m in cfg.eval_prefixes.split(",") if m] or ([2, 8] if ae.cfg.nested else [])
    realism_ae = PQVAE(ae.cfg)  # for evaluation: the frozen encoder and quantizer, the trained decoder
    realism_ae.encoder, realism_ae.quantizer, realism_ae.decoder = ae.encoder, ae.quantizer, model.decoder
    if ae.cfg.nested:
        realism_ae.fill = ae.fill
    if rank == 0:
        print(
            f"realism decoder over {cfg.autoencoder} (frozen encoder, quantizer: same bitstream); "
            f"{cfg.discriminator} discriminator {sum(p.numel() for p in disc.parameters()) / 1e6:.2f}M "
            f"params, {classes} classes; label model {cfg.label_model or 'none'}"
        )

    def step(i: int) -> tuple[torch.Tensor, dict]:
        x = data.batch(cfg.batch, cfg.crop, cfg.seed, i, rank).to(device)
        prefix = None
        if ae.cfg.nested:  # every rate, the low ones (where realism shows) as often as the high
            g = step_generator(cfg.seed, i, rank, stream=2)
            hw = -(-cfg.crop // ae.stride)
            top = min(cfg.max_prefix or ae.cfg.M, ae.cfg.M)
            prefix = random_prefix(x.shape[0], top, hw, hw, g, log_uniform=True).to(device)
        with torch.no_grad():
            z_q = ae.quantized_latent(x, prefix)[0].float()
            labels = labeler(x) if labeler is not None else None
        with autocast_for(cfg, device):
            x_hat = model.decoder(z_q)[..., : x.shape[-2], : x.shape[-1]].float()
            real, fake = disc(x, z_q), disc(x_hat.detach(), z_q)
            disc.requires_grad_(False)  # the generator's pass moves only the decoder
            fake_g = disc(x_hat, z_q)
            disc.requires_grad_(True)
        if cfg.discriminator == "vq":
            d_loss, g_adv = vq_discriminator_loss(real, fake, labels), vq_generator_loss(fake_g, labels)
        else:
            d_loss, g_adv = binary_discriminator_loss(real, fake), binary_generator_loss(fake_g)
        mse = F.mse_loss(x_hat, x)
        loss = cfg.mse_weight * mse + cfg.adv_weight * g_adv + d_loss
        if lpips_fn is not None:  # ILLM's perceptual term, only where the AlexNet weights exist
            loss = loss + cfg.lpips_weight * lpips_fn(x_hat * 2 - 1, x * 2 - 1).mean()
        return loss, {
            "mse_psnr": -10 * math.log10(max(mse.item(), 1e-12)),
            "d_loss": d_loss.item(),
            "g_adv": g_adv.item(),
        }

    def evaluate_now(done: int) -> dict | None:
        if not eval_images:
            return None
        m = evaluate(realism_ae, eval_images, device, prefixes)
        model.train()
        return {k: v for k, v in m.items() if k.startswith(("psnr", "ms_ssim"))}

    state = {
        schema.KIND: schema.KIND_REALISM,
        schema.STATE_MODEL_CONFIG: ae.cfg.to_dict(),
        schema.STATE_DISCRIMINATOR: cfg.discriminator,
        schema.STATE_CLASSES: classes,
        schema.STATE_AUTOENCODER: cfg.autoencoder,
        schema.STATE_LABEL_MODEL: cfg.label_model,
    }
    return Run(
        cfg, model, opt, step, evaluate_now, state, rank, world, device, start, loss_ema, average_grads=True
    )
