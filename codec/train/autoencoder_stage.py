"""Training stage 1: the PQ-VAE (encoder, product quantizer, decoder), nested or not, on random
crops of the training photos; evaluations on the held-out photos (PSNR, MS-SSIM, code usage,
raw and unigram rates, per prefix m for nested models)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..format import schema
from ..models.io import read_pqvae_config
from ..models.pqvae import PQVAE, PQVAEConfig, random_prefix
from ..models.quantizer import greedy_code_order
from ..util.metrics import load_lpips, ms_ssim, psnr, quantize_uint8
from .config import AutoencoderConfig
from .data import InMemoryImages, list_images, load_rgb, random_crops, step_generator
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


@torch.no_grad()
def patch_pca(
    data: InMemoryImages, stride: int, dim: int, patches: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(basis [dim, 3*s*s], spread [dim], coefficients [patches, dim]): the leading eigenvectors
    of the second-moment matrix of ``patches`` random s x s patches of the training images
    (pixels in [0, 1]; uncentred, so the transform needs no bias and its first component is the
    patch mean), and those patches' coefficients in that basis."""
    crops = random_crops(data.images, patches, stride, seed, step=0)
    x = torch.stack(crops).reshape(patches, -1).double() / 255
    ev, vec = torch.linalg.eigh(x.T @ x / patches)
    basis = vec[:, -dim:].flip(1).T  # [dim, 3*s*s], largest first
    return basis.float(), ev[-dim:].flip(0).clamp_min(0).sqrt().float(), (x @ basis.T).float()


def model_config(
    cfg: AutoencoderConfig, data: InMemoryImages
) -> tuple[PQVAEConfig, tuple[torch.Tensor, torch.Tensor] | None]:
    """The PQ-VAE's config and, for a fresh model with a transform skip path, its initial patch
    transform (basis [D, 3*s*s], spread [D]; see :func:`patch_pca`).

    Product-residual quantization needs the order of its codes: a resumed run keeps its own, a
    warm start takes its source's (same groups and M), a fresh run chooses it greedily by squared
    error removed on the PCA coefficients of training patches (:func:`greedy_code_order`)."""
    mc = cfg.model_config()
    if not (cfg.groups or cfg.transform):
        return mc, None
    own = Path(cfg.out) / "checkpoint"
    source = own if cfg.resume and (own / "state.json").exists() else cfg.init
    if source:  # the weights come from there: only a missing code order is left to choose
        previous = read_pqvae_config(source)[0]
        if cfg.groups and previous.get("code_groups") and previous.get("groups") == cfg.groups:
            mc.code_groups = list(previous["code_groups"])[: cfg.M]
        if not cfg.groups or len(mc.code_groups) == cfg.M:
            return mc, None
    basis, spread, coefs = patch_pca(data, mc.stride, cfg.latent_dim, 20_000, cfg.seed)
    if cfg.groups:
        mc.code_groups = greedy_code_order(coefs, cfg.groups, cfg.M, cfg.K, cfg.max_stages)
    return mc, (basis, spread) if cfg.transform and not source else None


def make_model(cfg: AutoencoderConfig, data: InMemoryImages, device: torch.device) -> PQVAE:
    """The PQ-VAE of ``cfg`` on ``device``, its patch transform (if it has one) fitted to
    ``data``; with ``freeze_encoder`` only the decoder side learns."""
    mc, transform = model_config(cfg, data)
    model = PQVAE(mc).to(device)
    if transform is not None:
        model.init_transform(*(t.to(device) for t in transform))
    if cfg.freeze_encoder:  # the tokens stay those of --init: only the decoder side learns
        model.encoder.requires_grad_(False)
        model.quantizer.requires_grad_(False)
        if model.cfg.nested:
            model.fill.requires_grad_(False)  # part of the model id (codec.models.io.model_id)
    return model


def training_loss(
    cfg: AutoencoderConfig, x_hat: torch.Tensor, x: torch.Tensor, stats: dict, lpips_fn
) -> tuple[torch.Tensor, dict]:
    """(loss, logged numbers) of a batch's reconstruction ``x_hat`` of ``x`` [B, 3, H, W] in
    [0, 1]: MSE + the quantizer's commitment loss, plus MS-SSIM and LPIPS terms where weighted."""
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


def build(cfg: AutoencoderConfig) -> Run:
    """Trains (or resumes, or warm-starts) a PQ-VAE; rank 0 writes checkpoint, log and plots."""
    rank, world, device = start_run(cfg)
    data = InMemoryImages(cfg.data, cfg.crop, cfg.max_train_images)
    model = make_model(cfg, data, device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    start, loss_ema = resume_if_asked(cfg, model, opt, rank, device)
    ddp = wrap_ddp(model, world, broadcast_buffers=False)
    if cfg.msssim_weight and cfg.crop <= 160:
        raise ValueError("--msssim-weight needs --crop of at least 161 (5 MS-SSIM scales)")
    lpips_fn = load_lpips(device) if cfg.lpips_weight else None
    if cfg.data_on_device:
        data.to(device)
    eval_images = [load_rgb(p) for p in list_images(cfg.eval_data)[: cfg.eval_images]] if rank == 0 else []
    if rank == 0:
        print(
            f"PQ-VAE {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, stride {model.stride}, "
            f"M={cfg.M} K={cfg.K} (raw {model.cfg.raw_bpp:.4f} bpp); {len(data)} training images; "
            f"{world} process(es) on {device}"
        )
        if model.cfg.code_groups:
            print(f"code order (group of each code): {model.cfg.code_groups}")

    # Read once (a device sync per step otherwise): codebooks loaded by --resume or --init need
    # neither the warm-up without quantization nor k-means.
    codebooks_ready = [bool(model.quantizer.initialized)]

    @torch.no_grad()
    def init_codebooks(i: int) -> None:
        """k-means codebooks on the encoder outputs of ``cfg.kmeans_batches`` batches (of seeds
        the training batches do not use)."""
        crop, batch = cfg.crop_at(i)
        zs = []
        for k in range(max(1, cfg.kmeans_batches)):
            x = data.batch(batch, crop, cfg.seed + 1_000_003 * (k + 1), i, rank, cfg.max_downscale).to(device)
            with autocast_for(cfg, device):
                zs.append(model.encoder(x).float())
        q = model.quantizer
        q.init_from(torch.cat([q._split(z) for z in zs], 1))
        codebooks_ready[0] = True

    def step(i: int) -> tuple[torch.Tensor, dict]:
        crop, batch = cfg.crop_at(i)
        quantize = i >= cfg.warmup_ae_steps or codebooks_ready[0]
        if quantize and not codebooks_ready[0] and not cfg.freeze_encoder:
            init_codebooks(i)
        x = data.batch(batch, crop, cfg.seed, i, rank, cfg.max_downscale).to(device, non_blocking=True)
        prefix = None
        if model.cfg.nested:  # nested dropout (fractional prefixes, see random_prefix)
            g = step_generator(cfg.seed, i, rank, stream=2)
            hw = -(-crop // model.stride)
            prefix = random_prefix(batch, cfg.M, hw, hw, g).to(device)
        if cfg.freeze_encoder:
            model.encoder.eval()  # no codebook EMA updates or restarts
            model.quantizer.eval()
        with autocast_for(cfg, device):
            x_hat, _, stats = ddp(x, quantize=quantize, prefix=prefix)
        return training_loss(cfg, x_hat, x, stats, lpips_fn)

    def evaluate_now(done: int) -> dict | None:
        if not eval_images or not codebooks_ready[0]:
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
