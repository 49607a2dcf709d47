"""Writing files without losing anything: never half-written (:func:`atomic_write`: the CLI's
and the demo's outputs, bundles, exported models, checkpoints and the zoo's cache), and for
the CLI and the demo never over an input, never over an existing file unless asked."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import CodecError


def atomic_write(path: str | Path, write: Callable[[Path], object], replace: bool = True) -> Path:
    """Makes ``path`` by calling ``write(tmp)`` with a temporary path in the same folder, then
    renaming ``tmp`` to ``path``, so a failure or a crash never leaves a half-written ``path``;
    ``tmp`` is removed whatever happens. ``write`` may make a file or a folder (a folder
    replaces an existing ``path`` as a whole: the old one is moved aside, then deleted).
    ``replace=False`` (files only): the name is claimed atomically, a hard link that raises
    FileExistsError if ``path`` exists, so of two writers of one new name one fails."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    _remove(tmp)  # a leftover of a crashed process that had this pid
    try:
        write(tmp)
        if not replace:
            os.link(tmp, out)
        elif tmp.is_dir() and out.is_dir():  # a folder cannot be renamed over another
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            _remove(old)
            out.rename(old)
            tmp.rename(out)
            _remove(old)
        else:
            os.replace(tmp, out)
    finally:
        _remove(tmp)
    return out


def _remove(path: Path) -> None:
    """Deletes a file or a folder tree if it exists (best effort)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def check_output(path: str, force: bool, inputs: list[str]) -> None:
    """Refuses (before any work) to replace an input, or any existing file without ``force``."""
    if path == "-":
        return
    out = Path(path)
    if any(i != "-" and Path(i).resolve() == out.resolve() for i in inputs):
        raise CodecError(f"refusing to overwrite the input {path}")
    if out.exists() and not force:
        raise CodecError(f"{path} exists (use --force to replace it)")


def write_output(path: str, data: bytes, force: bool = False) -> None:
    """Writes ``data`` to ``path`` ('-': stdout) through a temporary file, so a failure never
    leaves a half-written file. Without ``force`` the name is claimed atomically (a hard link
    that fails if the name exists): of two processes writing one new name, one refuses.
    Errors name ``path``, never the temporary file."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(path, lambda tmp: tmp.write_bytes(data), replace=force)
    except FileExistsError:  # another writer got there first
        raise CodecError(f"{path} exists (use --force to replace it)") from None
    except OSError as e:
        raise CodecError(f"cannot write {path}: {e.strerror or e}") from None
