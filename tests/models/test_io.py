"""Tests for codec.models.io: exported stages, bundles, model ids, content hashes."""

import json
from pathlib import Path

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


def test_export_gives_a_bundle_latent_weights_and_keeps_its_model_id(layered_bundle, tmp_path, capsys):
    """codec export BUNDLE --latent-weights DIR: the encoder's weights in the metadata, checked on
    load; the model id and every tensor unchanged."""
    import numpy as np
    from PIL import Image

    from codec.cli import main
    from codec.engine.loading import load_codec
    from codec.format.bundle import read_bundle
    from codec.models.io import rewrite_bundle

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    out = tmp_path / "weighted.safetensors"
    assert main(["export", str(layered_bundle), "--latent-weights", str(photos), "-o", str(out)]) == 0
    old, new = read_bundle(layered_bundle), read_bundle(out)
    assert new.model_id == old.model_id and old.latent_weights() is None
    assert (
        all(np.array_equal(new.tensors[k], v) for k, v in old.tensors.items())
        and new.tensors.keys() == old.tensors.keys()
    )
    w = new.latent_weights()
    assert w.shape == (24,) and np.all(w > 0) and w.mean() == pytest.approx(1.0)
    assert np.array_equal(load_codec(out).latent_weights, w)
    # refused in one line: over the output, with --entropy, from a folder without images
    capsys.readouterr()
    assert main(["export", str(layered_bundle), "--latent-weights", str(photos), "-o", str(out)]) == 1
    assert (
        main(
            [
                "export",
                str(layered_bundle),
                "--latent-weights",
                str(tmp_path / "none"),
                "-o",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    x = str(tmp_path / "x")
    assert main(["export", str(layered_bundle), "--latent-weights", str(empty), "-o", x]) == 1
    assert (
        main(["export", str(layered_bundle), "--entropy", x, "--latent-weights", str(photos), "-o", x]) == 1
    )
    assert main(["export", str(photos), "--latent-weights", str(photos), "-o", x]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "image folder not found" in err
    assert "no images there" in err and "entropy model not found" in err and not Path(x).exists()
    assert "rewrites a bundle" in err
    # forged weights: CodecError on load, naming the key
    for forged in ([1.0] * 23, [1.0] * 23 + [-1.0], [1.0] * 23 + [float("nan")]):
        bad = rewrite_bundle(
            layered_bundle, tmp_path / f"bad{len(forged)}{forged[-1]}.safetensors", latent_weights=forged
        )
        with pytest.raises(CodecError, match=schema.LATENT_WEIGHTS):
            load_codec(bad)


def test_export_gives_a_bundle_a_new_entropy_model_and_a_new_model_id(layered_bundle, tmp_path, capsys):
    """codec export BUNDLE --entropy EM: the entropy model replaced (a new model id: old files are
    refused, not misread), everything else kept (every other tensor, the latent weights)."""
    import numpy as np

    from codec.cli import main
    from codec.engine.loading import load_codec
    from codec.format.bundle import read_bundle
    from codec.models.io import rewrite_bundle

    weighted = rewrite_bundle(layered_bundle, tmp_path / "w.safetensors", latent_weights=[0.5] * 24)
    em_file = layered_bundle.parent / "em.safetensors"
    with safe_open(str(em_file), "pt") as f:
        em_meta = f.metadata()
    em = load_file(str(em_file))
    em["channel.head.weight"] = em["channel.head.weight"] * 0.5  # another entropy model
    save_file(em, str(tmp_path / "em2.safetensors"), metadata={**em_meta, schema.COMMAND: "trained on"})
    out = tmp_path / "new.safetensors"
    assert (
        main(["export", str(weighted), "--entropy", str(tmp_path / "em2.safetensors"), "-o", str(out)]) == 0
    )
    old, new = read_bundle(weighted), read_bundle(out)
    assert new.model_id != old.model_id and new.tensors.keys() == old.tensors.keys()
    changed = {k for k, v in old.tensors.items() if not np.array_equal(new.tensors[k], v)}
    assert changed == {schema.ENTROPY_MODEL + "channel.head.weight"}
    assert np.array_equal(new.latent_weights(), old.latent_weights())
    assert new.meta[schema.ENTROPY_PROVENANCE + schema.COMMAND] == "trained on"

    img = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    old_codec, new_codec = load_codec(weighted), load_codec(out)
    data = new_codec.compress(img)
    assert np.array_equal(new_codec.decompress(data), old_codec.decompress(old_codec.compress(img)))
    with pytest.raises(CodecError, match="model"):
        new_codec.decompress(old_codec.compress(img))
    # an entropy model of other tokens is refused in one line, nothing written
    other = {**em_meta, schema.CONFIG: json.dumps({**json.loads(em_meta[schema.CONFIG]), "K": 32})}
    save_file(em, str(tmp_path / "em_k32.safetensors"), metadata=other)
    capsys.readouterr()
    bad = tmp_path / "bad.safetensors"
    assert (
        main(["export", str(weighted), "--entropy", str(tmp_path / "em_k32.safetensors"), "-o", str(bad)])
        == 1
    )
    err = capsys.readouterr().err
    assert "not an entropy model of this bundle's tokens" in err and "Traceback" not in err
    assert not bad.exists()
