"""A codec bundle read without torch: its tensors as numpy arrays, its configs, its checks.

The layout of a bundle is :mod:`codec.format.schema`'s. Two hashes cover it: the content
hash (SHA-256 over the metadata and every tensor, stored in the bundle and checked before
use) and the model id (what defines the tokens and the bitstream: the 4 bytes every .pqm
header names). Both are computed here, over numpy arrays, for the readers with and without
torch (:mod:`codec.models.io` hands its torch tensors over as arrays), so they cannot drift.
Tensor dtypes enter the hashes under torch's names (``torch.float16``), as they always have.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CodecError
from . import schema
from .checks import share

_TORCH_DTYPE = {
    np.dtype(np.float16): "torch.float16",
    np.dtype(np.float32): "torch.float32",
    np.dtype(np.float64): "torch.float64",
    np.dtype(np.bool_): "torch.bool",
    np.dtype(np.uint8): "torch.uint8",
    np.dtype(np.int8): "torch.int8",
    np.dtype(np.int16): "torch.int16",
    np.dtype(np.int32): "torch.int32",
    np.dtype(np.int64): "torch.int64",
}

# Tensors of a bundle that do not change the tokens: decoders may be retrained or added
# (a realism decoder) without changing the model id, so older files still decode.
RENDERING = (schema.AUTOENCODER + "decoder.", schema.REALISM_DECODER)
_RENDERING_CONFIG = ("extra_decoder_blocks",)  # autoencoder config keys of the decoder alone


def _update(h, name: str, a: np.ndarray) -> None:
    a = np.asarray(a, order="C")  # not ascontiguousarray: it makes a 0-d array 1-d
    h.update(f"{name}:{_TORCH_DTYPE[a.dtype]}:{tuple(a.shape)}\n".encode())
    h.update(a.tobytes())


def content_hash(tensors: Mapping[str, np.ndarray], meta: Mapping[str, str]) -> str:
    """SHA-256 (hex) over a bundle's metadata (but this hash) and every tensor's name, dtype,
    shape and bytes: stored in the bundle, checked when it is loaded."""
    h = hashlib.sha256()
    for key in sorted(meta):
        if key != schema.CONTENT_HASH:
            h.update(f"{key}={meta[key]}\n".encode())
    for name in sorted(tensors):
        _update(h, name, tensors[name])
    return h.hexdigest()


def bundle_model_id(tensors: Mapping[str, np.ndarray], meta: Mapping[str, str]) -> bytes:
    """The 4-byte model id of a bundle: the start of a SHA-256 over what defines the tokens
    and the bitstream (encoder, quantizer, entropy model, configs and schedule; not the
    decoders)."""
    h = hashlib.sha256()
    for key in (schema.AUTOENCODER_CONFIG, schema.MIM_CONFIG, schema.SCHEDULE):
        value = meta[key]
        if key == schema.AUTOENCODER_CONFIG:  # the decoder's own sizes do not change the tokens
            cfg = json.loads(value)
            if any(k in cfg for k in _RENDERING_CONFIG):
                value = json.dumps({k: v for k, v in cfg.items() if k not in _RENDERING_CONFIG})
        h.update(f"{key}={value}\n".encode())
    for name in sorted(tensors):
        if not name.startswith(RENDERING):
            _update(h, name, tensors[name])
    return h.digest()[:4]


def verify_content(
    path: Path,
    tensors: Mapping[str, np.ndarray],
    meta: Mapping[str, str],
    trusted: Callable[[Path], bool] | None = None,
) -> None:
    """CodecError unless the bundle's content matches the hash stored in it (or, for a bundle
    written before bundles carried one, unless ``trusted(path)``: the zoo passes its check of
    the shipped files' SHA-256)."""
    if schema.CONTENT_HASH not in meta:
        if trusted is not None and trusted(path):
            return
        raise CodecError(f"{path} carries no content hash (written by an older codec): re-export it")
    if content_hash(tensors, meta) != meta[schema.CONTENT_HASH]:
        raise CodecError(f"{path} is damaged: its content does not match the hash stored in it")


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 q, float32 scale [w.shape[0]]) with w ~ q * scale, one scale per index of the first
    axis (max |w| / 127 of that slice): half the bytes of float16 for a decoder whose image
    is judged by eye (the realism decoder: about 0.01 dB and 0.2-0.4 levels on average)."""
    w = np.asarray(w, dtype=np.float32)
    flat = w.reshape(w.shape[0], -1)
    scale = (np.abs(flat).max(axis=1) / 127).astype(np.float32)
    safe = np.where(scale > 0, scale, 1).astype(np.float32)
    q = np.clip(np.rint(flat / safe[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def widened(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``tensors`` with each int8 tensor stored with a scale (``schema.INT8_SCALE``) replaced by
    float32 q * scale (one float32 product per weight: the same on every machine) and the scale
    dropped; the other tensors as they are. CodecError for an int8 tensor without a scale, a
    scale without its tensor, or of the wrong shape, dtype or value (not finite, negative)."""
    out = dict(tensors)
    for name, v in tensors.items():
        if v.dtype == np.int8 and name + schema.INT8_SCALE not in tensors:
            raise CodecError(f"{name}: an int8 tensor needs its scale {name + schema.INT8_SCALE}")
    for key in [k for k in tensors if k.endswith(schema.INT8_SCALE)]:
        name = key.removesuffix(schema.INT8_SCALE)
        q, scale = out.pop(name, None), np.asarray(out.pop(key))
        ok = q is not None and q.dtype == np.int8 and q.ndim >= 1 and scale.dtype == np.float32
        if not (ok and scale.shape == q.shape[:1] and np.all(np.isfinite(scale) & (scale >= 0))):
            raise CodecError(f"{key}: needs int8 {name} and a finite scale >= 0 per index of its first axis")
        out[name] = q.astype(np.float32) * scale.reshape((-1,) + (1,) * (q.ndim - 1))
    return out


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: ``tensors`` (name -> array as stored, fp16 mostly), ``meta``
    (the safetensors metadata), ``model_id`` (4 bytes)."""

    path: Path
    tensors: dict[str, np.ndarray]
    meta: dict[str, str]
    model_id: bytes

    def config(self, key: str) -> dict:
        """A JSON config of the metadata (``schema.AUTOENCODER_CONFIG``, ``MIM_CONFIG``, ``SCHEDULE``)."""
        return json.loads(self.meta[key])

    def latent_weights(self) -> np.ndarray | None:
        """float64 [latent_dim] of ``schema.LATENT_WEIGHTS`` (None when the bundle has none);
        CodecError unless it is a list of latent_dim finite positive numbers."""
        text = self.meta.get(schema.LATENT_WEIGHTS)
        if text is None:
            return None
        dim = int(self.config(schema.AUTOENCODER_CONFIG)["latent_dim"])
        try:
            w = np.asarray(json.loads(text), dtype=np.float64)
        except (ValueError, TypeError):
            w = np.zeros(0)
        if w.shape != (dim,) or not np.all(np.isfinite(w) & (w > 0)):
            raise CodecError(f"{self.path}: {schema.LATENT_WEIGHTS} must be {dim} finite positive numbers")
        return w

    def realism_strength(self) -> tuple[float, ...] | None:
        """The M strengths of ``schema.REALISM_STRENGTH`` (None when the bundle has none);
        CodecError unless it is a list of M numbers from 0 to 1 in a bundle with a realism
        decoder."""
        text = self.meta.get(schema.REALISM_STRENGTH)
        if text is None:
            return None
        M = int(self.config(schema.AUTOENCODER_CONFIG)["M"])
        try:
            values = json.loads(text)
            ok = isinstance(values, list) and len(values) == M
            table = tuple(share(schema.REALISM_STRENGTH, v) for v in values) if ok else ()
        except ValueError:  # json's, share's
            table = ()
        has_realism = any(k.startswith(schema.REALISM_DECODER) for k in self.tensors)
        if not (has_realism and len(table) == M):
            want = f"{M} numbers from 0 to 1, and a realism decoder"
            raise CodecError(f"{self.path}: {schema.REALISM_STRENGTH} needs {want}")
        return table

    def part(self, prefix: str) -> dict[str, np.ndarray]:
        """The float32 tensors under ``prefix`` (the prefix taken off their names; int8 ones
        :func:`widened`); other dtypes as stored."""
        return {
            k: (v.astype(np.float32) if v.dtype.kind == "f" else v)
            for k, v in widened(schema.part(self.tensors, prefix)).items()
        }


def read_bundle(
    path: str | Path,
    trusted: Callable[[Path], bool] | None = None,
    verified_id: bytes | None = None,
    skip: tuple[str, ...] = (),
) -> Bundle:
    """The bundle at ``path``, read once and checked (:func:`verify_content`); CodecError for
    a file that is not a usable bundle.

    ``verified_id``: the model id of a file the caller has verified as a whole (a shipped
    model: its SHA-256 against the zoo's, which records its id too). Its content hash and
    model id are then not computed again (the verified-hash cache exists so that a CLI call
    does not hash a shipped file), and its tensors under the prefixes ``skip`` are not read
    (a decoder skips the encoder)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        with safe_open(str(path), "np") as f:
            meta = dict(f.metadata() or {})
            if meta.get(schema.KIND) != schema.KIND_BUNDLE:
                raise CodecError(f"{path} is not a codec bundle (kind {meta.get(schema.KIND)!r})")
            if verified_id is not None:
                tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(skip)}
                return Bundle(path, tensors, meta, verified_id)
        tensors = load_file(str(path))
        verify_content(path, tensors, meta, trusted)
        return Bundle(path, tensors, meta, bundle_model_id(tensors, meta))
    except CodecError:
        raise
    except Exception as e:  # a malformed file: any of safetensors', json's, numpy's errors
        raise CodecError(f"{path} is not a usable model bundle ({type(e).__name__}: {e})") from None
