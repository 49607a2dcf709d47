"""The bundles shipped in the package: they load by name and code real images."""

import numpy as np
import pytest
from PIL import Image

import codec
from codec.demo import sample_image_path
from codec.engine.loading import get_codec, get_decoder
from codec.engine.registry import shipped_models


def test_shipped_models_are_listed_and_load_by_name():
    names = shipped_models()
    assert "default" in names and "extreme-s32-m1-k16" in names
    assert get_codec("default") is get_codec(None)  # cached, and the default
    with pytest.raises(codec.CodecError, match="shipped models"):
        get_codec("no-such-model")


def test_default_model_round_trip_on_a_crop():
    img = Image.open(sample_image_path()).convert("RGB").crop((200, 100, 328, 196))
    data = codec.compress(img)
    out = np.asarray(codec.decompress(data), dtype=np.float64)
    mse = np.mean((out - np.asarray(img, dtype=np.float64)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 22  # a trained model, not noise
    assert 8 * len(data) / (128 * 96) < 0.5


@pytest.mark.parametrize("name", shipped_models())
def test_every_shipped_model_codes_the_sample_near_its_rate(name):
    """Each zoo model, on the sample (Kodak kodim23, so not a held-out image): a file near its
    listed Kodak bpp (kodim23 is an easy image: 0.3x..1.5x) and a trained model's PSNR;
    a model with a realism decoder decodes the same file with it."""
    from codec.engine.registry import manifest

    img = np.asarray(Image.open(sample_image_path()).convert("RGB"))
    c = get_codec(name)
    ae = c.autoencoder.cfg
    data = c.compress(img, m=ae.M) if ae.nested else c.compress(img)  # a nested model lists its full rate
    bpp, listed = 8 * len(data) / (img.shape[0] * img.shape[1]), manifest()[name]["kodak"]
    assert 0.3 * listed["bpp"] < bpp < 1.5 * listed["bpp"]
    out = c.decompress(data).astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((out - img) ** 2))
    assert psnr > listed["psnr"] - 1
    if c.realism_decoder is not None:
        real = c.decompress(data, decoder="realism").astype(np.float64)
        assert real.shape == out.shape and not np.array_equal(real, out)
        assert 10 * np.log10(255**2 / np.mean((real - img) ** 2)) > listed["psnr"] - 3


def test_extreme_model_fits_the_sample_in_200_bytes():
    img = Image.open(sample_image_path()).convert("RGB")
    data = codec.compress(img, model="extreme-s32-m1-k16")
    assert len(data) <= 200
    assert codec.decompress(data, model="extreme-s32-m1-k16").size == img.size


def test_manifest_matches_the_shipped_files():
    """Every shipped file has an entry whose SHA-256 and size are the file's, with a recipe."""
    from codec.engine.registry import manifest, weights_dir
    from codec.engine.verified import sha256_file

    entries = manifest()
    assert {e["file"] for e in entries.values()} == {p.name for p in weights_dir().glob("*.safetensors")}
    for name, e in entries.items():
        path = weights_dir() / e["file"]
        assert sha256_file(path) == e["sha256"] and path.stat().st_size == e["bytes"], name
        assert get_codec(name).model_id.hex() == e["model_id"], name
        assert e["recipe"] and all(line.startswith("codec ") for line in e["recipe"]), name
        assert e["kodak"]["bpp"] > 0 and e["kodak"]["psnr"] > 10, name


def test_a_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    import json
    import shutil

    from codec.engine import loading, registry

    src = registry.weights_dir()
    dst = tmp_path / "weights"
    dst.mkdir()
    shutil.copy(src / "zoo.json", dst / "zoo.json")
    data = bytearray((src / "extreme-s32-m1-k16.safetensors").read_bytes())
    (dst / "extreme-s32-m1-k16.safetensors").write_bytes(data)
    monkeypatch.setattr(registry, "weights_dir", lambda: dst)
    assert registry.shipped_path("extreme-s32-m1-k16").name == "extreme-s32-m1-k16.safetensors"  # intact
    data[-100] ^= 1  # one bit of one weight
    (dst / "extreme-s32-m1-k16.safetensors").write_bytes(data)
    with pytest.raises(codec.CodecError, match="SHA-256"):
        loading.get_codec("extreme-s32-m1-k16")
    assert "default" not in registry.shipped_models()  # its file is not in this folder
    with pytest.raises(codec.CodecError, match="no shipped model"):
        registry.shipped_path("default")
    entries = json.loads((dst / "zoo.json").read_text())
    assert "extreme-s32-m1-k16" in entries["models"]


def test_a_shipped_file_is_not_hashed_again_by_its_decoder(tmp_path, monkeypatch):
    """A shipped file verified against the zoo's SHA-256 is decoded with the zoo's model id
    (the same as computed from its tensors) without its content hash; a copy elsewhere is
    checked in full, and both decode a file to the same pixels."""
    import shutil

    from codec.engine import loading
    from codec.engine.decoding import load_portable_decoder
    from codec.engine.registry import manifest, weights_dir
    from codec.format import bundle

    name = "default"  # the other shipped model predates content hashes
    path = weights_dir() / manifest()[name]["file"]
    copy = tmp_path / "copy.safetensors"
    shutil.copy(path, copy)
    data = codec.compress(Image.new("RGB", (64, 48), (90, 140, 60)), model=name)
    hashed = []
    real = bundle.content_hash
    monkeypatch.setattr(bundle, "content_hash", lambda t, m: hashed.append(1) or real(t, m))
    shipped = loading._load_decoder.__wrapped__(str(path))  # not the process cache
    assert hashed == [] and shipped.model_id.hex() == manifest()[name]["model_id"]
    other = load_portable_decoder(copy)
    assert hashed == [1] and other.model_id == shipped.model_id == bundle.read_bundle(copy).model_id
    assert np.array_equal(shipped.decompress(data), other.decompress(data))


def test_codec_models_lists_names_rates_and_sizes(capsys):
    import json

    from codec.cli import main
    from codec.engine.registry import manifest

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, e in manifest().items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"{e['kodak']['bpp']:.4f}" in line and f"{e['bytes'] / 1e6:.1f} MB" in line
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == shipped_models()
    assert sorted(r["kodak"]["bpp"] for r in rows) == [r["kodak"]["bpp"] for r in rows]


def test_a_file_opens_without_naming_its_model(tmp_path, monkeypatch, capsys):
    """decode, codec.decompress and Image.open find the shipped model the header names."""
    from codec.cli import main
    from codec.errors import CodecError

    monkeypatch.delenv("CODEC_MODEL", raising=False)
    img = np.asarray(Image.open(sample_image_path()).convert("RGB"))[:64, :96]
    other = "extreme-s32-m1-k16"
    data = get_codec(other).compress(img)
    expect = get_decoder(other).decompress(data)  # every path below decodes without torch
    assert np.array_equal(np.asarray(codec.decompress(data)), expect)
    f = tmp_path / "x.pqm"
    f.write_bytes(data)
    assert np.array_equal(np.asarray(Image.open(f)), expect)
    assert main(["decode", str(f), "-o", str(tmp_path / "x.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), expect)
    # naming another model is still refused; an unknown model id is named with what is installed
    assert main(["decode", str(f), "-o", str(tmp_path / "y.png"), "--model", "default"]) == 1
    assert "made with model" in capsys.readouterr().err
    from codec.format import bitstream

    h, payload = bitstream.unpack(data)
    import dataclasses

    alien = bitstream.pack(dataclasses.replace(h, model_id=b"\x00\x01\x02\x03"), payload)
    with pytest.raises(CodecError, match="00010203, which is not installed .*default"):
        codec.decompress(alien)
    # a model that was shipped once: the file says which, when it left and what replaces it
    from codec.engine.registry import retired

    gone_id, gone = next(iter(retired().items()))
    old = bitstream.pack(dataclasses.replace(h, model_id=bytes.fromhex(gone_id)), payload)
    with pytest.raises(CodecError, match=f"model '{gone['name']}' .*retired from the zoo on"):
        codec.decompress(old)


def test_flagship_is_another_name_of_the_default():
    from codec.engine.registry import canonical_name, manifest, resolve

    assert canonical_name("flagship") == "default" and canonical_name("default") == "default"
    assert resolve("flagship") == resolve("default") == resolve(None)
    assert get_codec("flagship") is get_codec(None)
    assert "flagship" not in shipped_models() and "flagship" in manifest()["default"]["aliases"]
    assert canonical_name("no-such") == "no-such"


def test_a_shipped_file_is_hashed_once_per_user_cache(tmp_path, monkeypatch):
    from codec.engine import registry, verified

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    real = verified.sha256_file
    monkeypatch.setattr(verified, "sha256_file", lambda p: calls.append(p) or real(p))
    verified.verify.cache_clear()
    registry.shipped_path("extreme-s32-m1-k16")
    assert len(calls) == 1 and (tmp_path / "codec" / "verified.json").exists()
    verified.verify.cache_clear()  # a new process: the user cache remembers
    registry.shipped_path("extreme-s32-m1-k16")
    assert len(calls) == 1


def test_zoo_recipes_point_to_recipe_files():
    from codec.engine.registry import manifest
    from codec.train.config import load_recipe, recipes

    named = {n: e["recipe_name"] for n, e in manifest().items() if "recipe_name" in e}
    assert named.get("default") == "prq"
    for recipe in named.values():
        assert recipe in recipes()
        assert load_recipe(recipe, "autoencoder")["nested"] is True  # the recipe trains this model


def test_zoo_manifest_retires_the_previous_id_of_a_re_exported_model(tmp_path, monkeypatch):
    """bench/zoo_manifest.py: a file whose model id changed gets a fresh hash and id, and the
    old id moves to ``retired`` with its old hash and figures; an unchanged file retires nothing."""
    import importlib.util
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    spec = importlib.util.spec_from_file_location(
        "zoo_manifest", Path(__file__).resolve().parents[2] / "bench" / "zoo_manifest.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "weights_dir", lambda: tmp_path)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    save_file({"w": torch.zeros(3)}, str(tmp_path / "b.safetensors"))
    entry = {"file": "a.safetensors", "description": "a", "kodak": {"psnr": 20.0}}
    doc = {"models": {"a": dict(entry), "b": {"file": "b.safetensors"}}}
    (tmp_path / "zoo.json").write_text(json.dumps(doc))
    mod.main(["--date", "2026-01-02"])  # first listing: ids recorded, nothing retired
    first = json.loads((tmp_path / "zoo.json").read_text())
    assert first.get("retired", {}) == {}
    save_file({"w": torch.ones(2)}, str(tmp_path / "a.safetensors"))  # re-exported
    mod.main(["--date", "2026-01-02"])
    doc = json.loads((tmp_path / "zoo.json").read_text())
    old, new = first["models"]["a"], doc["models"]["a"]
    assert new["model_id"] != old["model_id"] and new["sha256"] != old["sha256"]
    assert list(doc["retired"]) == [old["model_id"]]  # b kept its id
    gone = doc["retired"][old["model_id"]]
    assert (gone["name"], gone["retired"], gone["sha256"]) == ("a", "2026-01-02", old["sha256"])
    assert gone["kodak"] == {"psnr": 20.0} and new["model_id"] in gone["replacement"]
