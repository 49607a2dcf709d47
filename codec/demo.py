"""``codec demo``: the bundled model on the bundled sample image, against JPEG and WebP.

:func:`run_demo` compresses the sample (or any image) with a model bundle (default: the one
shipped in the package), decompresses it, and reports bytes, bpp, PSNR, MS-SSIM, encode and
decode time, beside JPEG and WebP files of at most the same size; it writes the
reconstruction as PNG.

:func:`run_lossless_demo` (``codec demo --lossless``) shows the range coder alone: it
codes the image's pixels losslessly with a small predictive model: row by row (each row a
stage that the decoder decodes before it can build the next row's distributions), green
first, predicted from the row above, then red and blue, predicted from the row above plus
the green change. Every sample gets its own 256-way distribution as logits (a discretized
Laplace around the prediction, wider where the row above is busy), which the C++ coder
quantizes itself: the figures show the coder's speed and overhead on real, per-symbol
distributions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from .entropy import RangeDecoder, RangeEncoder, information_content

_LEVELS = np.arange(256, dtype=np.float32)


def sample_image_path() -> Path:
    """The bundled sample photograph (Kodak kodim23, 768x512 RGB PNG)."""
    return Path(str(resources.files("codec") / "data" / "sample.png"))


def _row_logits(prev: np.ndarray, prev2: np.ndarray, green: np.ndarray | None) -> np.ndarray:
    """Logits [n, 256] for one stage of a row.

    prev, prev2: the two rows above, int32 [W, 3]. green: None for the green stage, else
    the decoded green row int32 [W] (the stage then covers red and blue: n = 2W).
    """
    up_g = prev[:, 1]
    busy = np.abs(prev - prev2).sum(axis=1) + np.abs(np.diff(prev[:, 1], prepend=prev[0, 1]))
    if green is None:
        pred, busy = up_g, busy
    else:
        dg = green - up_g
        pred = np.concatenate([prev[:, 0] + dg, prev[:, 2] + dg])
        busy = np.concatenate([busy + np.abs(dg), busy + np.abs(dg)])
    scale = (0.8 + 0.25 * busy).astype(np.float32)
    pred = np.clip(pred, 0, 255).astype(np.float32)
    return -np.abs(_LEVELS[None, :] - pred[:, None]) / scale[:, None]


def _stages(img: np.ndarray):
    """Yields (row, prev, prev2) for the stage schedule; rows above row 0 are mid-grey."""
    grey = np.full(img.shape[1:], 128, np.int32)
    for y in range(img.shape[0]):
        yield y, (img[y - 1] if y >= 1 else grey), (img[y - 2] if y >= 2 else grey)


def encode_pixels(img: np.ndarray, threads: int | None = None) -> tuple[bytes, float]:
    """Codes uint8 [H, W, 3] losslessly; returns (stream, ideal information content in bits)."""
    x = img.astype(np.int32)
    enc = RangeEncoder(threads=threads)
    bits = 0.0
    for y, prev, prev2 in _stages(x):
        for green, sym in ((None, x[y, :, 1]), (x[y, :, 1], np.concatenate([x[y, :, 0], x[y, :, 2]]))):
            logits = _row_logits(prev, prev2, green)
            enc.encode_logits(sym, logits)
            bits += information_content(sym, logits)
    return enc.finish(), bits


def decode_pixels(data: bytes, height: int, width: int, threads: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_pixels`: uint8 [H, W, 3]."""
    x = np.zeros((height, width, 3), np.int32)
    dec = RangeDecoder(data, threads=threads)
    for y, prev, prev2 in _stages(x):
        x[y, :, 1] = dec.decode_logits(_row_logits(prev, prev2, None))
        rb = dec.decode_logits(_row_logits(prev, prev2, x[y, :, 1]))
        x[y, :, 0], x[y, :, 2] = rb[:width], rb[width:]
    return x.astype(np.uint8)


@dataclass
class LosslessDemoResult:
    image: str
    width: int
    height: int
    symbols: int
    stream_bytes: int
    bpp: float
    ideal_bytes: float
    overhead_percent: float
    encode_ms: float
    decode_ms: float
    lossless: bool
    png_bytes: int

    def report(self) -> str:
        return "\n".join(
            [
                f"image            {self.image} ({self.width}x{self.height} RGB)",
                "model            lossless row-by-row prediction, a 256-way distribution per sample",
                f"symbols          {self.symbols} (K=256, {2 * self.height} stages)",
                f"stream           {self.stream_bytes} bytes = {self.bpp:.4f} bpp",
                f"ideal            {self.ideal_bytes:.1f} bytes (information content under the "
                f"quantized distributions); overhead {self.overhead_percent:.5f}%"
                + (
                    " (below zero: the stream ends in zero bytes, which it drops)"
                    if self.overhead_percent < 0
                    else ""
                ),
                f"encode           {self.encode_ms:.0f} ms "
                f"({self.symbols / self.encode_ms / 1e3:.2f} Msym/s, model included)",
                f"decode           {self.decode_ms:.0f} ms "
                f"({self.symbols / self.decode_ms / 1e3:.2f} Msym/s, model included)",
                f"round trip       {'lossless: identical pixels' if self.lossless else 'MISMATCH'}",
                f"for comparison   the PNG file is {self.png_bytes} bytes "
                f"({8 * self.png_bytes / (self.width * self.height):.4f} bpp)",
            ]
        )


