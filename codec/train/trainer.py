"""``codec train``: one entry for every training stage.

codec train --out runs/pqvae --M 8 --K 256            # CPU or one GPU
torchrun --nproc-per-node 4 -m codec train ...         # DDP (NCCL on GPU, gloo on CPU)

The loop is :mod:`codec.train.loop`; each stage builds its run in its own module.
"""

from __future__ import annotations

from .config import RunConfig
from .loop import TrainResult


def train(cfg: RunConfig) -> TrainResult:
    """Trains (or resumes) the stage of ``cfg`` (its class: see codec.train.config.STAGES).
    Rank 0 writes checkpoint, log and plots."""
    if cfg.stage == "entropy":
        from .entropy_stage import train_entropy

        return train_entropy(cfg)
    if cfg.stage == "baseline":
        from .baseline_stage import train_baseline

        return train_baseline(cfg)
    if cfg.stage == "realism":
        from .realism_stage import train_realism

        return train_realism(cfg)
    if cfg.stage != "autoencoder":
        raise ValueError(f"unknown stage {cfg.stage!r}")
    from .autoencoder_stage import train_autoencoder

    return train_autoencoder(cfg)
