"""Training: config dataclass, in-memory image data, the trainer loop, checkpoints.

``TrainConfig`` and ``train`` load on first use (``codec --help`` must not import torch)."""

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(name)
