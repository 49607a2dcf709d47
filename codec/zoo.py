"""The model zoo: named bundles shipped in the package, and which bundle to use.

``--model``/``model=`` takes a bundle path or the name of a shipped model (``codec models``
lists them); without one, ``$CODEC_MODEL``, else the shipped ``default`` (to decode, the
shipped model a file names comes before ``$CODEC_MODEL``: see :func:`codec_for_file`).
Shipped models are described in ``codec/weights/zoo.json`` (file, SHA-256, size, Kodak
figures from the benchmark, the command lines that trained them); a shipped file whose
SHA-256 differs from its entry is refused with :class:`~codec.CodecError` when it is loaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

from .errors import CodecError
from .files import atomic_write
from .models import schema

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


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "codec" / "verified.json"


@functools.lru_cache(maxsize=16)
def _verified(path: str, size: int, mtime_ns: int, expected: str) -> None:
    """Hashes a shipped file once per (path, size, mtime): remembered per process and in the
    user's cache (``~/.cache/codec/verified.json``), so a CLI call does not rehash it."""
    key, stamp = path, [size, mtime_ns, expected]
    try:
        known = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        known = {}
    if known.get(key) == stamp:
        return
    got = sha256_file(path)
    if got != expected:
        raise CodecError(
            f"shipped model file {path} is damaged or was replaced: SHA-256 {got[:16]}..., "
            f"expected {expected[:16]}... (reinstall the package)"
        )
    try:  # best effort: a read-only home just means hashing again next time
        known[key] = stamp
        f = _cache_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, lambda tmp: tmp.write_text(json.dumps(known)))
    except OSError:
        pass


def shipped_path(name: str) -> Path:
    """The verified file of shipped model ``name`` or alias (CodecError if unknown or damaged)."""
    name = canonical_name(name)
    entry = manifest().get(name)
    path = weights_dir() / entry["file"] if entry else None
    if path is None or not path.is_file():
        shipped = ", ".join(shipped_models()) or "none"
        raise CodecError(f"no shipped model {name!r} (shipped models: {shipped})")
    st = path.stat()
    _verified(str(path), st.st_size, st.st_mtime_ns, entry["sha256"])
    return path


def is_shipped_file(path: str | Path) -> bool:
    """True if ``path`` is the file of a shipped model, verified against its SHA-256
    (CodecError if it differs); False for any other file."""
    path = Path(path).resolve()
    for name, entry in manifest().items():
        f = weights_dir() / entry["file"]
        if f.is_file() and f.resolve() == path:
            shipped_path(name)
            return True
    return False


def default_model_path() -> Path:
    env = os.environ.get("CODEC_MODEL")
    if env:
        return resolve(env)
    if DEFAULT not in manifest():
        raise CodecError("no model given and none bundled: pass --model BUNDLE or set CODEC_MODEL")
    return shipped_path(DEFAULT)


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    try:
        return load_codec(path, device)
    except (CodecError, ModuleNotFoundError):  # a missing torch is the install's fault, not the file's
        raise
    except Exception as e:  # a malformed file: any of safetensors', json's, torch's errors
        raise CodecError(f"{path} is not a usable model bundle ({type(e).__name__}: {e})") from None


def get_codec(model: str | Path | None = None, device: str = "cpu"):
    """The :class:`~codec.api.ImageCodec` (torch: encodes and decodes) for a bundle path or
    shipped name (default: see module doc), cached."""
    return _load(str(resolve(model)), device)


@functools.lru_cache(maxsize=4)
def _load_decoder(path: str):
    from .decoding import load_portable_decoder

    return load_portable_decoder(path, trusted=is_shipped_file)


def get_decoder(model: str | Path | None = None):
    """The :class:`~codec.decoding.PortableDecoder` (no torch: decodes) for a bundle path or
    shipped name, cached."""
    return _load_decoder(str(resolve(model)))


def bundle_for_file(data: bytes, model: str | Path | None = None) -> Path:
    """The bundle that decodes the .pqm ``data``: ``model`` if given; else the shipped model
    whose id the header names (zoo.json lists each model's id); else ``$CODEC_MODEL`` if set.
    The file's own model wins over ``$CODEC_MODEL``, which chooses the model to encode with:
    a file made with another model still decodes. CodecError naming the needed id and the
    installed models when none has it."""
    from . import bitstream

    if model is not None:
        return resolve(model)
    header, _ = bitstream.unpack(data)
    wanted = header.model_id.hex()
    for name, entry in manifest().items():
        if entry.get("model_id") == wanted and (weights_dir() / entry["file"]).is_file():
            return resolve(name)
    if os.environ.get("CODEC_MODEL"):  # a bundle of one's own (the codec checks the file's id)
        return resolve(None)
    gone = retired().get(wanted)
    if gone:
        raise CodecError(
            f"file made with model {gone['name']!r} ({wanted}), retired from the zoo on "
            f"{gone['retired']}: {gone.get('replacement', '')}pass its bundle (in the "
            "codec repository's history, codec/weights/) with --model / model="
        )
    installed = ", ".join(f"{n} ({manifest()[n].get('model_id', '?')})" for n in shipped_models()) or "none"
    raise CodecError(
        f"file made with model {wanted}, which is not installed (installed: {installed}); "
        "pass its bundle with --model / model="
    )


def codec_for_file(data: bytes, model: str | Path | None = None, device: str = "cpu"):
    """The torch codec of :func:`bundle_for_file`."""
    return get_codec(bundle_for_file(data, model), device)


def decoder_for_file(data: bytes, model: str | Path | None = None):
    """The decoder of the .pqm ``data`` (see :func:`bundle_for_file`): the portable one
    (:class:`~codec.decoding.PortableDecoder`, no torch)."""
    return get_decoder(bundle_for_file(data, model))


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


def load_codec(path: str | Path, device="cpu"):
    """An :class:`~codec.api.ImageCodec` from a bundle (read and checked once by
    :func:`codec.bundle.read_bundle`); its model id is the bundle's."""
    import copy

    import torch

    from .api import ImageCodec
    from .bundle import read_bundle
    from .entropy.schedule import CodingSchedule
    from .layered_codec import LayeredImageCodec
    from .models.layered import build_entropy_model
    from .models.mim import MIMConfig
    from .models.pqvae import PQVAE, PQVAEConfig

    b = read_bundle(path, trusted=is_shipped_file)

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in b.part(prefix).items()}

    ae = PQVAE(PQVAEConfig(**b.config(schema.AUTOENCODER_CONFIG)))
    ae.load_state_dict(part(schema.AUTOENCODER), assign=True)
    em = build_entropy_model(MIMConfig(**b.config(schema.MIM_CONFIG)))
    em.load_state_dict(part(schema.ENTROPY_MODEL), assign=True)
    schedule = CodingSchedule(**b.config(schema.SCHEDULE))
    realism = part(schema.REALISM_DECODER)
    decoder = None
    if realism:
        decoder = copy.deepcopy(ae.decoder)
        decoder.load_state_dict(realism, assign=True)
    cls = LayeredImageCodec if em.cfg.groups else ImageCodec
    return cls(ae, em, schedule, model_id=b.model_id, device=device, realism_decoder=decoder)
