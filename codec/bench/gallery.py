"""A gallery to look at, not read: one static HTML page with crops of a few photos side by
side at matched file size, ``codec gallery``.

Per photo and target rate: our file at that rate (``--bpp``), decoded by each of the model's
decoders (fidelity, realism where the bundle has one), and for each classical codec the
largest file not larger than ours (a placeholder where the codec has no file that small, as
JPEG at the lowest rates). Every tile is the same crop of the whole decoded image (the most
detailed ``crop`` x ``crop`` region of the original), captioned with its file size, bpp and
whole-image PSNR. Clicking a row shows it 3x enlarged with sharp pixels (the state is the
URL's fragment, ``#zoom=ROW``, so a zoomed view can be linked to).

Layout of the output folder: ``index.html`` and ``tiles/*.png``; written into a temporary
folder and renamed, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import classical
from ..errors import CodecError
from ..util.files import atomic_write
from ..util.metrics import image_quality

CLASSICAL = ("webp", "avif", "jpeg")
LABELS = {"webp": "WebP", "avif": "AVIF", "jpeg": "JPEG", "fidelity": "ours", "realism": "ours, realism"}


@dataclass
class Tile:
    """One cell of the page: ``pixels`` uint8 [crop, crop, 3] or None (no file this small)."""

    label: str
    caption: str
    pixels: np.ndarray | None


def detailed_crop(img: np.ndarray, size: int) -> tuple[int, int]:
    """(y, x) of the ``size`` x ``size`` window of uint8 [H, W, 3] with the most gradient
    energy, among windows on a grid of half-window steps (the crop where codecs differ most);
    the centre for an image not larger than the window."""
    H, W = img.shape[:2]
    if H <= size or W <= size:
        return max(0, (H - size) // 2), max(0, (W - size) // 2)
    g = img.astype(np.float32).mean(-1)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1]
    step = max(1, size // 2)
    ys = sorted({*range(0, H - size, step), H - size})
    xs = sorted({*range(0, W - size, step), W - size})
    best = max((float(energy[y : y + size, x : x + size].mean()), y, x) for y in ys for x in xs)
    return best[1], best[2]


def _caption(nbytes: int, pixels: int, psnr: float) -> str:
    return f"{nbytes:,} B · {8 * nbytes / pixels:.3f} bpp · {psnr:.2f} dB"


def rate_row(
    codec, img: np.ndarray, bpp: float, window: tuple[int, int, int], codecs=CLASSICAL
) -> list[Tile]:
    """The tiles of one photo at one target rate: ours (each decoder of ``codec``, a loaded
    layered codec) at ``bpp``, then each classical codec at the largest file not larger."""
    from ..format.checks import Rate

    y, x, size = window
    cut = lambda a: a[y : y + size, x : x + size]  # noqa: E731
    pixels = img.shape[0] * img.shape[1]
    data = codec.compress(img, rate=Rate(bpp=bpp))
    tiles = []
    for name in codec.decoders:
        rec = codec.decompress(data, decoder=name)
        tiles.append(
            Tile(LABELS[name], _caption(len(data), pixels, image_quality(rec, img)["psnr"]), cut(rec))
        )
    for name in codecs:
        fit = classical.fit_size(img, name, len(data))
        if fit is None:
            tiles.append(Tile(LABELS[name], f"no file of at most {len(data):,} B", None))
            continue
        rec = classical.decode(fit[1])
        tiles.append(
            Tile(LABELS[name], _caption(len(fit[1]), pixels, image_quality(rec, img)["psnr"]), cut(rec))
        )
    return tiles


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222 }
h2 { font-size: 16px; margin: 1.6em 0 0.4em }
.rate { font-size: 12px; color: #666; margin: 0.6em 0 0.2em }
.row { display: flex; gap: 8px; align-items: flex-start; margin-bottom: 10px; overflow-x: auto;
       cursor: zoom-in }
figure { margin: 0 }
figure img, .missing { width: var(--crop); height: var(--crop); display: block; image-rendering: pixelated }
.missing { background: repeating-linear-gradient(45deg, #eee 0 8px, #ddd 8px 16px) }
figcaption { font-size: 12px; max-width: var(--crop) }
figcaption b { display: block }
.row.zoomed { cursor: zoom-out }
.row.zoomed figure img, .row.zoomed .missing { width: calc(3 * var(--crop)); height: calc(3 * var(--crop)) }
"""

