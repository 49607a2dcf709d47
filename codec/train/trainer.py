"""``codec train STAGE``: one entry for every training stage.

codec train autoencoder --out runs/pqvae --M 8 --K 256   # CPU or one GPU
torchrun --nproc-per-node 4 -m codec train ...            # DDP (NCCL on GPU, gloo on CPU)

Each stage's module builds its :class:`~codec.train.loop.Run` (``build(cfg)``: model,
optimizer, one step, evaluation); :func:`~codec.train.loop.fit` runs it.
"""

from __future__ import annotations

import importlib

from .config import RunConfig
from .loop import TrainResult, fit

STAGE_MODULES = {
    "autoencoder": "autoencoder_stage",
    "entropy": "entropy_stage",
    "baseline": "baseline_stage",
    "realism": "realism_stage",
}


def train(cfg: RunConfig) -> TrainResult:
    """Trains (or resumes) the stage of ``cfg`` (its class: see codec.train.config.STAGES).
    Rank 0 writes checkpoint, log and plots."""
    if cfg.stage not in STAGE_MODULES:
        raise ValueError(f"unknown stage {cfg.stage!r}")
    run = importlib.import_module(f".{STAGE_MODULES[cfg.stage]}", __package__).build(cfg)
    return TrainResult(run.model, fit(run))
