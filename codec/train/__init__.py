"""Training: one config dataclass per stage (config), in-memory image data (data), the loop
every stage shares (loop), one module per stage (autoencoder_stage, entropy_stage,
realism_stage, baseline_stage), pickle-free checkpoints (checkpoint).

``TrainConfig`` (a stage's config by name) and ``train`` load on first use (``codec --help``
must not import torch)."""

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(name)