def run_lossless_demo(image: str | Path | None = None, threads: int | None = None) -> LosslessDemoResult:
    """Encodes and decodes ``image`` (default: the bundled sample) and measures it."""
    path = Path(image) if image is not None else sample_image_path()
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w, _ = img.shape
    t0 = time.perf_counter()
    data, bits = encode_pixels(img, threads)
    t1 = time.perf_counter()
    out = decode_pixels(data, h, w, threads)
    t2 = time.perf_counter()
    return LosslessDemoResult(
        image=path.name,
        width=w,
        height=h,
        symbols=img.size,
        stream_bytes=len(data),
        bpp=8 * len(data) / (h * w),
        ideal_bytes=bits / 8,
        overhead_percent=100 * (8 * len(data) - bits) / bits,
        encode_ms=1e3 * (t1 - t0),
        decode_ms=1e3 * (t2 - t1),
        lossless=bool(np.array_equal(out, img)),
        png_bytes=path.stat().st_size,
    )


@dataclass
class DemoResult:
    """Figures of one lossy round trip; ``others``: (codec, quality, bytes, PSNR, MS-SSIM)."""

    image: str
    width: int
    height: int
    model: str
    bytes: int
    psnr: float
    ms_ssim: float | None
    encode_ms: float
    decode_ms: float
    runs: int
    threads: int
    output: str
    others: list[tuple[str, int, int, float, float | None]]

    @property
    def bpp(self) -> float:
        return 8 * self.bytes / (self.width * self.height)

    def report(self) -> str:
        px = self.width * self.height

        def quality(p: float, s: float | None) -> str:
            return f"PSNR {p:6.2f} dB  MS-SSIM {s:.4f}" if s is not None else f"PSNR {p:6.2f} dB"

        lines = [
            f"image      {self.image} ({self.width}x{self.height} RGB)",
            f"model      {self.model}",
            f"ours       {self.bytes:6d} bytes  {self.bpp:.4f} bpp  {quality(self.psnr, self.ms_ssim)}"
            "  (.pqm file, header included)",
            f"time       encode {self.encode_ms:.0f} ms, decode {self.decode_ms:.0f} ms "
            f"(median of {self.runs} runs, {self.threads} threads)",
        ]
        for name, q, n, p, s in self.others:
            lines.append(
                f"{name:10} {n:6d} bytes  {8 * n / px:.4f} bpp  {quality(p, s)}  (quality {q}: "
                "the best file not larger than ours)"
            )
        lines.append(f"wrote      {self.output} (the reconstruction)")
        return "\n".join(lines)


def run_demo(
    image: str | Path | None = None,
    model: str | Path | None = None,
    output: str | Path = "codec-demo.png",
    threads: int | None = None,
    runs: int = 3,
    force: bool = True,
) -> DemoResult:
    """Compresses and decompresses ``image`` (default: the bundled sample) with ``model``
    (default: the bundled model), times both (median of ``runs``, after one warm-up), and
    compares with JPEG and WebP at the same size. Writes the reconstruction to ``output``
    (replacing an existing file only with ``force``)."""
    import io
    import statistics

    import torch

    from . import classical
    from .engine.loading import get_codec
    from .engine.registry import default_model_path
    from .util.files import write_output
    from .util.metrics import image_quality

    if threads:
        torch.set_num_threads(threads)
    path = Path(image) if image is not None else sample_image_path()
    model_path = Path(model) if model is not None else default_model_path()
    codec = get_codec(model_path)
    img = np.asarray(Image.open(path).convert("RGB"))
    data, out = codec.compress(img), None
    t_enc, t_dec = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        again = codec.compress(img)
        t1 = time.perf_counter()
        out = codec.decompress(data)
        t2 = time.perf_counter()
        if again != data:
            raise RuntimeError("two compressions of one image gave different bytes")
        t_enc.append(t1 - t0)
        t_dec.append(t2 - t1)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG")
    write_output(str(output), buf.getvalue(), force)
    others = []
    for name in ("jpeg", "webp"):
        fit = classical.fit_size(img, name, len(data))
        if fit is not None:
            q, enc = fit
            qual = image_quality(classical.decode(enc), img)
            others.append((name.upper(), q, len(enc), qual["psnr"], qual["ms_ssim"]))
    h, w, _ = img.shape
    ours = image_quality(out, img)
    return DemoResult(
        image=path.name,
        width=w,
        height=h,
        model=f"{model_path.name} (id {codec.model_id.hex()})",
        bytes=len(data),
        psnr=ours["psnr"],
        ms_ssim=ours["ms_ssim"],
        encode_ms=1e3 * statistics.median(t_enc),
        decode_ms=1e3 * statistics.median(t_dec),
        runs=runs,
        threads=torch.get_num_threads(),
        output=str(output),
        others=others,
    )
