"""Training configuration: one small dataclass per stage (the fields every run shares in
:class:`RunConfig`), each field a flag of ``codec train STAGE`` with its comment as help text.
Named recipes are JSON files in ``codec/train/recipes/`` (see :func:`load_recipe`).

The flags are built here from the dataclasses (about 30 lines: argparse, help from each
field's comment) rather than by tyro or simple-parsing: no dependency, and ``codec --help``
stays free of torch and quick (tests/test_cli.py)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


def runs_dir() -> Path:
    """Where run folders live by default: ``$CODEC_RUNS``, else the user cache
    (``$XDG_CACHE_HOME/codec/runs`` or ``~/.cache/codec/runs``), outside any work tree so
    that long runs survive a fresh checkout."""
    if os.environ.get("CODEC_RUNS"):
        return Path(os.environ["CODEC_RUNS"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "codec" / "runs"


def data_root() -> str:
    """The data folder: ``$CODEC_DATA``, else ``../shared/data`` (this project's layout)."""
    return os.environ.get("CODEC_DATA") or "../shared/data"


def train_photos() -> str:
    """The training photos (BSDS500 train+val, Sun-Hays80, Urban100) under :func:`data_root`."""
    folders = ("bsds500/train", "bsds500/val", "sun_hays80", "urban100")
    return ",".join(f"{data_root()}/train/{f}" for f in folders)


def held_out_photos() -> str:
    """Photos that training runs evaluate on and keep their best state by (BSDS500 test).
    Kodak is the benchmark: never trained on, never used to choose among checkpoints."""
    return f"{data_root()}/train/bsds500/test"


@dataclass
class RunConfig:
    """What every stage's run has."""

    stage: ClassVar[str] = ""
    # data
    out: str = ""  # run folder: checkpoint, log.jsonl, plots (default: runs_dir()/STAGE)
    data: str = field(default_factory=lambda: train_photos() + f",{data_root()}/imagenette/train")  # folders
    eval_data: str = field(default_factory=held_out_photos)  # evaluation during training (never trained on)
    max_train_images: int = 0  # 0: all
    eval_images: int = 24  # evaluation images (the first of eval_data)
    # optimisation
    batch: int = 8  # crops per step (per process)
    lr: float = 4e-4  # learning rate (the peak of a cosine schedule)
    lr_schedule: str = "constant"  # constant, or cosine: linear warm-up, then cosine decay to `steps`
    lr_warmup_steps: int = 0  # cosine: steps of linear warm-up
    lr_min_ratio: float = 0.05  # cosine: the last step's lr as a share of lr
    steps: int = 100_000  # the planned length of the run (a cosine schedule ends here)
    grad_clip: float = 1.0  # gradient-norm clip (0: off)
    spike_factor: float = 10.0  # skip steps whose loss exceeds this x its running mean (0: off)
    average_weights: float = 0.0  # decay per step of a weight average for evaluations, exports (0: off)
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

    def __post_init__(self) -> None:
        if not self.out:
            self.out = str(runs_dir() / self.stage)

    def to_dict(self) -> dict:
        """The fields and the stage (what a checkpoint's state.json keeps)."""
        return {"stage": self.stage, **dataclasses.asdict(self)}

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


@dataclass
class AutoencoderConfig(RunConfig):
    """``codec train autoencoder``: the PQ-VAE (see PQVAEConfig)."""

    stage: ClassVar[str] = "autoencoder"
    # model
    channels: str = "64,96,128,192"  # channels per downsampling stage (stride 2 ** count)
    blocks: str = "1"  # residual blocks per stage: one count, or one per stage (high resolution first)
    latent_dim: int = 256  # D, split into M sub-vectors
    M: int = 8  # sub-vectors per latent position
    K: int = 256  # codewords per codebook
    attention: bool = False  # self-attention at the lowest resolution
    restart_threshold: float = 0.5  # EMA usage (assignments per step) below which a codeword restarts
    ema_decay: float = 0.99  # per step, of the codebooks' EMA statistics (closer to 1 for small batches)
    nested: bool = False  # nested dropout: every prefix of m sub-vectors decodes (one model, all rates)
    groups: int = 0  # product-residual quantization: latent groups G (0: one code per group, M groups)
    max_stages: int = 8  # residual codes per group at most (the order of codes is chosen from data)
    transform: bool = False  # a PCA patch transform at the stride as the skip path of encoder and decoder
    extra_decoder_blocks: str = ""  # decoder blocks added per stage (high res first), identity at start
    freeze_encoder: bool = False  # train the decoder alone: the tokens and entropy model stay valid
    eval_prefixes: str = ""  # nested models: evaluate at these m (default: 2, M/2, M)
    # training
    crop: int = 128  # training crops, pixels per side
    late_crop: int = 0  # larger crops late in training (batch shrunk to keep pixels per step); 0: off
    late_crop_from: float = 0.8  # share of `steps` after which late_crop is used
    max_downscale: float = 1.0  # crops come from photos shrunk by a random factor in [1, this] (less noise)
    warmup_ae_steps: int = 300  # steps without quantization, then k-means codebook init
    kmeans_batches: int = 8  # batches of encoder outputs the codebooks' k-means init runs on
    msssim_weight: float = 0.0  # loss += w * (1 - MS-SSIM); needs crop >= 161
    lpips_weight: float = 0.0  # loss += w * LPIPS; needs AlexNet weights in the torch cache
    data_on_device: bool = False  # keep the training images on the GPU (GPU recipe)

    def model_config(self):
        """The :class:`~codec.models.pqvae.PQVAEConfig` (torch loads here, not when the CLI
        builds its flags)."""
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
            ema_decay=self.ema_decay,
            nested=self.nested,
            transform=self.transform,
            groups=self.groups,
            extra_decoder_blocks=[int(b) for b in self.extra_decoder_blocks.split(",")]
            if self.extra_decoder_blocks
            else [],
        )

    def crop_at(self, step: int) -> tuple[int, int]:
        """(crop, batch) of ``step``: ``late_crop`` after ``late_crop_from`` of the run, with the
        batch shrunk to keep the pixels per step."""
        if self.late_crop and step >= self.late_crop_from * self.steps:
            return self.late_crop, max(1, round(self.batch * self.crop**2 / self.late_crop**2))
        return self.crop, self.batch


