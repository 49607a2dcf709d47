"""codec encode/decode, codec.compress/decompress and the Pillow plugin, on a tiny bundle."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import codec
from codec.cli import main
from codec.engine.loading import get_decoder, load_codec
from codec.models.io import save_bundle
from codec.models.mim import MaskedEntropyModel, MIMConfig
from codec.models.pqvae import PQVAE, PQVAEConfig


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    acfg = PQVAEConfig(channels=[8, 16], latent_dim=16, M=2, K=16)
    ae = PQVAE(acfg)
    ae(torch.rand(2, 3, 32, 32))
    mcfg = MIMConfig(M=2, K=16, dim=32, depth=1, heads=2)
    em = MaskedEntropyModel(mcfg)
    import json

    save_file(
        {k: v.contiguous() for k, v in ae.state_dict().items()},
        str(d / "ae.safetensors"),
        metadata={"kind": "pqvae", "config": json.dumps(acfg.to_dict()), "command": "codec train --tiny"},
    )
    save_file(
        {k: v.contiguous() for k, v in em.state_dict().items()},
        str(d / "em.safetensors"),
        metadata={"kind": "entropy", "config": json.dumps(mcfg.to_dict())},
    )
    return save_bundle(d / "tiny.safetensors", d / "ae.safetensors", d / "em.safetensors")


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(path)
    return path


def test_encode_decode_files(bundle, image, tmp_path, capsys):
    pqm, png = tmp_path / "x.pqm", tmp_path / "out.png"
    assert main(["encode", str(image), "-o", str(pqm), "--model", str(bundle)]) == 0
    assert main(["decode", str(pqm), "-o", str(png), "--model", str(bundle)]) == 0
    out = np.asarray(Image.open(png))
    assert out.shape == (30, 41, 3)
    data = pqm.read_bytes()
    assert np.array_equal(out, get_decoder(bundle).decompress(data))  # the CLI decodes without torch
    torch_codec = load_codec(bundle)
    torch_codec.amp = "off"
    assert np.abs(out.astype(int) - torch_codec.decompress(data)).max() <= 1  # torch's within one level
    assert main(["info", str(pqm)]) == 0
    assert "41x30" in capsys.readouterr().out
    # never overwrite without --force, never the input
    assert main(["encode", str(image), "-o", str(pqm), "--model", str(bundle)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["encode", str(image), "-o", str(pqm), "--model", str(bundle), "--force"]) == 0
    assert main(["decode", str(pqm), "-o", str(pqm), "--model", str(bundle), "--force"]) == 1
    assert "input" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp*"))


def test_errors_are_one_line(bundle, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.pqm"
    bad.write_bytes(b"PQM\x01garbage")
    assert main(["decode", str(bad), "-o", str(tmp_path / "o.png"), "--model", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not (tmp_path / "o.png").exists()
    notimg = tmp_path / "n.png"
    notimg.write_bytes(b"hello")
    assert main(["encode", str(notimg), "-o", str(tmp_path / "n.pqm"), "--model", str(bundle)]) == 1
    assert "not an image" in capsys.readouterr().err
    monkeypatch.delenv("CODEC_MODEL", raising=False)
    monkeypatch.setattr("codec.engine.registry.resources.files", lambda _: tmp_path)  # no bundled model here
    assert main(["encode", str(notimg), "-o", str(tmp_path / "n.pqm")]) == 1
    assert "no model given" in capsys.readouterr().err


def test_several_inputs_to_a_folder(bundle, image, tmp_path):
    other = tmp_path / "b.png"
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    outdir = tmp_path / "out"
    outdir.mkdir()
    assert main(["encode", str(image), str(other), "-o", str(outdir), "--model", str(bundle)]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["b.pqm", "in.pqm"]


def test_python_api_and_pillow_plugin(bundle, image, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_MODEL", str(bundle))
    data = codec.compress(Image.open(image))
    img = codec.decompress(data)
    assert img.size == (41, 30) and img.mode == "RGB"
    path = tmp_path / "p.pqm"
    Image.open(image).save(path)  # the plugin encodes
    assert path.read_bytes()[:3] == b"PQM"
    with Image.open(path) as im:
        assert im.format == "PQM" and im.size == (41, 30)
        assert np.array_equal(np.asarray(im), np.asarray(codec.decompress(path.read_bytes())))
    with pytest.raises(codec.CodecError):
        Image.open(io.BytesIO(b"PQM\x01" + bytes(30))).load()


def test_a_file_decodes_in_another_process(bundle, image, tmp_path):
    """Bytes made here decode to the same pixels in a fresh interpreter with 1 thread (and
    the decoded tokens pass the header's checksum there)."""
    import subprocess
    import sys

    pqm = tmp_path / "x.pqm"
    pqm.write_bytes(load_codec(bundle).compress(Image.open(image)))
    here = load_codec(bundle).decompress(pqm.read_bytes())
    script = (
        "import sys, numpy as np, torch; torch.set_num_threads(1)\n"
        "from codec.engine.loading import load_codec\n"
        "out = load_codec(sys.argv[1]).decompress(open(sys.argv[2], 'rb').read())\n"
        "np.save(sys.argv[3], out)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(bundle), str(pqm), str(tmp_path / "o.npy")], check=True)
    assert np.array_equal(np.load(tmp_path / "o.npy"), here)


def test_demo_with_a_model(bundle, image, tmp_path, capsys):
    from codec.demo import run_demo

    out = tmp_path / "rec.png"
    r = run_demo(image, bundle, out, runs=1)
    data = load_codec(bundle).compress(Image.open(image))
    assert r.bytes == len(data) and r.bpp == 8 * len(data) / (30 * 41)
    assert np.array_equal(np.asarray(Image.open(out)), load_codec(bundle).decompress(data))
    assert all(n <= r.bytes for _, _, n, _, _ in r.others)
    assert main(["demo", "--image", str(image), "--model", str(bundle), "-o", str(out)]) == 1  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["demo", "--image", str(image), "--model", str(bundle), "-o", str(out), "--force"]) == 0
    text = capsys.readouterr().out
    assert "bpp" in text and "decode" in text and str(out) in text


def test_bundle_keeps_provenance_and_its_autoencoder_loads(bundle):
    from safetensors import safe_open

    from codec.models.io import load_pqvae

    ae = load_pqvae(bundle)
    assert torch.equal(
        ae.state_dict()["quantizer.codebooks"],
        load_codec(bundle).autoencoder.state_dict()["quantizer.codebooks"],
    )
    with safe_open(str(bundle), "pt") as f:
        meta = f.metadata()
    assert meta["kind"] == "codec" and "schedule" in meta
    assert meta["autoencoder_command"] == "codec train --tiny"


def test_encode_a_prefix_of_the_stages(bundle, image, tmp_path, capsys):
    full, part = tmp_path / "f.pqm", tmp_path / "p.pqm"
    assert main(["encode", str(image), "-o", str(full), "--model", str(bundle)]) == 0
    assert main(["encode", str(image), "-o", str(part), "--model", str(bundle), "--stages", "1"]) == 0
    assert part.stat().st_size < full.stat().st_size
    assert main(["decode", str(part), "-o", str(tmp_path / "p.png"), "--model", str(bundle)]) == 0
    assert (
        main(["encode", str(image), "-o", str(tmp_path / "x.pqm"), "--model", str(bundle), "--stages", "99"])
        == 1
    )
    assert "--stages" in capsys.readouterr().err


def test_encode_with_fewer_base_stages_gives_the_same_pixels(layered_bundle, tmp_path, capsys):
    """--base-stages S: the file records its schedule, so the same tokens (same pixels) decode
    from a file coded in S stages; S outside 1..64 is refused in one line, nothing written."""
    from codec.format import bitstream

    rng = np.random.default_rng(2)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(src)
    m = ["--model", str(layered_bundle), "--m", "3"]
    files = {s: tmp_path / f"s{s}.pqm" for s in ("model", 1, 2)}
    assert main(["encode", str(src), "-o", str(files["model"]), *m]) == 0
    for s in (1, 2):
        assert main(["encode", str(src), "-o", str(files[s]), *m, "--base-stages", str(s)]) == 0
    again = tmp_path / "again.pqm"  # the cached codec keeps the model's schedule afterwards
    assert main(["encode", str(src), "-o", str(again), *m]) == 0
    assert again.read_bytes() == files["model"].read_bytes()
    data = {s: f.read_bytes() for s, f in files.items()}
    assert [bitstream.unpack(data[s])[0].stages for s in (1, 2)] == [1, 2]
    assert bitstream.unpack(data["model"])[0].stages == load_codec(layered_bundle).schedule.stages > 2
    pixels = [np.asarray(codec.decompress(d, model=str(layered_bundle))) for d in data.values()]
    assert all(np.array_equal(p, pixels[0]) for p in pixels[1:])
    capsys.readouterr()
    for bad in ("0", "65"):
        out = tmp_path / f"bad{bad}.pqm"
        assert main(["encode", str(src), "-o", str(out), *m, "--base-stages", bad]) == 1
        assert not out.exists()
    err = capsys.readouterr().err
    assert err.count("--base-stages must be in 1..64") == 2 and "Traceback" not in err


def test_rate_control_and_layers_from_the_command_line(layered_bundle, tmp_path, capsys):
    rng = np.random.default_rng(1)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(src)
    m = ["--model", str(layered_bundle)]
    full, cut, small = tmp_path / "full.pqm", tmp_path / "cut.pqm", tmp_path / "small.pqm"
    assert main(["encode", str(src), "-o", str(full), "--quality", "100", *m]) == 0
    assert main(["encode", str(src), "-o", str(small), "--m", "2", *m]) == 0
    assert main(["truncate", str(full), "-o", str(cut), "--layers", "2"]) == 0
    assert cut.read_bytes() == small.read_bytes()  # a cut file is the lower-rate file
    capsys.readouterr()
    assert main(["info", str(full)]) == 0
    info = capsys.readouterr().out
    assert "version 2" in info and "m=6 codes of 6" in info and "4 of 4" in info
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["decode", str(full), "-o", str(a), "--layers", "2", *m]) == 0
    assert main(["decode", str(cut), "-o", str(b), *m]) == 0
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    # rate control: --size never exceeded, --bpp near, --quality monotone; same as the API and Pillow
    n = (len(small.read_bytes()) + len(full.read_bytes())) // 2
    out = tmp_path / "size.pqm"
    assert main(["encode", str(src), "-o", str(out), "--size", str(n), *m]) == 0
    assert len(out.read_bytes()) <= n
    img = Image.open(src)
    assert out.read_bytes() == codec.compress(img, layered_bundle, size=n)
    buf = io.BytesIO()
    img.save(buf, format="PQM", model=str(layered_bundle), size=n)
    assert buf.getvalue() == out.read_bytes()
    bpp = 8 * n / (64 * 80)
    got = 8 * len(codec.compress(img, layered_bundle, bpp=bpp)) / (64 * 80)
    assert abs(got - bpp) / bpp < 0.05
    sizes = [len(codec.compress(img, layered_bundle, quality=q)) for q in (0, 30, 60, 100)]
    assert sizes == sorted(sizes)
    assert np.array_equal(
        np.asarray(codec.decompress(full.read_bytes(), layered_bundle, layers=2)), np.asarray(Image.open(b))
    )
    # refusals: one line, rc 1
    for bad in (["--bpp", "0.1", "--m", "2"], ["--m", "9"], ["--size", "10"]):
        assert main(["encode", str(src), "-o", str(tmp_path / "bad.pqm"), *bad, *m]) == 1
    assert main(["truncate", str(full), "-o", str(tmp_path / "t.pqm"), "--layers", "7"]) == 1
    assert main(["truncate", str(full), "-o", str(full), "--layers", "1"]) == 1  # never the input
    assert main(["decode", str(full), "-o", str(tmp_path / "c.png"), "--layers", "9", *m]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_rate_control_needs_a_nested_model(bundle, image, tmp_path):
    assert (
        main(["encode", str(image), "-o", str(tmp_path / "x.pqm"), "--bpp", "0.2", "--model", str(bundle)])
        == 1
    )
    with pytest.raises(ValueError, match="one rate"):
        codec.compress(Image.open(image), bundle, bpp=0.2)


def test_inputs_that_would_share_an_output_are_refused_before_any_work(bundle, tmp_path, capsys):
    rng = np.random.default_rng(3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    img = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    img.save(tmp_path / "a" / "x.png")
    img.save(tmp_path / "b" / "x.png")
    img.save(tmp_path / "a" / "y.png")
    img.save(tmp_path / "a" / "y.jpg")
    for pair in (["a/x.png", "b/x.png"], ["a/y.png", "a/y.jpg"]):
        args = [str(tmp_path / p) for p in pair]
        assert main(["encode", *args, "-o", str(out), "--model", str(bundle)]) == 1
        err = capsys.readouterr().err
        assert "would both be written to" in err and args[0] in err and args[1] in err
        assert list(out.iterdir()) == []  # nothing written


def test_a_new_output_name_is_claimed_atomically(tmp_path):
    """Two writers of one new name without --force: the second refuses (it would have replaced
    the first's file); with --force it replaces; no temporary file is left behind."""
    from codec.errors import CodecError
    from codec.util.files import write_output

    target = tmp_path / "x.pqm"
    write_output(str(target), b"first")
    with pytest.raises(CodecError, match="exists"):
        write_output(str(target), b"second")
    assert target.read_bytes() == b"first"
    write_output(str(target), b"third", force=True)
    assert target.read_bytes() == b"third"
    with pytest.raises(CodecError, match=r"cannot write .*nowhere"):
        write_output(str(tmp_path / "nowhere" / "x.pqm"), b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pqm"]


def test_a_damaged_bundle_given_by_path_is_refused(bundle, image, tmp_path, capsys):
    """One flipped byte in the decoder's weights (or any tensor, or the metadata) is found by
    the content hash the bundle carries; a bundle without one is refused unless shipped."""
    from safetensors import safe_open

    from codec.errors import CodecError
    from codec.format import schema

    raw = bytearray(bundle.read_bytes())
    with safe_open(str(bundle), "pt") as f:
        meta = f.metadata()
    assert schema.CONTENT_HASH in meta
    header_len = int.from_bytes(raw[:8], "little")
    damaged = tmp_path / "damaged.safetensors"
    raw[8 + header_len + len(raw[8 + header_len :]) // 2] ^= 0x10  # a byte in the tensor data
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CodecError, match="damaged"):
        load_codec(damaged)
    assert main(["encode", str(image), "-o", str(tmp_path / "x.pqm"), "--model", str(damaged)]) == 1
    assert "damaged" in capsys.readouterr().err
    # the same file without its hash: refused (it is not a shipped file)
    with safe_open(str(bundle), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(
        tensors,
        str(tmp_path / "old.safetensors"),
        metadata={k: v for k, v in meta.items() if k != schema.CONTENT_HASH},
    )
    with pytest.raises(CodecError, match="no content hash"):
        load_codec(tmp_path / "old.safetensors")


def test_decode_to_stdout_writes_a_png(bundle, image, tmp_path):
    """`codec decode x.pqm -o -` in a fresh process (Pillow's writers not loaded yet): the PNG
    goes to stdout, as `-o x.png` would write it."""
    import subprocess
    import sys

    pqm, png = tmp_path / "x.pqm", tmp_path / "x.png"
    assert main(["encode", str(image), "-o", str(pqm), "--model", str(bundle)]) == 0
    assert main(["decode", str(pqm), "-o", str(png), "--model", str(bundle)]) == 0
    p = subprocess.run(
        [sys.executable, "-m", "codec", "decode", str(pqm), "-o", "-", "--model", str(bundle)],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == png.read_bytes() and p.stdout[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "rate,name",
    [
        ({"bpp": 0.05, "size": 20000}, "at most one"),
        ({"quality": 30, "m": 2}, "at most one"),
        ({"size": float("nan")}, "size"),
        ({"size": 100.5}, "size"),
        ({"size": 0}, "size"),
        ({"bpp": float("nan")}, "bpp"),
        ({"bpp": float("inf")}, "bpp"),
        ({"bpp": 0}, "bpp"),
        ({"bpp": -0.1}, "bpp"),
        ({"bpp": "0.2"}, "bpp"),
        ({"quality": float("nan")}, "quality"),
        ({"quality": 101}, "quality"),
        ({"m": 2.5}, "m"),
        ({"m": True}, "m"),
        ({"m": "2"}, "m"),
    ],
)
def test_mixed_or_invalid_rates_are_refused_everywhere(layered_bundle, rate, name):
    """One rule (codec.format.checks.checked_rate) for codec.compress, the Pillow plugin and the model's
    own compress: several rates, nan, inf, <= 0 and wrong types are a one-line ValueError."""
    from codec.engine.loading import get_codec

    img = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match=name) as e:
        codec.compress(img, layered_bundle, **rate)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=name):
        img.save(io.BytesIO(), format="PQM", model=str(layered_bundle), **rate)
    with pytest.raises(ValueError, match=name):
        get_codec(layered_bundle).compress(img, **rate)


def test_valid_rates_of_any_numeric_type_are_taken(layered_bundle):
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    assert codec.compress(img, layered_bundle, m=np.int64(2)) == codec.compress(img, layered_bundle, m=2)
    assert codec.compress(img, layered_bundle, quality=np.float32(50)) == codec.compress(
        img, layered_bundle, quality=50
    )


def test_the_pillow_plugin_converts_images_as_compress_does(layered_bundle, tmp_path):
    """A 16-bit grayscale PNG saved as .pqm: the same file codec.compress writes (16 bits scaled
    to 8), not the all-white image of a plain convert("RGB")."""
    ramp = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)  # 0 .. 61400
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
        im.save(tmp_path / "g.pqm", model=str(layered_bundle), quality=100)
        assert (tmp_path / "g.pqm").read_bytes() == codec.compress(im, layered_bundle, quality=100)
    out = np.asarray(codec.decompress((tmp_path / "g.pqm").read_bytes(), layered_bundle)).astype(int)
    assert out.min() < 200  # not all white (what a clipped conversion gives)


def test_damaged_files_raise_an_oserror_as_pillow_expects(layered_bundle, tmp_path, monkeypatch):
    assert issubclass(codec.CodecError, OSError)
    monkeypatch.setenv("CODEC_MODEL", str(layered_bundle))
    data = codec.compress(Image.fromarray(np.zeros((16, 24, 3), np.uint8)), layered_bundle)
    for bad in (data[:-3], b"PQM\x01" + bytes(30), data[:12]):
        with pytest.raises(OSError):
            with Image.open(io.BytesIO(bad)) as im:
                im.load()
    # a payload changed under a valid header: Image.open succeeds, load() fails
    from codec.format import bitstream

    header, payload = bitstream.unpack(data)
    forged = bitstream.pack(header, bytes(b ^ 0x55 for b in payload))
    with Image.open(io.BytesIO(forged)) as im:
        with pytest.raises(OSError):
            im.load()


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"layers": 2.5}, "layers"),
        ({"layers": "1"}, "layers"),
        ({"crop": (1.5, 0, 2, 2)}, "crop"),
        ({"crop": (0, 0, 5)}, "crop"),
        ({"crop": "0,0,4,4"}, "crop"),
        ({"crop": (0, 0, 99, 4)}, "crop"),
    ],
)
def test_decompress_arguments_of_the_wrong_type_are_one_line_errors(layered_bundle, kwargs, name):
    data = codec.compress(Image.fromarray(np.zeros((16, 24, 3), np.uint8)), layered_bundle, quality=100)
    with pytest.raises(codec.CodecError, match=name) as e:
        codec.decompress(data, layered_bundle, **kwargs)
    assert "\n" not in str(e.value)


