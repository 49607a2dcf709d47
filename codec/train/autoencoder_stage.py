"""Training stage 1: the PQ-VAE (encoder, product quantizer, decoder), nested or not, on random
crops of the training photos; evaluations on the held-out photos (PSNR, MS-SSIM, code usage,
raw and unigram rates, per prefix m for nested models)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..metrics import load_lpips, ms_ssim, psnr, quantize_uint8
from ..models import schema
from ..models.pqvae import PQVAE, random_prefix
from .config import AutoencoderConfig
from .data import InMemoryImages, list_images, load_rgb, step_generator
from .loop import Run, autocast_for, resume_if_asked, start_run, wrap_ddp


def eval_prefixes(cfg: AutoencoderConfig) -> list[int]:
    """The prefix lengths m a nested model is evaluated at (none for other models)."""
    if not cfg.nested:
        return []
    if cfg.eval_prefixes:
        return [int(m) for m in cfg.eval_prefixes.split(",")]
    return sorted({2, cfg.M // 2, cfg.M})


@torch.no_grad()
def evaluate(
    model: PQVAE, images: list[torch.Tensor], device: torch.device, prefixes: list[int] = ()
) -> dict:
    """PSNR / MS-SSIM of quantized reconstructions (rounded to uint8), code usage, rates.

    images: uint8 [3, H, W] each, evaluated one at a time at full size. ``prefixes`` (nested
    models): also PSNR / MS-SSIM / raw and unigram bpp of the first m sub-vectors, per m
    (keys ``psnr_m{m}`` ...).
    """
    was_training = model.training
    model.eval()
    M = model.cfg.M
    ms = sorted(set(prefixes) | {M})
    psnrs: dict[int, list[float]] = {m: [] for m in ms}
    ssims: dict[int, list[float]] = {m: [] for m in ms}
    counts, pixels, positions = None, 0, 0
    for im in images:
        x = im.to(device).float().unsqueeze(0) / 255
        idx = model.encode(x)
        for m in ms:
            y = quantize_uint8(model.decode(idx[:, :m], x.shape[-2:]))
            psnrs[m].append(float(psnr(y, x)))
            s = ms_ssim(y, x)
            if s is not None:
                ssims[m].append(float(s))
        c = torch.stack([torch.bincount(idx[0, j].flatten(), minlength=model.cfg.K) for j in range(M)])
        counts = c if counts is None else counts + c
        pixels += x.shape[-1] * x.shape[-2]
        positions += idx.shape[-1] * idx.shape[-2]
    model.train(was_training)
    p = counts.double() / counts.sum(-1, keepdim=True)
    ent = -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)  # bits per token, per sub-vector
    out = {
        "psnr": sum(psnrs[M]) / len(psnrs[M]),
        "ms_ssim": sum(ssims[M]) / len(ssims[M]) if ssims[M] else None,
        "raw_bpp": model.cfg.raw_bpp,
        "unigram_bpp": float(ent.sum()) * positions / pixels,
        "perplexity": [round(float(v), 1) for v in torch.exp2(ent)],
    }
    for m in ms[:-1]:
        out[f"psnr_m{m}"] = sum(psnrs[m]) / len(psnrs[m])
        out[f"ms_ssim_m{m}"] = sum(ssims[m]) / len(ssims[m]) if ssims[m] else None
        out[f"unigram_bpp_m{m}"] = float(ent[:m].sum()) * positions / pixels
    return out


def build(cfg: AutoencoderConfig) -> Run:
    """Trains (or resumes, or warm-starts) a PQ-VAE; rank 0 writes checkpoint, log and plots."""
    rank, world, device = start_run(cfg)
    model = PQVAE(cfg.model_config()).to(device)
    if cfg.freeze_encoder:  # the tokens stay those of --init: only the decoder side learns
        model.encoder.requires_grad_(False)
        model.quantizer.requires_grad_(False)
        if model.cfg.nested:
            model.fill.requires_grad_(False)  # part of the model id (codec.models.io.model_id)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    start, loss_ema = resume_if_asked(cfg, model, opt, rank, device)
    ddp = wrap_ddp(model, world, broadcast_buffers=False)
    if cfg.msssim_weight and cfg.crop <= 160:
        raise ValueError("--msssim-weight needs --crop of at least 161 (5 MS-SSIM scales)")
    lpips_fn = load_lpips(device) if cfg.lpips_weight else None
    data = InMemoryImages(cfg.data, cfg.crop, cfg.max_train_images)
    if cfg.data_on_device:
        data.to(device)
    eval_images = [load_rgb(p) for p in list_images(cfg.eval_data)[: cfg.eval_images]] if rank == 0 else []
    if rank == 0:
        print(
            f"PQ-VAE {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, stride {model.stride}, "
            f"M={cfg.M} K={cfg.K} (raw {model.cfg.raw_bpp:.4f} bpp); {len(data)} training images; "
            f"{world} process(es) on {device}"
        )

    def step(i: int) -> tuple[torch.Tensor, dict]:
        crop, batch = cfg.crop_at(i)
        x = data.batch(batch, crop, cfg.seed, i, rank).to(device, non_blocking=True)
        prefix = None
        if model.cfg.nested:  # nested dropout (fractional prefixes, see random_prefix)
            g = step_generator(cfg.seed, i, rank, stream=2)
            hw = -(-crop // model.stride)
            prefix = random_prefix(batch, cfg.M, hw, hw, g).to(device)
        if cfg.freeze_encoder:
            model.encoder.eval()  # no codebook EMA updates or restarts
            model.quantizer.eval()
        with autocast_for(cfg, device):
            x_hat, _, stats = ddp(x, quantize=i >= cfg.warmup_ae_steps, prefix=prefix)
        mse = F.mse_loss(x_hat.float(), x)
        loss = mse + stats["commit_loss"]
        if cfg.msssim_weight:
            loss = loss + cfg.msssim_weight * (1 - ms_ssim(x_hat.float().clamp(0, 1), x).mean())
        if lpips_fn is not None:
            loss = loss + cfg.lpips_weight * lpips_fn(x_hat.float() * 2 - 1, x * 2 - 1).mean()
        numbers = {
            "mse_psnr": -10 * math.log10(max(mse.item(), 1e-12)),
            "commit": stats["commit_loss"].item(),
        }
        if stats["perplexity"] is not None:
            numbers["batch_perplexity"] = float(stats["perplexity"].mean())
        return loss, numbers

    def evaluate_now(done: int) -> dict | None:
        if not eval_images or done <= cfg.warmup_ae_steps:
            return None
        return evaluate(model, eval_images, device, eval_prefixes(cfg))

    return Run(
        cfg,
        model,
        opt,
        step,
        evaluate_now,
        {schema.STATE_MODEL_CONFIG: model.cfg.to_dict()},
        rank,
        world,
        device,
        start,
        loss_ema,
    )
