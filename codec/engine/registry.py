"""The model zoo by name: named bundles shipped in the package, and which bundle a name,
a path or nothing means.

``--model``/``model=`` takes a bundle path or the name of a shipped model (``codec models``
lists them); without one, ``$CODEC_MODEL``, else the shipped ``default`` (to decode, the
shipped model a file names comes before ``$CODEC_MODEL``: see
:func:`codec.engine.loading.bundle_for_file`). Shipped models are described in
``codec/weights/zoo.json`` (file, SHA-256, size, Kodak figures from the benchmark, the command
lines that trained them); a shipped file whose SHA-256 differs from its entry is refused with
:class:`~codec.CodecError` when it is resolved (:mod:`.verified`).
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

from ..errors import CodecError
from ..format import schema
from .verified import verify

MANIFEST = "zoo.json"
DEFAULT = "default"


def weights_dir() -> Path:
    return Path(str(resources.files("codec") / "weights"))


def manifest() -> dict[str, dict]:
    """name -> entry (``file``, ``sha256``, ``bytes``, ``model_id``, ``aliases``,
    ``description``, ``kodak``, ``recipe``)."""
    return _manifest_doc().get("models", {})


def retired() -> dict[str, dict]:
    """model id (hex) -> entry (``name``, ``retired``, ``description``) of models that were
    shipped once and no longer are: what a file made with one of them is told."""
    return _manifest_doc().get("retired", {})


def _manifest_doc() -> dict:
    path = weights_dir() / MANIFEST
    return _read_manifest(str(path), path.stat().st_mtime_ns) if path.is_file() else {}


@functools.lru_cache(maxsize=4)
def _read_manifest(path: str, mtime_ns: int) -> dict:
    # get_codec resolves a name on every call (codec.compress in a loop): read the file once
    return json.loads(Path(path).read_text())


def canonical_name(name: str) -> str:
    """The zoo entry's name for a shipped name or one of its ``aliases`` (``flagship`` is the
    recipe's name of ``default``); other strings unchanged."""
    entries = manifest()
    if name in entries:
        return name
    return next((n for n, e in entries.items() if name in e.get("aliases", ())), name)


def shipped_models() -> list[str]:
    """Names of the models shipped in the package, lowest Kodak bpp first."""
    entries = manifest()
    names = [n for n, e in entries.items() if (weights_dir() / e["file"]).is_file()]
    return sorted(names, key=lambda n: (entries[n].get("kodak", {}).get("bpp", 0.0), n))


def shipped_path(name: str) -> Path:
    """The verified file of shipped model ``name`` or alias (CodecError if unknown or damaged)."""
    name = canonical_name(name)
    entry = manifest().get(name)
    path = weights_dir() / entry["file"] if entry else None
    if path is None or not path.is_file():
        shipped = ", ".join(shipped_models()) or "none"
        raise CodecError(f"no shipped model {name!r} (shipped models: {shipped})")
    st = path.stat()
    verify(str(path), st.st_size, st.st_mtime_ns, entry["sha256"])
    return path


def _shipped_entry(path: str | Path) -> dict | None:
    """The zoo entry of ``path`` if it is the file of a shipped model, verified against its
    SHA-256 (CodecError if it differs); None for any other file."""
    path = Path(path).resolve()
    for name, entry in manifest().items():
        f = weights_dir() / entry["file"]
        if f.is_file() and f.resolve() == path:
            shipped_path(name)
            return entry
    return None


def is_shipped_file(path: str | Path) -> bool:
    """True if ``path`` is the file of a shipped model, verified against its SHA-256
    (CodecError if it differs); False for any other file."""
    return _shipped_entry(path) is not None


def shipped_model_id(path: str | Path) -> bytes | None:
    """The model id zoo.json records for ``path`` if it is the file of a shipped model,
    verified against its SHA-256 (CodecError if it differs); None for any other file. The
    zoo's tests check each recorded id against the one computed from the file's tensors."""
    entry = _shipped_entry(path)
    return bytes.fromhex(entry["model_id"]) if entry and entry.get("model_id") else None


def default_model_path() -> Path:
    env = os.environ.get("CODEC_MODEL")
    if env:
        return resolve(env)
    if DEFAULT not in manifest():
        raise CodecError("no model given and none bundled: pass --model BUNDLE or set CODEC_MODEL")
    return shipped_path(DEFAULT)


def resolve(model: str | Path | None = None) -> Path:
    """The bundle file for ``model``: an existing path, else a shipped name (verified), else
    None for the default (see module doc)."""
    if model is None:
        return default_model_path().resolve()
    path = Path(model)
    if path.is_file():
        return path.resolve()
    if canonical_name(str(model)) in manifest():
        return shipped_path(str(model)).resolve()
    raise CodecError(
        f"model bundle not found: {path} (shipped models: {', '.join(shipped_models()) or 'none'})"
    )


def describe() -> list[dict]:
    """One row per shipped model for ``codec models``: name, file size, decoders, grid and the
    Kodak figures of its entry."""
    from safetensors import safe_open

    rows, entries = [], manifest()
    for name in shipped_models():
        entry = entries[name]
        path = weights_dir() / entry["file"]
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            realism = any(k.startswith(schema.REALISM_DECODER) for k in f.keys())
        cfg = json.loads(meta.get(schema.AUTOENCODER_CONFIG, "{}"))
        stride = 2 ** len(cfg["channels"]) if cfg else None  # PQVAEConfig.stride
        prefix = "1-" if cfg.get("nested") else ""  # a nested model: any prefix of its sub-vectors
        rows.append(
            {
                "name": name,
                "aliases": list(entry.get("aliases", [])),
                "file": entry["file"],
                "bytes": path.stat().st_size,
                "grid": f"s{stride} M{prefix}{cfg.get('M')} K{cfg.get('K')}" if cfg else "?",
                "decoders": "fidelity, realism" if realism else "fidelity",
                "kodak": entry.get("kodak", {}),
                "description": entry.get("description", ""),
            }
        )
    return rows
