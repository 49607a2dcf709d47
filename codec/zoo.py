"""Which model bundle to use: ``--model``/``model=``, else ``$CODEC_MODEL``, else the bundle
shipped in the package (``codec/weights/default.safetensors``)."""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from .errors import CodecError


def default_model_path() -> Path:
    env = os.environ.get("CODEC_MODEL")
    if env:
        return Path(env)
    path = Path(str(resources.files("codec") / "weights" / "default.safetensors"))
    if not path.exists():
        raise CodecError("no model given and none bundled yet: pass --model BUNDLE or set CODEC_MODEL")
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    from .models.io import load_codec

    return load_codec(path, device)


def get_codec(model: str | Path | None = None, device: str = "cpu"):
    """The :class:`~codec.api.ImageCodec` for a bundle path (default: see module doc), cached."""
    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        raise CodecError(f"model bundle not found: {path}")
    return _load(str(path.resolve()), device)