@dataclass
class EntropyConfig(RunConfig):
    """``codec train entropy``: the masked entropy model over a frozen PQ-VAE's tokens."""

    stage: ClassVar[str] = "entropy"
    autoencoder: str = ""  # the frozen PQ-VAE (exported .safetensors, bundle or checkpoint folder)
    data: str = field(default_factory=train_photos)  # comma-separated folders
    eval_prefixes: str = ""  # nested autoencoders: estimate the rate at these m (default: 2, M/2, M)
    # model (see MIMConfig)
    em_dim: int = 192  # transformer width
    em_depth: int = 4  # encoder blocks over the known positions
    em_decoder_depth: int = 2  # cross-attention blocks of the queries
    em_heads: int = 6  # attention heads
    em_groups: str = ""  # nested autoencoders: sizes of the layers, e.g. 1,1,2,2,2,4,4,4,4 (the default)
    em_channel_dim: int = 128  # layered: channels of the conv model of groups >= 1
    em_channel_depth: int = 4  # layered: its residual blocks
    # training
    token_crop: int = 16  # training crops of the token grid, positions per side
    token_span: int = 64  # crops get a random position-encoding offset in [0, span - crop]


@dataclass
class BaselineConfig(RunConfig):
    """``codec train baseline``: a CompressAI architecture trained the same way (a learned
    baseline for the benchmarks)."""

    stage: ClassVar[str] = "baseline"
    arch: str = "bmshj2018-hyperprior"  # or mbt2018-mean
    baseline_N: int = 128  # CompressAI's N (channels of the transforms)
    baseline_M: int = 192  # CompressAI's M (latent channels)
    rd_lambda: float = 0.0067  # loss = lambda * 255^2 * MSE + bpp (CompressAI's quality 3)
    crop: int = 128  # training crops, pixels per side


