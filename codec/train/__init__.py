"""Training: config dataclass, in-memory image data, the trainer loop, checkpoints."""

from .config import TrainConfig
from .trainer import train

__all__ = ["TrainConfig", "train"]
