"""Learned baselines for the benchmark: CompressAI's architectures trained by our trainer on
the same photos (``codec train baseline --arch bmshj2018-hyperprior|mbt2018-mean``),
since pretrained weights cannot be downloaded here.

Loss as in CompressAI's examples: ``lambda * 255^2 * MSE + bpp`` (the likelihoods' bits per
pixel), plus the entropy bottleneck's auxiliary quantile loss. The auxiliary loss only reaches
the quantile parameters; as in CompressAI's recipe they learn 10x faster and stay out of the
gradient clipping (in our first run, at the model's learning rate, the auxiliary loss was still
~3,000 after 4,574 steps, and its gradient took part in the clipped norm). Evaluation codes
Kodak to real bytes with the model's own ``compress`` (CompressAI's rANS coder) and reports
bpp from those bytes and PSNR.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..format import schema
from ..models.baseline import build_baseline, compress_image, decompress_image
from .config import BaselineConfig
from .data import InMemoryImages, list_images, load_rgb
from .loop import Run, autocast_for, resume_if_asked, start_run, wrap_ddp


def build(cfg: BaselineConfig) -> Run:
    rank, world, device = start_run(cfg)
    model = build_baseline(cfg.arch, cfg.baseline_N, cfg.baseline_M).to(device)
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(
        [{"params": main}, {"params": aux, "lr": 10 * cfg.lr, "lr_scale": 10.0}], lr=cfg.lr
    )
    start, loss_ema = resume_if_asked(cfg, model, opt, rank, device)
    ddp = wrap_ddp(model, world)
    data = InMemoryImages(cfg.data, cfg.crop, cfg.max_train_images)
    eval_images = [load_rgb(p) for p in list_images(cfg.eval_data)[: cfg.eval_images]] if rank == 0 else []
    if rank == 0:
        print(
            f"{cfg.arch} N={cfg.baseline_N} M={cfg.baseline_M} lambda={cfg.rd_lambda}: "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; {len(data)} training images"
        )

    def step(i: int) -> tuple[torch.Tensor, dict]:
        x = data.batch(cfg.batch, cfg.crop, cfg.seed, i, rank).to(device)
        with autocast_for(cfg, device):
            out = ddp(x)
        mse = F.mse_loss(out["x_hat"].float(), x)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = sum(torch.log(v.float()).sum() for v in out["likelihoods"].values()) / (-math.log(2) * pixels)
        loss = cfg.rd_lambda * 255**2 * mse + bpp + model.aux_loss()
        return loss, {"mse_psnr": -10 * math.log10(max(mse.item(), 1e-12)), "bpp": bpp.item()}

    def evaluate(done: int) -> dict | None:
        if not eval_images:
            return None
        model.eval().cpu().update(force=True)
        nbytes, pixels, psnrs = 0, 0, []
        for im in eval_images:
            x = im.float()[None] / 255
            data_ = compress_image(model, x)
            y = (decompress_image(model, data_) * 255).round() / 255
            nbytes += len(data_)
            pixels += x.shape[-1] * x.shape[-2]
            psnrs.append(-10 * math.log10(F.mse_loss(y, x).item()))
        model.to(device).train()
        return {"bpp": 8 * nbytes / pixels, "psnr": sum(psnrs) / len(psnrs)}

    state = {
        schema.KIND: schema.KIND_BASELINE,
        schema.STATE_ARCH: cfg.arch,
        schema.STATE_N: cfg.baseline_N,
        schema.STATE_M: cfg.baseline_M,
        schema.STATE_LAMBDA: cfg.rd_lambda,
    }
    return Run(cfg, model, opt, step, evaluate, state, rank, world, device, start, loss_ema, clipped=main)
