"""Tests for codec.cli and codec.demo."""

import numpy as np
from PIL import Image

from codec.cli import main
from codec.demo import decode_pixels, encode_pixels, run_lossless_demo, sample_image_path
from codec.format import bitstream as bs


def test_demo_pixels_round_trip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    img[4:] = 7  # flat part: cheap
    data, bits = encode_pixels(img)
    assert len(data) <= bits / 8 * 1.0001 + 8
    np.testing.assert_array_equal(decode_pixels(data, 9, 13), img)
    np.testing.assert_array_equal(decode_pixels(data, 9, 13, threads=1), img)


def test_demo_on_a_small_image(tmp_path, capsys):
    crop = Image.open(sample_image_path()).convert("RGB").crop((0, 0, 96, 64))
    crop.save(tmp_path / "crop.png")
    r = run_lossless_demo(tmp_path / "crop.png")
    assert r.lossless and r.symbols == 96 * 64 * 3
    assert 0 < r.bpp < 24 and abs(r.overhead_percent) < 1
    assert main(["demo", "--lossless", "--image", str(tmp_path / "crop.png")]) == 0
    out = capsys.readouterr().out
    assert "lossless" in out and "bpp" in out


def test_info(tmp_path, capsys):
    f = tmp_path / "x.pqm"
    f.write_bytes(bs.pack(bs.Header(height=100, width=200, stages=8, stages_present=3, alpha=2.2), b"xyz"))
    assert main(["info", str(f)]) == 0
    out = capsys.readouterr().out
    assert "200x100" in out and "8 stages, 3 present" in out


def test_info_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "bad.pqm"
    f.write_bytes(b"PQM\x07" + bytes(40))
    assert main(["info", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "version 7" in err
    assert main(["info", str(tmp_path / "missing.pqm")]) == 1
    assert "No such file" in capsys.readouterr().err


def test_the_parser_does_not_import_torch_and_every_train_flag_has_help():
    """codec --help must be quick (no torch import); codec train --help explains every flag."""
    import subprocess
    import sys

    code = "import sys, codec.cli; codec.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-1000:]
    import argparse
    import dataclasses

    from codec.train.config import STAGES, add_flags

    for cls in STAGES.values():
        p = argparse.ArgumentParser()
        add_flags(p, cls)
        helps = {a.dest: a.help for a in p._actions}
        for f in dataclasses.fields(cls):
            h = helps[f.name]
            assert "(default: " in h and not h.startswith(f.name.replace("_", " ") + " ("), (f.name, h)


def test_version_is_the_installed_distributions(capsys):
    """`codec --version` and the wheel's metadata read one source (codec/__init__.py)."""
    from importlib.metadata import version

    import pytest

    import codec

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.split() == ["codec", codec.__version__]
    assert version("codec") == codec.__version__
