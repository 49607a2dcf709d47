"""Shipped weights: fp16 safetensors with the model config in the file's metadata."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import atomic_write
from . import schema
from .pqvae import PQVAE, PQVAEConfig


def export_checkpoint(checkpoint: str | Path, output: str | Path, command: str = "") -> Path:
    """Writes a training checkpoint's model as fp16 safetensors (+ config, step, metrics)."""
    checkpoint, output = Path(checkpoint), Path(output)
    state = json.loads((checkpoint / schema.CHECKPOINT_STATE).read_text())
    with safe_open(str(checkpoint / schema.CHECKPOINT_MODEL), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    kind = state.get(schema.KIND, schema.KIND_PQVAE)
    meta = {
        schema.KIND: kind,
        schema.CONFIG: json.dumps(
            state[schema.STATE_MIM_CONFIG if kind == schema.KIND_ENTROPY else schema.STATE_MODEL_CONFIG]
        ),
        schema.STEP: str(state[schema.STATE_STEP]),
        schema.METRICS: json.dumps(state.get(schema.STATE_METRICS)),
        schema.COMMAND: command,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(output, lambda tmp: save_file(half, str(tmp), metadata=meta))


def load_pqvae(path: str | Path, device: str | torch.device = "cpu") -> PQVAE:
    """A PQ-VAE from exported (fp16) or checkpoint safetensors, or the autoencoder of a
    codec bundle; float32, eval mode."""
    cfg, path, prefix = read_pqvae_config(path)
    model = PQVAE(PQVAEConfig(**cfg))
    model.load_state_dict(_load_tensors(path, prefix))
    return model.to(device).eval()


def read_pqvae_config(path: str | Path) -> tuple[dict, Path, str]:
    """(PQ-VAE config, safetensors file, name prefix of its tensors) of an exported file, a
    codec bundle or a training checkpoint folder."""
    path = Path(path)
    if path.is_dir():  # a training checkpoint folder
        state = json.loads((path / schema.CHECKPOINT_STATE).read_text())
        return state[schema.STATE_MODEL_CONFIG], path / schema.CHECKPOINT_MODEL, ""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    if meta.get(schema.KIND) == schema.KIND_BUNDLE:
        return json.loads(meta[schema.AUTOENCODER_CONFIG]), path, schema.AUTOENCODER
    return json.loads(meta[schema.CONFIG]), path, ""


# Tensors of a bundle that do not change the tokens: decoders may be retrained or added
# (a realism decoder) without changing the model id, so older files still decode.
_RENDERING = (schema.AUTOENCODER + "decoder.", schema.REALISM_DECODER)
_RENDERING_CONFIG = ("extra_decoder_blocks",)  # autoencoder config keys of the decoder alone


def model_id(path: str | Path) -> bytes:
    """4-byte model id written into .pqm headers: the start of a SHA-256 over what defines the
    tokens and the bitstream (a bundle's encoder, quantizer, entropy model, configs and
    schedule; not its decoders). Other files: the whole file's SHA-256."""
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get(schema.KIND) != schema.KIND_BUNDLE:
        return hashlib.sha256(Path(path).read_bytes()).digest()[:4]
    return bundle_model_id(load_file(str(path)), meta)


def bundle_model_id(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """:func:`model_id` of a bundle from its tensors and metadata (already read)."""
    h = hashlib.sha256()
    for key in (schema.AUTOENCODER_CONFIG, schema.MIM_CONFIG, schema.SCHEDULE):
        value = meta[key]
        if key == schema.AUTOENCODER_CONFIG:  # the decoder's own sizes do not change the tokens
            cfg = json.loads(value)
            if any(k in cfg for k in _RENDERING_CONFIG):
                value = json.dumps({k: v for k, v in cfg.items() if k not in _RENDERING_CONFIG})
        h.update(f"{key}={value}\n".encode())
    for name in sorted(tensors):
        if not name.startswith(_RENDERING):
            t = tensors[name].contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()[:4]


CONTENT_KEY = schema.CONTENT_HASH


def content_hash(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """SHA-256 (hex) over a bundle's metadata (but this hash) and every tensor's name, dtype,
    shape and bytes: stored in the bundle, checked when it is loaded."""
    h = hashlib.sha256()
    for key in sorted(meta):
        if key != CONTENT_KEY:
            h.update(f"{key}={meta[key]}\n".encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def verify_bundle(
    path: Path,
    tensors: dict[str, torch.Tensor] | None = None,
    trusted: Callable[[Path], bool] | None = None,
) -> None:
    """CodecError unless the bundle's content matches the hash stored in it (or, for a bundle
    written before bundles carried one, unless ``trusted(path)``: the zoo passes its check of
    the shipped files' SHA-256). ``tensors``: the file's tensors when already read."""
    from safetensors.torch import load_file

    from ..errors import CodecError

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if CONTENT_KEY not in meta:
        if trusted is not None and trusted(path):
            return
        raise CodecError(f"{path} carries no content hash (written by an older codec): re-export it")
    if content_hash(load_file(str(path)) if tensors is None else tensors, meta) != meta[CONTENT_KEY]:
        raise CodecError(f"{path} is damaged: its content does not match the hash stored in it")


def _load_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {
            k[len(prefix) :]: (t.float() if t.is_floating_point() else t)
            for k in f.keys()
            if k.startswith(prefix)
            for t in [f.get_tensor(k)]
        }


def save_bundle(
    output: str | Path,
    autoencoder: str | Path,
    entropy_model: str | Path,
    schedule: dict | None = None,
    command: str = "",
    realism: str | Path | None = None,
) -> Path:
    """One file a user needs: PQ-VAE + entropy model (fp16) + default schedule, configs in
    the metadata. ``autoencoder``/``entropy_model``: exported files or checkpoint folders;
    ``realism``: a ``--stage realism`` checkpoint folder whose decoder joins the bundle as a
    second decoder of the same tokens (the model id does not change)."""
    from ..entropy.schedule import CodingSchedule

    def part(path: Path, key: str) -> tuple[dict, dict, dict]:
        """(tensors, config, provenance: step, metrics, command)"""
        if path.is_dir():
            state = json.loads((path / schema.CHECKPOINT_STATE).read_text())
            info = {
                schema.STEP: str(state[schema.STATE_STEP]),
                schema.METRICS: json.dumps(state.get(schema.STATE_METRICS)),
            }
            return _load_tensors(path / schema.CHECKPOINT_MODEL), state[key], info
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        info = {k: meta[k] for k in schema.PROVENANCE if k in meta}
        return _load_tensors(path), json.loads(meta[schema.CONFIG]), info

    ae, ae_cfg, ae_info = part(Path(autoencoder), schema.STATE_MODEL_CONFIG)
    em, em_cfg, em_info = part(Path(entropy_model), schema.STATE_MIM_CONFIG)
    tensors = {schema.AUTOENCODER + k: v for k, v in ae.items()} | {
        schema.ENTROPY_MODEL + k: v for k, v in em.items()
    }
    extra = {}
    if realism is not None:
        state = json.loads((Path(realism) / schema.CHECKPOINT_STATE).read_text())
        if state.get(schema.KIND) != schema.KIND_REALISM or state[schema.STATE_MODEL_CONFIG] != ae_cfg:
            raise ValueError(f"{realism} is not a realism run over this autoencoder")
        dec = _load_tensors(Path(realism) / schema.CHECKPOINT_MODEL, schema.REALISM_CHECKPOINT_DECODER)
        tensors |= {schema.REALISM_DECODER + k: v for k, v in dec.items()}
        extra = {
            schema.REALISM_DISCRIMINATOR: state[schema.STATE_DISCRIMINATOR],
            schema.REALISM_STEP: str(state[schema.STATE_STEP]),
            schema.REALISM_METRICS: json.dumps(state.get(schema.STATE_METRICS)),
        }
    tensors = {k: v.half() if v.is_floating_point() else v.contiguous() for k, v in tensors.items()}
    sched = schedule or CodingSchedule().__dict__
    meta = {
        schema.KIND: schema.KIND_BUNDLE,
        schema.AUTOENCODER_CONFIG: json.dumps(ae_cfg),
        schema.MIM_CONFIG: json.dumps(em_cfg),
        schema.SCHEDULE: json.dumps(sched),
        schema.COMMAND: command,
        **{schema.AUTOENCODER_PROVENANCE + k: v for k, v in ae_info.items()},
        **{schema.ENTROPY_PROVENANCE + k: v for k, v in em_info.items()},
        **extra,
    }
    meta[CONTENT_KEY] = content_hash(tensors, meta)
    return atomic_write(output, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