SCRIPT = """
function applyZoom() {
  const m = location.hash.match(/^#zoom=(.+)$/);
  document.querySelectorAll('.row').forEach(r => r.classList.toggle('zoomed', !!m && r.id === m[1]));
}
document.querySelectorAll('.row').forEach(r => r.addEventListener('click', () => {
  location.hash = r.classList.contains('zoomed') ? '' : 'zoom=' + r.id;
}));
window.addEventListener('hashchange', applyZoom);
window.addEventListener('load', () => {
  applyZoom();
  const imgs = [...document.images], ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  document.body.dataset.loaded = ok.length + '/' + imgs.length;
});
"""


def page(title: str, photos: list[tuple[str, Tile, list[tuple[float, list[Tile]]]]], crop: int) -> str:
    """The HTML of the gallery: per photo its original crop and one row per rate; tiles'
    images at ``tiles/{row}-{column}.png`` (see :func:`write_gallery`)."""
    parts = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>:root {{ --crop: {crop}px }}{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Each row: one photo at one rate; every codec's largest file not larger than ours. "
        "Captions: file size, bits per pixel, PSNR of the whole image. Click a row to enlarge it 3x.</p>",
    ]
    for p, (name, original, rows) in enumerate(photos):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        for r, (bpp, tiles) in enumerate(rows):
            row = f"p{p}r{r}"
            parts.append(f'<p class="rate">target {bpp:g} bpp</p><div class="row" id="{row}">')
            for c, t in enumerate([original, *tiles]):
                img = (
                    f'<img src="tiles/{row}-{c}.png" alt="{html.escape(t.label)}">'
                    if t.pixels is not None
                    else '<div class="missing"></div>'
                )
                parts.append(
                    f"<figure>{img}<figcaption><b>{html.escape(t.label)}</b>{html.escape(t.caption)}"
                    "</figcaption></figure>"
                )
            parts.append("</div>")
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_gallery(
    images: list[Path],
    out: Path,
    model: str | None = None,
    bpps: tuple[float, ...] = (0.05, 0.1, 0.2),
    crop: int = 256,
    codecs: tuple[str, ...] = CLASSICAL,
) -> Path:
    """Writes the gallery of ``images`` at the target rates ``bpps`` into the folder ``out``
    (``index.html``, ``tiles/``) and returns the page's path. Classical codecs that this
    Pillow cannot write are left out (:func:`codec.classical.missing`)."""
    from ..engine.loading import get_codec
    from ..util.imageio import load_rgb

    if not images:
        raise CodecError("no images for the gallery")
    if crop < 16:
        raise CodecError(f"--crop {crop}: at least 16 pixels")
    codec = get_codec(model)
    codecs = tuple(c for c in codecs if classical.missing(c) is None)
    photos = []
    for path in images:
        img = load_rgb(path).permute(1, 2, 0).numpy()
        y, x = detailed_crop(img, crop)
        window = (y, x, min(crop, img.shape[0], img.shape[1]))
        original = Tile(
            "original",
            f"{Path(path).name}, {img.shape[1]}x{img.shape[0]}",
            img[y : y + window[2], x : x + window[2]],
        )
        rows = [(b, rate_row(codec, img, b, window, codecs)) for b in bpps]
        photos.append((Path(path).name, original, rows))

    def write(folder: Path) -> None:
        (folder / "tiles").mkdir(parents=True)
        for p, (_, original, rows) in enumerate(photos):
            for r, (_, tiles) in enumerate(rows):
                for c, t in enumerate([original, *tiles]):
                    if t.pixels is not None:
                        Image.fromarray(np.ascontiguousarray(t.pixels)).save(
                            folder / "tiles" / f"p{p}r{r}-{c}.png"
                        )
        title = f"codec {codec.model_id.hex()} at matched file size"
        size = max(original.pixels.shape[0] for _, original, _ in photos)  # photos smaller than --crop
        (folder / "index.html").write_text(page(title, photos, size), encoding="utf-8")

    atomic_write(out, write)
    return Path(out) / "index.html"
