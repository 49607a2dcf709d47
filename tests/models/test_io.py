"""Tests for codec.models.io: exported stages, bundles, model ids, content hashes."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from codec.errors import CodecError
from codec.format import schema
from codec.models.io import content_hash, load_pqvae, model_id, verify_bundle


def test_a_bundle_names_its_parts_and_loads_its_autoencoder(layered_bundle):
    with safe_open(str(layered_bundle), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta[schema.KIND] == schema.KIND_BUNDLE
    assert {schema.AUTOENCODER_CONFIG, schema.MIM_CONFIG, schema.SCHEDULE, schema.CONTENT_HASH} <= set(meta)
    assert all(k.startswith((schema.AUTOENCODER, schema.ENTROPY_MODEL)) for k in keys)
    ae = load_pqvae(layered_bundle)
    assert ae.cfg.to_dict() == json.loads(meta[schema.AUTOENCODER_CONFIG])
    verify_bundle(layered_bundle)


def test_the_model_id_ignores_decoders_and_the_content_hash_does_not(layered_bundle, tmp_path):
    tensors = load_file(str(layered_bundle))
    with safe_open(str(layered_bundle), "pt") as f:
        meta = f.metadata()
    changed = dict(tensors)
    key = next(k for k in tensors if k.startswith(schema.AUTOENCODER + "decoder.") and k.endswith("weight"))
    changed[key] = tensors[key] + 1
    assert content_hash(changed, meta) != meta[schema.CONTENT_HASH]
    out = tmp_path / "redecoded.safetensors"
    save_file(changed, str(out), metadata={**meta, schema.CONTENT_HASH: content_hash(changed, meta)})
    assert model_id(out) == model_id(layered_bundle)  # same tokens: old files still decode
    verify_bundle(out)
    damaged = tmp_path / "damaged.safetensors"
    save_file(changed, str(damaged), metadata=meta)  # the stored hash no longer matches
    with pytest.raises(CodecError, match="damaged"):
        verify_bundle(damaged)
    legacy = tmp_path / "legacy.safetensors"
    save_file(tensors, str(legacy), metadata={k: v for k, v in meta.items() if k != schema.CONTENT_HASH})
    with pytest.raises(CodecError, match="no content hash"):
        verify_bundle(legacy)
    verify_bundle(legacy, trusted=lambda path: True)  # the zoo vouches for its shipped files
    assert torch.equal(load_file(str(legacy))[key], tensors[key])


def test_the_model_id_ignores_the_decoders_own_config(layered_bundle, tmp_path):
    """A bundle whose decoder gained blocks (``extra_decoder_blocks``) keeps its model id: the
    tokens and bitstream are the same, so files written with it before still decode."""
    tensors = load_file(str(layered_bundle))
    with safe_open(str(layered_bundle), "pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta[schema.AUTOENCODER_CONFIG])
    grown = {**meta, schema.AUTOENCODER_CONFIG: json.dumps({**cfg, "extra_decoder_blocks": [0] * 3 + [1]})}
    out = tmp_path / "grown.safetensors"
    save_file(tensors, str(out), metadata=grown)
    assert model_id(out) == model_id(layered_bundle)
    other = {**meta, schema.AUTOENCODER_CONFIG: json.dumps({**cfg, "K": cfg["K"] * 2})}
    save_file(tensors, str(out), metadata=other)
    assert model_id(out) != model_id(layered_bundle)  # what changes the tokens still counts
