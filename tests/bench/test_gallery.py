"""codec gallery: the crop it picks, the page it writes, the CLI's output rules, and the page
as a real browser (headless Chromium) draws it."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from codec.bench.gallery import Tile, detailed_crop, page, write_gallery
from codec.cli import main
from codec.demo import sample_image_path

CROP = 48


def test_detailed_crop_finds_the_texture():
    img = np.full((200, 300, 3), 128, np.uint8)
    img[120:180, 200:260] = np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    y, x = detailed_crop(img, 64)
    overlap = max(0, min(y + 64, 180) - max(y, 120)) * max(0, min(x + 64, 260) - max(x, 200))
    assert overlap >= 0.75 * 60 * 60  # the window holds most of the texture
    assert detailed_crop(img[:50], 64) == (0, 118)  # smaller than the window: centred


def test_page_lists_every_tile_and_escapes_text():
    px = np.zeros((CROP, CROP, 3), np.uint8)
    rows = [(0.1, [Tile("ours", "1 B", px), Tile("JPEG", "no file of at most 1 B", None)])]
    html = page("a <b> title", [("x&y.png", Tile("original", "o", px), rows)], CROP)
    assert "a &lt;b&gt; title" in html and "x&amp;y.png" in html
    assert re.findall(r'src="(tiles/[^"]+)"', html) == ["tiles/p0r0-0.png", "tiles/p0r0-1.png"]
    assert html.count('class="missing"') == 1 and 'id="p0r0"' in html


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    Image.open(sample_image_path()).convert("RGB").crop((200, 150, 360, 262)).save(folder / "photo.png")
    index = write_gallery([folder / "photo.png"], folder / "out", bpps=(0.3,), crop=CROP)
    return folder, index


def test_write_gallery(gallery):
    folder, index = gallery
    html = index.read_text()
    tiles = re.findall(r'src="(tiles/[^"]+)"', html)
    assert len(tiles) >= 3  # original, ours, and at least one classical codec at this size
    for t in tiles:
        assert Image.open(index.parent / t).size == (CROP, CROP)
    assert "0.3" in html and re.search(r"[\d,]+ B · 0\.\d+ bpp · \d+\.\d\d dB", html)
    original = np.asarray(Image.open(index.parent / tiles[0]))
    y, x = detailed_crop(np.asarray(Image.open(folder / "photo.png")), CROP)
    np.testing.assert_array_equal(
        original, np.asarray(Image.open(folder / "photo.png"))[y : y + CROP, x : x + CROP]
    )


def test_cli_refuses_an_existing_folder(gallery, capsys):
    folder, index = gallery
    before = index.read_bytes()
    assert main(["gallery", str(folder / "photo.png"), "-o", str(index.parent), "--crop", "32"]) == 1
    assert "exists" in capsys.readouterr().err and index.read_bytes() == before
    assert main(["gallery", str(folder / "photo.png"), "-o", str(folder / "new"), "--bpp", "0,1"]) == 1
    assert "--bpp" in capsys.readouterr().err and not (folder / "new").exists()


def _chromium() -> str | None:
    return next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )


def _browse(url: str, *extra: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        "--force-device-scale-factor=1",
        "--window-size=900,700",
        "--virtual-time-budget=3000",
    ]
    return subprocess.run([_chromium(), *flags, *extra, url], capture_output=True, text=True, timeout=120)


def _find(shot: np.ndarray, tile: np.ndarray) -> bool:
    """Whether ``tile`` appears pixel for pixel somewhere in ``shot``."""
    h, w = tile.shape[:2]
    for y, x in zip(*np.nonzero((shot[: -h + 1, : -w + 1] == tile[0, 0]).all(-1)), strict=True):
        if np.array_equal(shot[y : y + h, x : x + w], tile):
            return True
    return False


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (apt-get install chromium)")
def test_chromium_draws_the_page_and_zooms_a_row(gallery, tmp_path):
    _, index = gallery
    dom = _browse(index.as_uri(), "--dump-dom")
    loaded = re.search(r'data-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded and loaded.group(1) == loaded.group(2) != "0", dom.stderr[-2000:]
    original = np.asarray(Image.open(index.parent / "tiles" / "p0r0-0.png").convert("RGB"))
    for fragment, scale in (("", 1), ("#zoom=p0r0", 3)):
        shot = tmp_path / f"shot{scale}.png"
        _browse(index.as_uri() + fragment, f"--screenshot={shot}")
        pixels = np.asarray(Image.open(shot).convert("RGB"))
        tile = original.repeat(scale, 0).repeat(scale, 1)[: 3 * CROP // 2, : 3 * CROP // 2]  # in the window
        assert _find(pixels, tile), f"the original crop at {scale}x is not in the screenshot"