@dataclass
class RealismConfig(RunConfig):
    """``codec train realism``: a second decoder of a frozen PQ-VAE's tokens, trained with a
    VQ-conditioned discriminator (ILLM)."""

    stage: ClassVar[str] = "realism"
    autoencoder: str = ""  # the frozen PQ-VAE whose tokens the decoder learns to render
    label_model: str = ""  # the frozen M=1 VQ-VAE that labels 8x8 patches (checkpoint or exported file)
    discriminator: str = "vq"  # vq (K+1 classes, ILLM) or binary (the ablation)
    disc_channels: str = "64,128,256,256"  # discriminator U-Net channels per level
    adv_weight: float = 0.008  # ILLM
    mse_weight: float = 150.0  # ILLM's distortion scale
    d_lr_scale: float = 4.0  # discriminator lr = d_lr_scale * lr (ILLM: 4e-4 vs 1e-4)
    lpips_weight: float = 0.0  # loss += w * LPIPS; needs AlexNet weights in the torch cache
    crop: int = 128  # training crops, pixels per side
    eval_prefixes: str = ""  # nested autoencoders: also evaluate at these m (default: 2, 8)
    max_prefix: int = 0  # nested autoencoders: train at rates of 1..max_prefix codes (0: all M)


STAGES: dict[str, type[RunConfig]] = {
    c.stage: c for c in (AutoencoderConfig, EntropyConfig, BaselineConfig, RealismConfig)
}


def TrainConfig(stage: str = "autoencoder", **fields) -> RunConfig:  # noqa: N802 (a factory)
    """The config of ``stage`` with these fields; ValueError naming any field that the stage
    does not have (a flag that would be silently ignored)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} ({', '.join(STAGES)})")
    cls = STAGES[stage]
    names = {f.name for f in dataclasses.fields(cls)}
    foreign = sorted(set(fields) - names)
    if foreign:
        flags = ", ".join("--" + f.replace("_", "-") for f in foreign)
        raise ValueError(f"{flags} do(es) not apply to the {stage} stage")
    return cls(**fields)


RECIPES = Path(__file__).with_name("recipes")


def recipes() -> list[str]:
    """Names of the recipes shipped in codec/train/recipes/."""
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def load_recipe(name: str, stage: str) -> dict:
    """The fields a recipe sets for ``stage``: its ``common`` section and the stage's section
    (a recipe is a JSON file: ``description``, ``common``, and one object per stage it
    trains). ValueError for an unknown recipe, a recipe without this stage, or a field the
    stage does not have."""
    import json

    path = Path(name) if name.endswith(".json") else RECIPES / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r} (shipped: {', '.join(recipes())}; or a .json path)")
    recipe = json.loads(path.read_text())
    if stage not in recipe:
        trained = [k for k in recipe if k in STAGES]
        raise ValueError(f"recipe {name} has no {stage} stage (it trains: {', '.join(trained)})")
    fields = {**recipe.get("common", {}), **recipe[stage]}
    TrainConfig(stage, **fields)  # a field the stage does not have: ValueError naming it
    return fields


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


def field_help(cls: type[RunConfig]) -> dict[str, str]:
    """Each field's comment in this file (its help text), or the section it sits in."""
    import inspect
    import re

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # base fields first, a subclass's comment wins
        section = ""
        for line in inspect.getsource(klass).splitlines():
            s = line.strip()
            if s.startswith("#"):
                section = s.lstrip("# ")
                continue
            m = re.match(r"(\w+): [^=]+=\s*(.*?)(?:#\s*(.*))?$", s)
            if m and m.group(1) not in ("def", "return", "stage"):
                out[m.group(1)] = m.group(3) or section
    return out


def add_flags(parser: argparse.ArgumentParser, cls: type[RunConfig]) -> None:
    """One flag per field of ``cls`` (--name value; booleans as --name / --no-name), each with
    its comment from the dataclass and its default."""
    parser.add_argument(
        "--preset",
        "--recipe",
        dest="preset",
        metavar="RECIPE",
        help=f"start from a named recipe ({', '.join(recipes())}) or a recipe .json file",
    )
    helps = field_help(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        shown = "runs_dir()/STAGE" if f.name == "out" else repr(default)
        text = f"{helps.get(f.name) or f.name.replace('_', ' ')} (default: {shown})".replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, default=None, metavar=f.name.upper(), help=text)


def from_args(args: argparse.Namespace) -> RunConfig:
    """The config of ``args.stage``: its recipe's fields, then the flags given."""
    cls = STAGES[args.stage]
    base = load_recipe(args.preset, args.stage) if args.preset else {}
    given = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None
    }
    return TrainConfig(args.stage, **{**base, **given})
