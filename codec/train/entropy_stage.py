"""Training stage 2: the masked entropy model over the tokens of a frozen PQ-VAE.

Every training image is tokenized once by the frozen autoencoder; batches are random
crops of those token grids (a pure function of seed, step and rank, so resumable), with
a mask ratio ~ U(0, 1) per crop. Evaluation codes the held-out tokens (eval_data) with the real schedule
and reports the estimated bits per pixel (the information content the range coder
reaches within a few bytes), beside the raw bound M * log2(K) / s^2.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from ..engine.api import ImageCodec
from ..engine.layered_codec import LayeredImageCodec
from ..format import schema
from ..models.io import load_pqvae
from ..models.layered import TrainingLoss, build_entropy_model
from ..models.mim import MIMConfig
from .config import EntropyConfig, default_groups
from .data import list_images, load_rgb, random_crops, step_generator
from .loop import Run, autocast_for, resume_if_asked, start_run, wrap_ddp


@torch.no_grad()
def tokenize(autoencoder, images: list[torch.Tensor], device: torch.device, progress: bool = True):
    """Token grids int16 [M, h, w] (CPU) of uint8 images [3, H, W]."""
    out = []
    for im in tqdm(images, desc="tokenizing", disable=not progress):
        x = im.to(device).float().unsqueeze(0) / 255
        out.append(autoencoder.encode(x)[0].to(torch.int16).cpu())
    return out


class TokenCrops:
    def __init__(self, grids: list[torch.Tensor], crop: int) -> None:
        self.grids = [g for g in grids if min(g.shape[1:]) >= crop]
        if not self.grids:
            raise ValueError(f"no token grid of at least {crop}x{crop}")

    def batch(self, size: int, crop: int, seed: int, step: int, rank: int = 0) -> torch.Tensor:
        """int64 [size, M, crop, crop] random crops of the token grids (no flips: a flipped
        image does not have flipped tokens)."""
        return torch.stack(random_crops(self.grids, size, crop, seed, step, rank)).long()


def evaluate_layered(
    codec: LayeredImageCodec, eval_tokens: list, cfg: EntropyConfig, ae, model, device
) -> dict:
    """Estimated bpp of the held-out token grids at the rate points m of ``eval_prefixes``
    (default 2, M/2, M) and at the full rate."""
    M = ae.cfg.M
    ms = sorted({int(m) for m in cfg.eval_prefixes.split(",")} if cfg.eval_prefixes else {2, M // 2, M})
    bits, pixels = dict.fromkeys(ms, 0.0), 0
    for t in eval_tokens:
        base, per = codec.symbol_costs(t.long().numpy())
        for m in ms:
            bits[m] += base + per[:m].sum()
        pixels += t.shape[1] * t.shape[2] * ae.stride**2
    model.to(device).train()
    ae.to(device)
    out = {"estimated_bpp": bits[M] / pixels, "raw_bpp": ae.cfg.raw_bpp}
    out |= {f"estimated_bpp_m{m}": bits[m] / pixels for m in ms if m != M}
    return out


def build(cfg: EntropyConfig) -> Run:
    if not cfg.autoencoder:
        raise ValueError("--stage entropy needs --autoencoder (a PQ-VAE .safetensors or checkpoint folder)")
    rank, world, device = start_run(cfg)
    ae = load_pqvae(cfg.autoencoder, device)
    mcfg = MIMConfig(
        M=ae.cfg.M,
        K=ae.cfg.K,
        dim=cfg.em_dim,
        depth=cfg.em_depth,
        decoder_depth=cfg.em_decoder_depth,
        heads=cfg.em_heads,
    )
    if ae.cfg.nested:  # one layered entropy model for every rate of a nested autoencoder
        groups = [int(g) for g in cfg.em_groups.split(",")] if cfg.em_groups else default_groups(ae.cfg.M)
        mcfg = dataclasses.replace(
            mcfg, groups=groups, channel_dim=cfg.em_channel_dim, channel_depth=cfg.em_channel_depth
        )
    model = build_entropy_model(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    start, loss_ema = resume_if_asked(cfg, model, opt, rank, device)
    loss_fn = TrainingLoss(model)
    ddp = wrap_ddp(loss_fn, world)
    files = list_images(cfg.data)
    if cfg.max_train_images:
        files = files[: cfg.max_train_images]
    data = TokenCrops(tokenize(ae, [load_rgb(f) for f in files], device, rank == 0), cfg.token_crop)
    eval_tokens = (
        tokenize(ae, [load_rgb(p) for p in list_images(cfg.eval_data)[: cfg.eval_images]], device, False)
        if rank == 0
        else []
    )
    if rank == 0:
        print(
            f"entropy model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params over "
            f"M={mcfg.M} K={mcfg.K} tokens of {cfg.autoencoder}; {len(data.grids)} token grids; "
            f"{world} process(es) on {device}"
        )

    def step(i: int) -> tuple[torch.Tensor, dict]:
        tokens = data.batch(cfg.batch, cfg.token_crop, cfg.seed, i, rank).to(device)
        g = step_generator(cfg.seed, i, rank, stream=1)
        span = max(cfg.token_span - cfg.token_crop, 0) + 1
        offset = tuple(int(v) for v in torch.randint(0, span, (2,), generator=g))
        with autocast_for(cfg, device):
            loss, stats = ddp(tokens, g, offset)
        return loss, stats

    def evaluate(done: int) -> dict | None:
        if not eval_tokens:
            return None
        if mcfg.groups:
            return evaluate_layered(
                LayeredImageCodec(ae.cpu(), model.cpu().float()), eval_tokens, cfg, ae, model, device
            )
        codec = ImageCodec(ae.cpu(), model)
        bits, pixels = 0.0, 0
        for t in eval_tokens:
            bits += codec.tokens.encode_tokens(t.long().numpy())[1]
            pixels += t.shape[1] * t.shape[2] * ae.stride**2
        model.to(device).train()
        ae.to(device)
        return {"estimated_bpp": bits / pixels, "raw_bpp": ae.cfg.raw_bpp, "schedule": repr(codec.schedule)}

    state = {
        schema.KIND: schema.KIND_ENTROPY,
        schema.STATE_MIM_CONFIG: mcfg.to_dict(),
        schema.STATE_AUTOENCODER: str(Path(cfg.autoencoder)),
    }
    return Run(cfg, model, opt, step, evaluate, state, rank, world, device, start, loss_ema)
