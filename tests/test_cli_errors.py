"""Every subcommand against a table of bad inputs: exit status 1, one line on stderr, never a
traceback (the CLI's promise; tests/test_cli_codec.py covers the good paths)."""

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from codec.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory, layered_bundle):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(d / "ok.png")
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    (d / "text.pqm").write_text("not a pqm file at all")
    (d / "model.txt.safetensors").write_text("not a model")
    import torch

    save_file({"x": torch.zeros(2)}, str(d / "nometa.safetensors"))
    save_file(
        {"x": torch.zeros(2)},
        str(d / "badjson.safetensors"),
        metadata={"kind": "codec", "autoencoder_config": "{"},
    )
    raw = layered_bundle.read_bytes()
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    assert main(["encode", str(d / "ok.png"), "-o", str(d / "ok.pqm"), "--model", str(layered_bundle)]) == 0
    data = (d / "ok.pqm").read_bytes()
    (d / "cut.pqm").write_bytes(data[:-5])
    assert main(["encode", str(d / "ok.png"), "-o", str(d / "v1.pqm"), "--model", "extreme-s32-m1-k16"]) == 0
    return d, layered_bundle


CASES = [
    ("encode", ["encode", "{d}/missing.png", "-o", "{d}/o1.pqm"]),
    ("encode", ["encode", "{d}/empty.png", "-o", "{d}/o2.pqm"]),
    ("encode", ["encode", "{d}/text.png", "-o", "{d}/o3.pqm"]),
    ("encode", ["encode", "-", "-o", "{d}/o4.pqm"]),  # empty stdin
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o5.pqm", "--model", "{d}/missing.safetensors"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o6.pqm", "--model", "{d}/model.txt.safetensors"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o7.pqm", "--model", "{d}/nometa.safetensors"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o8.pqm", "--model", "{d}/badjson.safetensors"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o9.pqm", "--model", "{d}/truncated.safetensors"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o10.pqm", "--model", "{single}", "--bpp", "0.2"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o11.pqm", "--model", "{bundle}", "--m", "99"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o12.pqm", "--model", "{bundle}", "--quality", "101"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/ok.png"]),  # the input itself
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/out.webp"]),  # a .pqm under an image name
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o13.pqm", "--model", "{bundle}", "--bpp", "nan"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o15.pqm", "--model", "{bundle}", "--bpp", "inf"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o16.pqm", "--model", "{bundle}", "--quality", "nan"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o17.pqm", "--model", "{bundle}", "--size", "0"]),
    ("encode", ["encode", "{d}/ok.png", "-o", "{d}/o18", "--model", "{bundle}", "--m", "4", "--bpp", "1"]),
    ("decode", ["decode", "{d}/missing.pqm", "-o", "{d}/p1.png"]),
    ("decode", ["decode", "{d}/empty.png", "-o", "{d}/p2.png"]),
    ("decode", ["decode", "{d}/text.pqm", "-o", "{d}/p3.png"]),
    ("decode", ["decode", "{d}/cut.pqm", "-o", "{d}/p4.png", "--model", "{bundle}"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p5.psd", "--model", "{bundle}"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p6.png", "--model", "{bundle}", "--layers", "0"]),
    ("decode", ["decode", "{d}/v1.pqm", "-o", "{d}/p7.png", "--layers", "1"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p8.png", "--model", "{d}/badjson.safetensors"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p9.png"]),  # its model is not installed
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p10.pqm", "--model", "{bundle}"]),  # not re-encoded
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p11.png", "--model", "{bundle}", "--crop", "-1,0,10,10"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p12.png", "--model", "{bundle}", "--crop", "0,0,5"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p13.png", "--model", "{bundle}", "--crop", "1.5,0,2,2"]),
    ("decode", ["decode", "{d}/ok.pqm", "-o", "{d}/p14.png", "--model", "{bundle}", "--crop", "0,0,99,2"]),
    ("info", ["info", "{d}/missing.pqm"]),
    ("info", ["info", "{d}/text.pqm"]),
    ("info", ["info", "{d}/empty.png"]),
    ("truncate", ["truncate", "{d}/v1.pqm", "-o", "{d}/t1.pqm", "--layers", "1"]),
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t2.pqm", "--layers", "0"]),
    ("truncate", ["truncate", "{d}/text.pqm", "-o", "{d}/t3.pqm", "--bpp", "0.1"]),
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t4.pqm"]),  # neither --layers nor --bpp
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t5.png", "--layers", "1"]),  # a .pqm named .png
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t6.pqm", "--bpp", "inf"]),
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t7.pqm", "--bpp", "nan"]),
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t8.pqm", "--bpp", "0.001"]),  # below one layer
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t9.pqm", "--bpp", "0"]),
    ("truncate", ["truncate", "{d}/ok.pqm", "-o", "{d}/t10.pqm", "--bpp", "-1"]),
    ("export", ["export", "{d}/missing-checkpoint", "-o", "{d}/e1.safetensors"]),
    ("train", ["train", "--stage", "bogus", "--out", "{d}/run"]),
    ("bench", ["bench", "--codecs", "bogus", "--dataset", "{d}", "--out", "{d}/bench"]),
    ("demo", ["demo", "--image", "{d}/text.png", "-o", "{d}/demo.png"]),
]


