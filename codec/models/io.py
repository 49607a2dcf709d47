"""Shipped weights: fp16 safetensors with the model config in the file's metadata."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..format import bundle, schema
from ..format.checks import share
from ..util.files import atomic_write
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


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a codec bundle file (not a checkpoint folder or an exported stage)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), "np") as f:
            return (f.metadata() or {}).get(schema.KIND) == schema.KIND_BUNDLE
    except (SafetensorError, OSError):  # not a safetensors file: not a bundle
        return False


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


def model_id(path: str | Path) -> bytes:
    """4-byte model id written into .pqm headers (:func:`codec.format.bundle.bundle_model_id` for a
    bundle); other files: the start of the whole file's SHA-256."""
    from safetensors.numpy import load_file

    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    if meta.get(schema.KIND) != schema.KIND_BUNDLE:
        return hashlib.sha256(Path(path).read_bytes()).digest()[:4]
    return bundle.bundle_model_id(load_file(str(path)), meta)


def as_arrays(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The tensors as numpy arrays of the same dtype and bytes (what the hashes read)."""
    return {k: v.detach().cpu().contiguous().numpy() for k, v in tensors.items()}


def bundle_model_id(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """:func:`codec.format.bundle.bundle_model_id` of torch tensors."""
    return bundle.bundle_model_id(as_arrays(tensors), meta)


def content_hash(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """:func:`codec.format.bundle.content_hash` of torch tensors."""
    return bundle.content_hash(as_arrays(tensors), meta)


def verify_bundle(
    path: Path,
    tensors: dict[str, torch.Tensor] | None = None,
    trusted: Callable[[Path], bool] | None = None,
) -> None:
    """:func:`codec.format.bundle.verify_content` of the bundle at ``path`` (``tensors``: its
    tensors when already read)."""
    from safetensors.numpy import load_file

    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    arrays = load_file(str(path)) if tensors is None else as_arrays(tensors)
    bundle.verify_content(path, arrays, meta, trusted)


def widened_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`codec.format.bundle.widened` of torch tensors: int8 weights with their scale ->
    float32 (the numpy arithmetic, so torch and the portable decoder get the same weights)."""
    stored = {k for k, v in tensors.items() if v.dtype == torch.int8 or k.endswith(schema.INT8_SCALE)}
    if not stored:
        return tensors
    wide = bundle.widened({k: tensors[k].numpy() for k in stored})
    return {k: v for k, v in tensors.items() if k not in stored} | {
        k: torch.from_numpy(v) for k, v in wide.items()
    }


def _load_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        tensors = widened_tensors(
            {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        )
    return {k: (t.float() if t.is_floating_point() else t) for k, t in tensors.items()}


def _stage_part(path: Path, key: str) -> tuple[dict[str, torch.Tensor], dict, dict[str, str]]:
    """(tensors, config, provenance: step, metrics, command) of one trained stage: a checkpoint
    folder (its config under ``key`` in the state) or an exported file."""
    if path.is_dir():
        state = json.loads((path / schema.CHECKPOINT_STATE).read_text())
        info = {
            schema.STEP: str(state[schema.STATE_STEP]),
            schema.METRICS: json.dumps(state.get(schema.STATE_METRICS)),
        }
        return _load_tensors(path / schema.CHECKPOINT_MODEL), state[key], info
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if schema.CONFIG not in meta:
        raise ValueError(f"{path} is not an exported stage or a checkpoint folder")
    info = {k: meta[k] for k in schema.PROVENANCE if k in meta}
    return _load_tensors(path), json.loads(meta[schema.CONFIG]), info


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

    ae, ae_cfg, ae_info = _stage_part(Path(autoencoder), schema.STATE_MODEL_CONFIG)
    em, em_cfg, em_info = _stage_part(Path(entropy_model), schema.STATE_MIM_CONFIG)
    tensors = {schema.AUTOENCODER + k: v for k, v in ae.items()} | {
        schema.ENTROPY_MODEL + k: v for k, v in em.items()
    }
    extra = {}
    if realism is not None:
        dec, extra = _realism_part(Path(realism), ae_cfg)
        tensors |= dec
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
    return _write_bundle(output, tensors, meta)


def _write_bundle(output: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """Writes a bundle: the realism decoder's float weights as int8 with a scale per output row
    (:func:`codec.format.bundle.quantize_int8`), other float tensors as fp16, ``meta`` with its
    content hash, atomically."""
    stored: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if k.startswith(schema.REALISM_DECODER) and v.is_floating_point() and v.ndim >= 2:
            q, scale = bundle.quantize_int8(v.detach().float().cpu().numpy())
            stored[k], stored[k + schema.INT8_SCALE] = torch.from_numpy(q), torch.from_numpy(scale)
        elif v.is_floating_point() and not k.endswith(schema.INT8_SCALE):
            stored[k] = v.half()
        else:
            stored[k] = v.contiguous()
    tensors = stored
    meta = {k: v for k, v in meta.items() if k != schema.CONTENT_HASH}
    meta[schema.CONTENT_HASH] = content_hash(tensors, meta)
    return atomic_write(output, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _realism_part(run: Path, ae_cfg: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(bundle tensors, bundle metadata) of a ``--stage realism`` checkpoint folder over the
    autoencoder whose config is ``ae_cfg``; ValueError for any other folder."""
    state = json.loads((run / schema.CHECKPOINT_STATE).read_text())
    if state.get(schema.KIND) != schema.KIND_REALISM or state[schema.STATE_MODEL_CONFIG] != ae_cfg:
        raise ValueError(f"{run} is not a realism run over this autoencoder")
    dec = _load_tensors(run / schema.CHECKPOINT_MODEL, schema.REALISM_CHECKPOINT_DECODER)
    meta = {
        schema.REALISM_DISCRIMINATOR: state[schema.STATE_DISCRIMINATOR],
        schema.REALISM_STEP: str(state[schema.STATE_STEP]),
        schema.REALISM_METRICS: json.dumps(state.get(schema.STATE_METRICS)),
    }
    return {schema.REALISM_DECODER + k: v for k, v in dec.items()}, meta


def rewrite_bundle(
    bundle_path: str | Path,
    output: str | Path,
    realism: str | Path | None = None,
    latent_weights: Sequence[float] | None = None,
    entropy: str | Path | None = None,
    realism_strength: Sequence[float] | None = None,
) -> Path:
    """A copy of the bundle at ``bundle_path`` with the realism decoder of the ``--stage
    realism`` checkpoint folder ``realism`` (fp16; added, or replacing the one it had, and then
    without the old one's strengths), the encoder's ``latent_weights``
    (``schema.LATENT_WEIGHTS``), the ``realism_strength`` per code count m = 1..M
    (``schema.REALISM_STRENGTH``; a shorter list goes on with its last value) and/or the
    entropy model of ``entropy`` (a ``--stage entropy`` checkpoint folder or exported file over
    the same tokens). A realism decoder, its strengths or latent weights keep the model id
    (files written with the bundle decode with the new one); a new entropy model gives a new
    id, and keeps the rest. ValueError for strengths outside [0, 1] or without a realism
    decoder."""
    with safe_open(str(bundle_path), "pt") as f:
        meta = dict(f.metadata() or {})
        if meta.get(schema.KIND) != schema.KIND_BUNDLE:
            raise ValueError(f"{bundle_path} is not a codec bundle")
        replaced = tuple(
            prefix
            for prefix, new in ((schema.REALISM_DECODER, realism), (schema.ENTROPY_MODEL, entropy))
            if new is not None
        )
        tensors = {k: f.get_tensor(k) for k in f.keys() if not any(k.startswith(r) for r in replaced)}
    if realism is not None:
        dec, extra = _realism_part(Path(realism), json.loads(meta[schema.AUTOENCODER_CONFIG]))
        meta = {k: v for k, v in meta.items() if k not in schema.REALISM_PROVENANCE} | extra
        tensors |= dec
    if realism is not None:
        meta.pop(schema.REALISM_STRENGTH, None)
    if realism_strength is not None:
        M = json.loads(meta[schema.AUTOENCODER_CONFIG])["M"]
        values = [share("realism strength", v) for v in realism_strength][:M]
        if not values:
            raise ValueError("realism strengths: give 1 to M numbers from 0 to 1")
        if not any(k.startswith(schema.REALISM_DECODER) for k in tensors):
            raise ValueError(f"{bundle_path} has no realism decoder for strengths (add one with --realism)")
        meta[schema.REALISM_STRENGTH] = json.dumps(values + values[-1:] * (M - len(values)))
    if latent_weights is not None:
        meta[schema.LATENT_WEIGHTS] = json.dumps([float(v) for v in latent_weights])
    if entropy is not None:
        em, em_cfg, em_info = _stage_part(Path(entropy), schema.STATE_MIM_CONFIG)
        ae_cfg = json.loads(meta[schema.AUTOENCODER_CONFIG])
        if (em_cfg.get("M"), em_cfg.get("K")) != (ae_cfg["M"], ae_cfg["K"]):
            raise ValueError(f"{entropy} is not an entropy model of this bundle's tokens")
        meta = {k: v for k, v in meta.items() if not k.startswith(schema.ENTROPY_PROVENANCE)}
        meta |= {schema.MIM_CONFIG: json.dumps(em_cfg)}
        meta |= {schema.ENTROPY_PROVENANCE + k: v for k, v in em_info.items()}
        tensors |= {schema.ENTROPY_MODEL + k: v for k, v in em.items()}
    return _write_bundle(output, tensors, meta)