def test_decompress_wants_bytes_not_a_path(layered_bundle, tmp_path):
    from pathlib import Path

    path = tmp_path / "x.pqm"
    path.write_bytes(codec.compress(Image.fromarray(np.zeros((16, 24, 3), np.uint8)), layered_bundle))
    for wrong in (str(path), path, 5, None):
        with pytest.raises(codec.CodecError, match="bytes of a .pqm file") as e:
            codec.decompress(wrong)
        assert "\n" not in str(e.value)
    assert isinstance(codec.decompress(bytearray(path.read_bytes()), layered_bundle), Image.Image)
    assert "read_bytes" in str(pytest.raises(codec.CodecError, codec.decompress, str(path)).value)
    assert Path(path).exists()


def test_a_file_names_its_model_even_when_codec_model_is_set(tmp_path, monkeypatch, capsys):
    """$CODEC_MODEL chooses the model to encode with; decoding, the shipped model a file names
    wins over it (an explicit --model / model= still wins over both)."""
    img = Image.fromarray(np.random.default_rng(5).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    data = codec.compress(img, "default")
    (tmp_path / "other.pqm").write_bytes(data)
    monkeypatch.setenv("CODEC_MODEL", "extreme-s32-m1-k16")
    expected = np.asarray(codec.decompress(data, "default"))
    assert np.array_equal(np.asarray(codec.decompress(data)), expected)
    assert main(["decode", str(tmp_path / "other.pqm"), "-o", str(tmp_path / "o.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), expected)
    with pytest.raises(codec.CodecError, match="model"):
        codec.decompress(data, "extreme-s32-m1-k16")


def test_decode_picks_the_writer_by_extension_in_a_fresh_process(bundle, image, tmp_path):
    """A fresh `codec decode` (Pillow's rarer plugins not loaded, no training code imported)
    writes .tif as TIFF and .png as PNG with zlib's fastest level, the same pixels in both."""
    import subprocess
    import sys

    pqm = tmp_path / "x.pqm"
    assert main(["encode", str(image), "-o", str(pqm), "--model", str(bundle)]) == 0
    for name in ("x.tif", "x.png"):
        argv = ["decode", str(pqm), "-o", str(tmp_path / name), "--model", str(bundle)]
        code = f"import sys, codec.cli; r = codec.cli.main({argv!r}); print(r, 'codec.train' in sys.modules)"
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert p.stdout.split() == ["0", "False"], p.stderr[-2000:]
    tif, png = Image.open(tmp_path / "x.tif"), Image.open(tmp_path / "x.png")
    assert (tif.format, png.format) == ("TIFF", "PNG")
    assert np.array_equal(np.asarray(tif), np.asarray(png))
    data = (tmp_path / "x.png").read_bytes()
    flg = data[data.index(b"IDAT") + 5]  # the zlib header's FLEVEL: 0 is the fastest level
    assert flg >> 6 == 0, flg


def test_decode_with_a_realism_strength_and_its_one_line_errors(tmp_path, capsys):
    """codec decode --decoder realism --realism-strength S mixes the two decoders' images as
    codec.render.realism.blend does; S without --decoder realism, or outside 0..1, is refused
    before any work; codec export BUNDLE --realism-strength writes a bundle's table and refuses
    what it cannot take, in one line and without an output file."""
    from codec.demo import sample_image_path
    from codec.engine.registry import shipped_path
    from codec.render.realism import blend

    Image.open(sample_image_path()).crop((0, 0, 128, 96)).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "f.pqm"), "--m", "2"]) == 0
    src = str(tmp_path / "f.pqm")
    decoded = {}
    for name, extra in (
        ("fid", []),
        ("real", ["--decoder", "realism", "--realism-strength", "1"]),
        ("mix", ["--decoder", "realism", "--realism-strength", "0.3"]),
    ):
        assert main(["decode", src, "-o", str(tmp_path / f"{name}.png"), *extra]) == 0
        decoded[name] = np.asarray(Image.open(tmp_path / f"{name}.png"))
    assert np.array_equal(decoded["mix"], blend(decoded["fid"], decoded["real"], 0.3))
    capsys.readouterr()
    for extra, msg in (
        (["--realism-strength", "0.5"], "--realism-strength needs --decoder realism"),
        (["--decoder", "realism", "--realism-strength", "1.5"], "--realism-strength must be from 0 to 1"),
    ):
        assert main(["decode", src, "-o", str(tmp_path / "bad.png"), *extra]) == 1
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "bad.png").exists()
    out = tmp_path / "s.safetensors"
    for args, msg in (
        ([str(shipped_path("default")), "--realism-strength", "0.5,x"], "numbers separated by commas"),
        ([str(shipped_path("default")), "--realism-strength", "0.5,-1"], "from 0 to 1"),
        ([str(shipped_path("extreme-s32-m1-k16")), "--realism-strength", "0.5"], "no realism decoder"),
    ):
        assert main(["export", *args, "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["export", str(shipped_path("default")), "--realism-strength", "0.3", "-o", str(out)]) == 0
    assert (
        main(["decode", src, "-o", str(tmp_path / "t.png"), "--model", str(out), "--decoder", "realism"]) == 0
    )
    assert np.array_equal(np.asarray(Image.open(tmp_path / "t.png")), decoded["mix"])
