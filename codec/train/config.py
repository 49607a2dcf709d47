"""Training configuration: one flat dataclass; every field is a `codec train` flag."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..models.pqvae import PQVAEConfig


@dataclass
class TrainConfig:
    out: str = "runs/pqvae"  # run folder: checkpoint, log.jsonl, plots
    stage: str = "autoencoder"  # autoencoder (PQ-VAE), entropy (masked entropy model), baseline, realism
    autoencoder: str = ""  # --stage entropy: the frozen PQ-VAE (exported .safetensors or checkpoint folder)
    data: str = "../shared/data/train,../shared/data/imagenette/train"  # comma-separated folders
    eval_data: str = "../shared/data/kodak"  # evaluation only, never trained on
    max_train_images: int = 0  # 0: all
    eval_images: int = 24
    # model (see PQVAEConfig)
    channels: str = "64,96,128,192"
    blocks: int = 1
    latent_dim: int = 256
    M: int = 8
    K: int = 256
    attention: bool = False
    restart_threshold: float = 0.5
    # entropy model (--stage entropy)
    em_dim: int = 192
    em_depth: int = 4  # encoder blocks over the known positions
    em_decoder_depth: int = 2  # cross-attention blocks of the queries
    em_heads: int = 6
    token_crop: int = 16  # training crops of the token grid, positions per side
    token_span: int = 64  # crops get a random position-encoding offset in [0, span - crop]
    # learned baselines (--stage baseline): CompressAI architectures, trained the same way
    arch: str = "bmshj2018-hyperprior"  # or mbt2018-mean
    baseline_N: int = 128
    baseline_M: int = 192
    rd_lambda: float = 0.0067  # loss = lambda * 255^2 * MSE + bpp (CompressAI's quality 3)
    # realism decoder (--stage realism): frozen encoder/quantizer, decoder + discriminator
    label_model: str = ""  # the frozen M=1 VQ-VAE that labels 8x8 patches (checkpoint or exported file)
    discriminator: str = "vq"  # vq (K+1 classes, ILLM) or binary (the ablation)
    disc_channels: str = "64,128,256,256"
    adv_weight: float = 0.008  # ILLM
    mse_weight: float = 150.0  # ILLM's distortion scale
    d_lr_scale: float = 4.0  # discriminator lr = d_lr_scale * lr (ILLM: 4e-4 vs 1e-4)
    # optimisation
    crop: int = 128
    batch: int = 8
    lr: float = 4e-4
    steps: int = 100_000
    warmup_ae_steps: int = 300  # steps without quantization, then k-means codebook init
    msssim_weight: float = 0.0  # loss += w * (1 - MS-SSIM); needs crop >= 161
    lpips_weight: float = 0.0  # loss += w * LPIPS; needs AlexNet weights in the torch cache
    grad_clip: float = 1.0
    spike_factor: float = 10.0  # skip steps whose loss exceeds this x its running mean (0: off)
    max_minutes: float = 0.0  # stop (and checkpoint) after this wall time; 0: no limit
    # bookkeeping
    seed: int = 0
    log_every: int = 25
    eval_every: int = 500
    ckpt_every_minutes: float = 5.0
    plot: bool = False
    resume: bool = False
    init: str = (
        ""  # warm start: weights whose names and shapes match (checkpoint folder, exported file, bundle)
    )
    # hardware
    device: str = "auto"  # auto, cpu, cuda
    amp: str = "auto"  # auto (bf16 on CUDA and on CPUs with AMX), bf16, fp16, off
    threads: int = 0  # torch CPU threads, 0: default
    data_on_device: bool = False  # keep the training images on the GPU (GPU recipe)

    def model_config(self) -> PQVAEConfig:
        return PQVAEConfig(
            channels=[int(c) for c in self.channels.split(",")],
            blocks=self.blocks,
            latent_dim=self.latent_dim,
            M=self.M,
            K=self.K,
            attention=self.attention,
            restart_threshold=self.restart_threshold,
        )


PRESETS: dict[str, dict] = {
    # A single lent GPU for ~8 minutes (bench/train_gpu.sh): large batches, data on the GPU.
    "gpu": dict(
        batch=64,
        crop=256,
        lr=8e-4,
        max_minutes=8.0,
        eval_every=1000,
        ckpt_every_minutes=1.0,
        data_on_device=True,
        log_every=100,
        warmup_ae_steps=500,
    ),
    # Seconds on a CPU: tests and smoke runs.
    "tiny": dict(
        channels="8,16",
        latent_dim=16,
        M=2,
        K=16,
        crop=32,
        batch=2,
        steps=20,
        warmup_ae_steps=5,
        eval_every=10,
        eval_images=1,
        log_every=5,
        max_train_images=4,
    ),
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--name value; booleans as --name / --no-name)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named set of overrides")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, default=None, metavar=f.name.upper())


def from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig(**PRESETS.get(args.preset or "", {}))
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
