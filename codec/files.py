"""Writing output files without losing anything: never over an input, never over an existing
file unless asked, never half-written (the CLI and the demo write through these)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import CodecError


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
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        if force:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)  # FileExistsError if another writer got there first
    except FileExistsError:
        raise CodecError(f"{path} exists (use --force to replace it)") from None
    except OSError as e:
        raise CodecError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
