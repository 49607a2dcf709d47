"""Learned baselines for the benchmark: CompressAI's architectures trained by our trainer on
the same photos (``codec train --stage baseline --arch bmshj2018-hyperprior|mbt2018-mean``),
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

from ..models import schema
from .config import TrainConfig
from .data import InMemoryImages, list_images, load_rgb
from .loop import Run, TrainResult, autocast_for, fit, resume_if_asked, start_run

ARCHS = ("bmshj2018-hyperprior", "mbt2018-mean")


def build_baseline(arch: str, N: int, M: int) -> torch.nn.Module:
    """A CompressAI model: ScaleHyperprior (Balle et al. 2018) or MeanScaleHyperprior
    (Minnen et al. 2018, without the autoregressive context)."""
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    if arch not in ARCHS:
        raise ValueError(f"unknown --arch {arch!r} (choose from {', '.join(ARCHS)})")
    return (ScaleHyperprior if arch == ARCHS[0] else MeanScaleHyperprior)(N, M)


def pack_strings(strings: list[list[bytes]], shape: tuple[int, int], size: tuple[int, int]) -> bytes:
    """One image's CompressAI strings as a file: H, W, latent h, w (2 bytes each), then each
    string with a 4-byte length. The file size is the rate the benchmark counts."""
    out = bytearray()
    for v in (*size, *shape):
        out += int(v).to_bytes(2, "little")
    for s in strings:
        out += len(s[0]).to_bytes(4, "little") + s[0]
    return bytes(out)


def unpack_strings(data: bytes) -> tuple[list[list[bytes]], tuple[int, int], tuple[int, int]]:
    H, W, h, w = (int.from_bytes(data[i : i + 2], "little") for i in range(0, 8, 2))
    strings, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "little")
        strings.append([data[i + 4 : i + 4 + n]])
        i += 4 + n
    return strings, (h, w), (H, W)


@torch.no_grad()
def compress_image(model, x: torch.Tensor) -> bytes:
    """float [1, 3, H, W] in [0, 1] -> bytes (padded to a multiple of 64, replicate)."""
    H, W = x.shape[-2:]
    ph, pw = -H % 64, -W % 64
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
    r = model.compress(xp)
    return pack_strings(r["strings"], tuple(r["shape"]), (H, W))


@torch.no_grad()
def decompress_image(model, data: bytes) -> torch.Tensor:
    strings, shape, (H, W) = unpack_strings(data)
    y = model.decompress(strings, shape)["x_hat"]
    return y[..., :H, :W].clamp(0, 1)


def train_baseline(cfg: TrainConfig) -> TrainResult:
    rank, world, device = start_run(cfg)
    model = build_baseline(cfg.arch, cfg.baseline_N, cfg.baseline_M).to(device)
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(
        [{"params": main}, {"params": aux, "lr": 10 * cfg.lr, "lr_scale": 10.0}], lr=cfg.lr
    )
    start, loss_ema = resume_if_asked(cfg, model, opt, rank, device)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
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
        "arch": cfg.arch,
        "N": cfg.baseline_N,
        "M": cfg.baseline_M,
        "lambda": cfg.rd_lambda,
    }
    run = Run(cfg, model, opt, step, evaluate, state, rank, world, device, start, loss_ema, clipped=main)
    return TrainResult(model, fit(run))
