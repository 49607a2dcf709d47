"""The verified-hash cache: a shipped model file is hashed once per (path, size, mtime),
remembered per process and in the user's cache (``~/.cache/codec/verified.json``), so a CLI
call does not rehash it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..errors import CodecError
from ..util.files import atomic_write


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
def verify(path: str, size: int, mtime_ns: int, expected: str) -> None:
    """Checks ``path`` against its SHA-256 ``expected`` once per (path, size, mtime): remembered
    per process and in the user's cache; CodecError if it differs."""
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
