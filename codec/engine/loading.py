"""Codecs and decoders built from bundles: the torch codec (:func:`get_codec`), the
torch-free decoder (:func:`get_decoder`), both cached, and the bundle that decodes a given
.pqm file (:func:`bundle_for_file`). Which file a name means: :mod:`.registry`."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import CodecError
from ..format import schema
from .registry import (
    is_shipped_file,
    manifest,
    resolve,
    retired,
    shipped_model_id,
    shipped_models,
    weights_dir,
)


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    try:
        return load_codec(path, device)
    except (CodecError, ModuleNotFoundError):  # a missing torch is the install's fault, not the file's
        raise
    except Exception as e:  # a malformed file: any of safetensors', json's, torch's errors
        raise CodecError(f"{path} is not a usable model bundle ({type(e).__name__}: {e})") from None


def get_codec(model: str | Path | None = None, device: str = "cpu"):
    """The :class:`~codec.engine.api.ImageCodec` (torch: encodes and decodes) for a bundle path or
    shipped name (default: see module doc), cached."""
    return _load(str(resolve(model)), device)


@functools.lru_cache(maxsize=4)
def _load_decoder(path: str):
    from .decoding import load_portable_decoder

    return load_portable_decoder(path, trusted=is_shipped_file, verified_id=shipped_model_id(path))


def get_decoder(model: str | Path | None = None):
    """The :class:`~codec.engine.decoding.PortableDecoder` (no torch: decodes) for a bundle path or
    shipped name, cached."""
    return _load_decoder(str(resolve(model)))


def bundle_for_file(data: bytes, model: str | Path | None = None) -> Path:
    """The bundle that decodes the .pqm ``data``: ``model`` if given; else the shipped model
    whose id the header names (zoo.json lists each model's id); else ``$CODEC_MODEL`` if set.
    The file's own model wins over ``$CODEC_MODEL``, which chooses the model to encode with:
    a file made with another model still decodes. CodecError naming the needed id and the
    installed models when none has it."""
    from ..format import bitstream

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
    (:class:`~codec.engine.decoding.PortableDecoder`, no torch)."""
    return get_decoder(bundle_for_file(data, model))


def load_codec(path: str | Path, device="cpu"):
    """An :class:`~codec.engine.api.ImageCodec` from a bundle (read and checked once by
    :func:`codec.format.bundle.read_bundle`); its model id is the bundle's."""
    import copy

    import torch

    from ..entropy.schedule import CodingSchedule
    from ..format.bundle import read_bundle
    from ..models.layered import build_entropy_model
    from ..models.mim import MIMConfig
    from ..models.pqvae import PQVAE, PQVAEConfig
    from .api import ImageCodec
    from .layered_codec import LayeredImageCodec

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
    same = dict(
        model_id=b.model_id, device=device, realism_decoder=decoder, realism_strength=b.realism_strength()
    )
    if em.cfg.groups:
        return LayeredImageCodec(ae, em, schedule, latent_weights=b.latent_weights(), **same)
    return ImageCodec(ae, em, schedule, **same)
