"""Which model bundle to use: ``--model``/``model=`` (a bundle path, or the name of a bundle
shipped in the package, e.g. ``extreme-s32-m1-k16``), else ``$CODEC_MODEL``, else the
shipped ``default`` (``codec/weights/default.safetensors``)."""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from .errors import CodecError


def weights_dir() -> Path:
    return Path(str(resources.files("codec") / "weights"))


def shipped_models() -> list[str]:
    """Names of the bundles shipped in the package."""
    d = weights_dir()
    return sorted(p.stem for p in d.glob("*.safetensors")) if d.is_dir() else []


def default_model_path() -> Path:
    env = os.environ.get("CODEC_MODEL")
    if env:
        return Path(env)
    path = weights_dir() / "default.safetensors"
    if not path.exists():
        raise CodecError("no model given and none bundled yet: pass --model BUNDLE or set CODEC_MODEL")
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    from .models.io import load_codec

    return load_codec(path, device)


def get_codec(model: str | Path | None = None, device: str = "cpu"):
    """The :class:`~codec.api.ImageCodec` for a bundle path (default: see module doc), cached."""
    return _load(str(resolve(model)), device)


def resolve(model: str | Path | None = None) -> Path:
    """The bundle file for ``model`` (a path, a shipped name, or None: see module doc)."""
    path = Path(model) if model is not None else default_model_path()
    if not path.is_file() and model is not None and str(model) in shipped_models():
        path = weights_dir() / f"{model}.safetensors"
    if not path.is_file():
        raise CodecError(
            f"model bundle not found: {path} (shipped models: {', '.join(shipped_models()) or 'none'})"
        )
    return path.resolve()