@pytest.mark.parametrize("name,argv", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_bad_input_gives_one_line_and_status_1(files, name, argv, capsys, monkeypatch):
    d, bundle = files
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.delenv("CODEC_MODEL", raising=False)
    args = [a.format(d=d, bundle=bundle, single="extreme-s32-m1-k16") for a in argv]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, (args, err)
    assert len(err) == 1 and err[0].startswith(f"codec {name}: error: "), err
    assert "Traceback" not in err[0] and "BytesIO" not in err[0] and ".tmp-" not in err[0]
    out = args[args.index("-o") + 1] if "-o" in args else None
    if out is not None and not out.endswith(("ok.png", "ok.pqm")):  # nothing written, not even in part
        assert not Path(out).exists() and not list(Path(out).parent.glob(".*.tmp-*")), out


def test_huge_images_are_refused_in_one_line(files, capsys, monkeypatch):
    """Pillow's decompression-bomb error (an image over its pixel limit) is a one-line error."""
    d, _ = files
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 24 x 40 test image is a 'bomb' now
    assert main(["encode", str(d / "ok.png"), "-o", str(d / "bomb.pqm")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("codec encode: error: ") and "pixels" in err[0]


def test_re_encoding_a_pqm_says_so(files, capsys):
    d, bundle = files
    out = d / "again.pqm"
    assert main(["encode", str(d / "ok.pqm"), "-o", str(out), "--model", str(bundle)]) == 0
    assert "is a .pqm file: decoding it" in capsys.readouterr().err
    assert out.read_bytes()[:3] == b"PQM"


def test_bench_finds_kodak_without_the_working_directory(tmp_path, monkeypatch):
    from codec.cli import default_dataset
    from codec.errors import CodecError

    monkeypatch.setenv("CODEC_KODAK", str(tmp_path))
    assert default_dataset() == str(tmp_path)
    monkeypatch.setenv("CODEC_KODAK", str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    import codec.cli

    monkeypatch.setattr(codec.cli, "__file__", str(tmp_path / "a" / "b" / "cli.py"))
    with pytest.raises(CodecError, match="give --dataset"):
        default_dataset()


@pytest.mark.parametrize("delay", [0.4, 1.2, 2.5])
def test_ctrl_c_at_any_moment_is_one_line_and_leaves_nothing(tmp_path, delay):
    """SIGINT while the CLI starts (torch import, model load) or works: exit status 130 or a
    finished file, one line, no traceback, no half-written output or temporary file."""
    import signal
    import subprocess
    import time
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "codec" / "data" / "sample.png"
    out = tmp_path / "out.pqm"
    p = subprocess.Popen(
        [sys.executable, "-m", "codec", "encode", str(src), "-o", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert "Traceback" not in err, err
    if not out.exists():  # interrupted: 130, or the interpreter re-raised SIGINT as it exited (-2)
        assert p.returncode in (130, -signal.SIGINT) and err.strip() == "codec encode: interrupted", err
        assert list(tmp_path.iterdir()) == []
    else:  # it finished before the signal arrived (-2: during the interpreter's shutdown)
        assert p.returncode in (0, -signal.SIGINT) and out.read_bytes()[:3] == b"PQM"
        assert [f.name for f in tmp_path.iterdir()] == ["out.pqm"]


def test_a_forged_huge_file_fails_in_seconds(files, capsys, monkeypatch):
    """A small .pqm whose valid header (CRC and all) declares a 4000 x 4000 image: codec decode
    fails in one line as soon as the range decoder runs past the end of the tiny payload."""
    import time

    from codec.engine import tiling
    from codec.engine.layered_codec import RatePoint
    from codec.engine.loading import load_codec
    from codec.format import bitstream

    d, bundle = files
    monkeypatch.setattr(tiling, "available_memory", lambda: None)  # the decoder is what is tested
    c = load_codec(bundle)
    point = RatePoint(c.groups[0] + c.groups[1])  # two layers
    streams = [b"\x5a\x13\x77", b"\x01"]
    forged = d / "forged.pqm"
    forged.write_bytes(bitstream.pack(c.header_for((4000, 4000), point, streams, [0, 0]), b"".join(streams)))
    t = time.perf_counter()
    assert main(["decode", str(forged), "-o", str(d / "forged.png"), "--model", str(bundle)]) == 1
    assert time.perf_counter() - t < 10.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "past the end" in err[0], err
    assert not (d / "forged.png").exists()


def test_bench_refuses_an_unknown_codec_before_any_work(files, capsys):
    d, _ = files
    out = d / "bench-unknown"
    assert main(["bench", "--codecs", "jpeg,nosuch", "--dataset", str(d), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()  # no tables of nothing, no results folder
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "unknown codec 'nosuch'" in err[0], err
    from codec.bench.run import check_codec_name

    for name in ("ours", "ours:default", "ours:a+b", "hyperprior:runs/x", "compressai:mbt2018-mean", "jxl"):
        check_codec_name(name)  # known names pass (whether they can run here is found later)
    for name in ("", "ours:", "hyperprior", "jpeg:x", "compressai:", "JPEG"):
        with pytest.raises(ValueError, match="unknown codec"):
            check_codec_name(name)


@pytest.mark.parametrize("bpp", ["inf", "nan", "0.001", "0", "-1"])
def test_truncate_refuses_a_budget_in_one_line_naming_it(files, capsys, bpp):
    """--bpp inf was a traceback, nan a raw float message, and a budget below the first layer
    wrote that layer anyway (far over the budget): each is now one line naming --bpp."""
    d, _ = files
    out = d / f"budget-{bpp}.pqm"
    assert main(["truncate", str(d / "ok.pqm"), "-o", str(out), "--bpp", bpp]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("codec truncate: error: ") and "--bpp" in err[0], err
    assert not out.exists()
