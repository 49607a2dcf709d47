"""Training configuration: one flat dataclass; every field is a `codec train` flag."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path


def runs_dir() -> Path:
    """Where run folders live by default: ``$CODEC_RUNS``, else the user cache
    (``$XDG_CACHE_HOME/codec/runs`` or ``~/.cache/codec/runs``), outside any work tree so
    that long runs survive a fresh checkout."""
    if os.environ.get("CODEC_RUNS"):
        return Path(os.environ["CODEC_RUNS"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "codec" / "runs"


# Training photos and the held-out photos that training runs evaluate on (and keep their
# best state by). Kodak is the benchmark set: never trained on, and never used to choose
# among checkpoints either.
TRAIN_PHOTOS = ",".join(f"../shared/data/train/{f}" for f in ("bsds500/train", "bsds500/val", "sun_hays80"))
HELD_OUT_PHOTOS = "../shared/data/train/bsds500/test"


@dataclass
class TrainConfig:
    out: str = ""  # run folder: checkpoint, log.jsonl, plots
    stage: str = "autoencoder"  # autoencoder (PQ-VAE), entropy (masked entropy model), baseline, realism
    autoencoder: str = ""  # --stage entropy: the frozen PQ-VAE (exported .safetensors or checkpoint folder)
    data: str = TRAIN_PHOTOS + ",../shared/data/imagenette/train"  # comma-separated folders
    eval_data: str = HELD_OUT_PHOTOS  # evaluation during training (never trained on; not Kodak)
    max_train_images: int = 0  # 0: all
    eval_images: int = 24  # evaluation images (the first of eval_data)
    # model (see PQVAEConfig)
    channels: str = "64,96,128,192"  # channels per downsampling stage (stride 2 ** count)
    blocks: str = "1"  # residual blocks per stage: one count, or one per stage (high resolution first)
    latent_dim: int = 256  # D, split into M sub-vectors
    M: int = 8  # sub-vectors per latent position
    K: int = 256  # codewords per codebook
    attention: bool = False  # self-attention at the lowest resolution
    restart_threshold: float = 0.5  # EMA usage below which a codeword restarts
    nested: bool = False  # nested dropout: every prefix of m sub-vectors decodes (one model, all rates)
    eval_prefixes: str = ""  # nested models: evaluate at these m (default: 2, M/2, M)
    # entropy model (--stage entropy)
    em_dim: int = 192  # transformer width
    em_depth: int = 4  # encoder blocks over the known positions
    em_decoder_depth: int = 2  # cross-attention blocks of the queries
    em_heads: int = 6  # attention heads
    em_groups: str = ""  # nested autoencoders: sizes of the layers, e.g. 1,1,2,2,2,4,4,4,4 (the default)
    em_channel_dim: int = 128  # layered: channels of the conv model of groups >= 1
    em_channel_depth: int = 4  # layered: its residual blocks
    token_crop: int = 16  # training crops of the token grid, positions per side
    token_span: int = 64  # crops get a random position-encoding offset in [0, span - crop]
    # learned baselines (--stage baseline): CompressAI architectures, trained the same way
    arch: str = "bmshj2018-hyperprior"  # or mbt2018-mean
    baseline_N: int = 128  # CompressAI's N (channels of the transforms)
    baseline_M: int = 192  # CompressAI's M (latent channels)
    rd_lambda: float = 0.0067  # loss = lambda * 255^2 * MSE + bpp (CompressAI's quality 3)
    # realism decoder (--stage realism): frozen encoder/quantizer, decoder + discriminator
    label_model: str = ""  # the frozen M=1 VQ-VAE that labels 8x8 patches (checkpoint or exported file)
    discriminator: str = "vq"  # vq (K+1 classes, ILLM) or binary (the ablation)
    disc_channels: str = "64,128,256,256"  # discriminator U-Net channels per level
    adv_weight: float = 0.008  # ILLM
    mse_weight: float = 150.0  # ILLM's distortion scale
    d_lr_scale: float = 4.0  # discriminator lr = d_lr_scale * lr (ILLM: 4e-4 vs 1e-4)
    # optimisation
    crop: int = 128  # training crops, pixels per side
    batch: int = 8  # crops per step (per process)
    lr: float = 4e-4  # learning rate (the peak of a cosine schedule)
    lr_schedule: str = "constant"  # constant, or cosine: linear warm-up, then cosine decay to `steps`
    lr_warmup_steps: int = 0  # cosine: steps of linear warm-up
    lr_min_ratio: float = 0.05  # cosine: the last step's lr as a share of lr
    late_crop: int = 0  # larger crops late in training (batch shrunk to keep pixels per step); 0: off
    late_crop_from: float = 0.8  # share of `steps` after which late_crop is used
    steps: int = 100_000  # the planned length of the run (a cosine schedule ends here)
    warmup_ae_steps: int = 300  # steps without quantization, then k-means codebook init
    msssim_weight: float = 0.0  # loss += w * (1 - MS-SSIM); needs crop >= 161
    lpips_weight: float = 0.0  # loss += w * LPIPS; needs AlexNet weights in the torch cache
    grad_clip: float = 1.0  # gradient-norm clip (0: off)
    spike_factor: float = 10.0  # skip steps whose loss exceeds this x its running mean (0: off)
    max_minutes: float = 0.0  # stop (and checkpoint) after this wall time; 0: no limit
    # bookkeeping
    seed: int = 0  # seeds the model, the batches and every random draw
    log_every: int = 25  # steps between log.jsonl rows
    eval_every: int = 500  # steps between evaluations (the best is kept in OUT/best)
    ckpt_every_minutes: float = 5.0  # minutes between checkpoints
    plot: bool = False  # write curves.png after each evaluation (needs matplotlib)
    resume: bool = False  # continue OUT/checkpoint (its weights, optimizer and step)
    init: str = ""  # warm start from matching weights (checkpoint folder, exported file, bundle)
    # hardware
    device: str = "auto"  # auto, cpu, cuda
    amp: str = "auto"  # auto (bf16 on CUDA and on CPUs with AMX or AVX512-BF16), bf16, fp16, off
    threads: int = 0  # torch CPU threads, 0: default
    data_on_device: bool = False  # keep the training images on the GPU (GPU recipe)

    def __post_init__(self) -> None:
        if not self.out:
            self.out = str(runs_dir() / self.stage)

    def model_config(self):
        """The autoencoder's :class:`~codec.models.pqvae.PQVAEConfig` (torch loads here, not
        when the CLI builds its flags)."""
        from ..models.pqvae import PQVAEConfig

        blocks = [int(b) for b in str(self.blocks).split(",")]
        return PQVAEConfig(
            channels=[int(c) for c in self.channels.split(",")],
            blocks=blocks[0] if len(blocks) == 1 else blocks,
            latent_dim=self.latent_dim,
            M=self.M,
            K=self.K,
            attention=self.attention,
            restart_threshold=self.restart_threshold,
            nested=self.nested,
        )

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (0-based): a pure function of the step, so resumes agree."""
        if self.lr_schedule == "constant":
            return self.lr
        if self.lr_schedule != "cosine":
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if step < self.lr_warmup_steps:
            return self.lr * (step + 1) / self.lr_warmup_steps
        t = min(1.0, (step - self.lr_warmup_steps) / max(1, self.steps - self.lr_warmup_steps))
        return self.lr * (self.lr_min_ratio + (1 - self.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    def crop_at(self, step: int) -> tuple[int, int]:
        """(crop, batch) of ``step``: ``late_crop`` after ``late_crop_from`` of the run, with the
        batch shrunk to keep the pixels per step."""
        if self.late_crop and step >= self.late_crop_from * self.steps:
            return self.late_crop, max(1, round(self.batch * self.crop**2 / self.late_crop**2))
        return self.crop, self.batch


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
    # The flagship: one nested model for every rate (s=16, up to 24 sub-vectors of 16 dims,
    # K=256: 0.03-0.75 bpp raw), a planned run with warm-up and cosine decay, larger crops for
    # the last fifth. The architecture won a 25-minute equal-budget ablation against wider
    # stride-8/16 stages with attention (docs/flagship.md). CPU: 1-2 threads.
    "flagship": dict(
        channels="64,96,128,192",
        blocks="1",
        latent_dim=384,
        M=24,
        K=256,
        nested=True,
        attention=False,
        eval_prefixes="2,6,12,24",
        crop=128,
        batch=8,
        late_crop=256,
        late_crop_from=0.8,
        lr=2e-4,  # 3e-4 diverged at step ~5,990 in bf16 (docs/flagship.md)
        lr_schedule="cosine",
        lr_warmup_steps=500,
        steps=60_000,
        eval_every=2000,
        eval_images=24,
        ckpt_every_minutes=5.0,
    ),
    # The flagship's entropy model (--autoencoder: the flagship): a small spatial base layer
    # (one sub-vector of 8 bits per position) and the channel-conditional layers.
    "flagship-entropy": dict(
        stage="entropy",
        em_dim=128,
        em_depth=3,
        em_decoder_depth=1,
        em_heads=4,
        em_channel_dim=96,
        em_channel_depth=3,
        batch=32,
        lr=5e-4,
        lr_schedule="cosine",
        lr_warmup_steps=200,
        steps=20_000,
        eval_prefixes="2,6,12,24",
        eval_every=1000,
        eval_images=24,
        data=TRAIN_PHOTOS,
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


def default_groups(M: int) -> list[int]:
    """Quality layers of a nested model of M sub-vectors: 1, 1, 2, 2, 2, then 4s (the last
    group takes what is left): fine layers at low rates, few entropy-model calls."""
    groups, left = [], M
    for size in [1, 1, 2, 2, 2] + [4] * M:
        if left <= 0:
            break
        groups.append(min(size, left))
        left -= groups[-1]
    return groups


def field_help() -> dict[str, str]:
    """Each TrainConfig field's comment in this file (its help text), and the section it sits in."""
    import inspect
    import re

    out, section = {}, ""
    for line in inspect.getsource(TrainConfig).splitlines():
        s = line.strip()
        if s.startswith("#"):
            section = s.lstrip("# ")
            continue
        m = re.match(r"(\w+): [^=]+=\s*(.*?)(?:#\s*(.*))?$", s)
        if m and m.group(1) not in ("def", "return"):
            out[m.group(1)] = m.group(3) or section
    return out


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--name value; booleans as --name / --no-name), each with
    its comment from the dataclass and its default."""
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named set of overrides")
    helps = field_help()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = "runs_dir()/STAGE" if f.name == "out" else repr(default)
        text = f"{helps.get(f.name) or f.name.replace('_', ' ')} (default: {shown})".replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, default=None, metavar=f.name.upper(), help=text)


def from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(
        **{**PRESETS.get(args.preset or "", {}), **{k: v for k, v in overrides.items() if v is not None}}
    )
