"""The ``codec`` command line. User errors print one line and exit with status 1."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from functools import partial
from itertools import accumulate
from pathlib import Path

from . import __version__
from .errors import CodecError
from .format.checks import RATE_ARGS, checked_rate
from .util.files import check_output, write_output


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def _outputs(inputs: list[str], output: str, ext: str) -> list[str]:
    if len(inputs) == 1 and not Path(output).is_dir():
        return [output]
    if not Path(output).is_dir():
        raise CodecError(f"several inputs need -o to be an existing folder, not {output}")
    if "-" in inputs:
        raise CodecError("'-' (stdin) can only be the single input")
    outs = [str(Path(output) / (Path(i).stem + ext)) for i in inputs]
    seen: dict[str, str] = {}
    for i, o in zip(inputs, outs):  # a/x.png and b/x.png (or x.png and x.jpg) -> one out/x.pqm
        if o in seen:
            raise CodecError(f"{seen[o]} and {i} would both be written to {o}: code them separately")
        seen[o] = i
    return outs


def _checked_outputs(args: argparse.Namespace, ext: str) -> list[str]:
    outs = _outputs(args.inputs, args.output, ext)
    for o in outs:
        check_output(o, args.force, args.inputs)
    return outs


def _image_format(dst: str) -> str:
    """The Pillow format an image output is written in: by its extension, else PNG ('-' too)."""
    from PIL import Image

    # preinit() loads the common formats' plugins (PNG among them), which fill Image.SAVE;
    # init() imports all ~50 of them, which costs more than writing a PNG: only when needed
    Image.preinit()
    ext = "" if dst == "-" else Path(dst).suffix.lower()
    if ext and ext not in Image.EXTENSION:
        Image.init()
    return Image.EXTENSION.get(ext, "PNG")


def _check_pqm_output(dst: str, command: str) -> None:
    """Refuses to write .pqm bytes under the name of an image format (x.png holding a .pqm)."""
    from PIL import Image

    ext = Path(dst).suffix.lower()
    if dst != "-" and ext != ".pqm" and ext in Image.registered_extensions():
        raise CodecError(f"{dst}: codec {command} writes .pqm files; name the output .pqm")


def _cmd_encode(args: argparse.Namespace) -> None:
    from .engine.loading import get_codec
    from .format import bitstream

    outs = _checked_outputs(args, ".pqm")
    for dst in outs:
        _check_pqm_output(dst, "encode")
    rate = checked_rate(*(getattr(args, k) for k in RATE_ARGS), flag="--")  # before the model loads
    if args.base_stages is not None and not 1 <= args.base_stages <= bitstream.MAX_STAGES:
        raise CodecError(f"--base-stages must be in 1..{bitstream.MAX_STAGES}")
    codec = get_codec(args.model)
    with _base_stages(codec, args.base_stages):
        if args.stages is not None and not 0 <= args.stages <= codec.schedule.stages:
            raise CodecError(f"--stages must be in 0..{codec.schedule.stages} for this model")
        _encode_files(codec, args, outs, rate)


@contextlib.contextmanager
def _base_stages(codec, stages: int | None) -> Iterator[None]:
    """``codec`` (cached and shared) writes its base layer in ``stages`` spatial stages inside
    the block only (None: as the codec writes by default). Files record their schedule: any S decodes."""
    own = codec.schedule
    if stages is not None:
        codec.schedule = dataclasses.replace(own, stages=stages)
    try:
        yield
    finally:
        codec.schedule = own


def _encode_files(codec, args: argparse.Namespace, outs: list[str], rate) -> None:
    """Each input of ``args`` coded by ``codec`` at ``rate`` into its output in ``outs``."""
    import io

    from PIL import Image, UnidentifiedImageError

    from .engine.loading import decoder_for_file
    from .format import bitstream

    for src, dst in zip(args.inputs, outs):
        raw = _read(src)
        if not raw:
            raise CodecError(f"{'stdin' if src == '-' else src}: empty input, no image")
        if raw[:3] == b"PQM":  # decode it (with --model if it made the file, else its own model)
            print(f"note: {src} is a .pqm file: decoding it and coding its pixels again", file=sys.stderr)
            header, _ = bitstream.unpack(raw)
            made_by = args.model if header.model_id == codec.model_id else None  # else its own model
            img = Image.fromarray(decoder_for_file(raw, made_by).decompress(raw))
        else:
            try:
                img = Image.open(io.BytesIO(raw))
                img.load()
            except Image.DecompressionBombError as e:
                raise CodecError(f"{src}: {e}") from None
            except UnidentifiedImageError:
                raise CodecError(f"{src}: not an image Pillow can read (unknown format)") from None
            except (OSError, SyntaxError, ValueError) as e:
                raise CodecError(f"{src}: not an image Pillow can read ({e})") from None
        try:
            data = codec.compress(img, stages=args.stages, effort=args.effort, rate=rate)
        except ValueError as e:
            raise CodecError(str(e)) from None
        write_output(dst, data, args.force)
        if dst != "-":
            bpp = 8 * len(data) / (img.width * img.height)
            print(f"{src} -> {dst}: {len(data)} bytes, {bpp:.4f} bpp", file=sys.stderr)


PNG_OPTIONS = {"compress_level": 1, "compress_type": 3}
"""How ``codec decode`` writes PNG: zlib's fastest level (OpenCV's default too; Pillow's
default, 6, takes about four times as long for files about a tenth smaller) with its
run-length strategy (``zlib.Z_RLE``): on decoded photos both faster and smaller than level 1's
default strategy (results/decode_only.md), and on flat pictures smaller still."""


def _cmd_decode(args: argparse.Namespace) -> None:
    import io

    from PIL import Image

    from .engine.loading import decoder_for_file
    from .format.checks import share

    if args.realism_strength is not None:
        if args.decoder != "realism":
            raise CodecError("--realism-strength needs --decoder realism")
        share("--realism-strength", args.realism_strength, CodecError)
    outs = _checked_outputs(args, ".png")
    for dst in outs:  # a format Pillow cannot write is refused before any decoding
        fmt = _image_format(dst)
        if fmt == "PQM":  # Pillow would encode the decoded image again, with the default model
            raise CodecError(f"{dst}: codec decode writes images, not .pqm files; use .png, .webp, .tif, ...")
        if fmt not in Image.SAVE:
            raise CodecError(f"{dst}: Pillow cannot write {fmt} files; use .png, .webp, .tif, ...")
    for src, dst in zip(args.inputs, outs):
        data = _read(src)
        if not data:
            raise CodecError(f"{'stdin' if src == '-' else src}: empty input, not a .pqm file")
        decoder = decoder_for_file(data, args.model)  # the file's own model unless --model names one
        extra = {}
        if args.crop is not None:
            try:
                extra["crop"] = tuple(int(v) for v in args.crop.split(","))
                assert len(extra["crop"]) == 4
            except (ValueError, AssertionError):
                raise CodecError(f"--crop takes X,Y,WIDTH,HEIGHT in pixels, not {args.crop!r}") from None
        pixels = decoder.decompress(
            data,
            stages=args.stages,
            layers=args.layers,
            max_pixels=args.max_pixels,
            decoder=args.decoder,
            realism_strength=args.realism_strength,
            **extra,
        )
        buf, fmt = io.BytesIO(), _image_format(dst)
        Image.fromarray(pixels).save(buf, format=fmt, **(PNG_OPTIONS if fmt == "PNG" else {}))
        write_output(dst, buf.getvalue(), args.force)


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo, run_lossless_demo

    if args.lossless:
        print(run_lossless_demo(args.image, threads=args.threads).report())
        return
    check_output(args.output, args.force, [args.image] if args.image else [])
    print(run_demo(args.image, args.model, args.output, threads=args.threads, force=args.force).report())


def default_dataset() -> str:
    """Kodak for ``codec bench``: ``$CODEC_KODAK``, else the project's shared data beside this
    source checkout, else ``../shared/data/kodak`` from the working directory."""
    candidates = [os.environ.get("CODEC_KODAK", "")]
    candidates += [str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak")]
    candidates += ["../shared/data/kodak"]
    for c in candidates:
        if c and Path(c).is_dir():
            return c
    raise CodecError("no Kodak folder found: give --dataset DIR (or set CODEC_KODAK)")


def _cmd_bench(args: argparse.Namespace) -> None:
    from .bench.run import run_bench

    def pair(text: str) -> tuple[float, float]:
        lo, _, hi = text.partition(",")
        return float(lo), float(hi)

    summary = run_bench(
        default_dataset() if args.dataset is None else args.dataset,
        [c for c in args.codecs.split(",") if c],
        args.out,
        pair(args.bpp_range),
        args.points,
        args.workers,
        args.max_images,
        bd_range=pair(args.bd_range) if args.bd_range else None,
    )
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.json, results.csv, rd_psnr.png, rd_ms_ssim.png, summary.md")
    if not summary["curves"]:
        raise CodecError("no codec produced a curve")


def _cmd_gallery(args: argparse.Namespace) -> None:
    from .bench.gallery import write_gallery
    from .util.imageio import list_images

    images = [p for item in args.images for p in (list_images(item) if Path(item).is_dir() else [Path(item)])]
    images = images[: args.max_images] if args.max_images else images
    check_output(args.output, args.force, [str(p) for p in images])
    bpps = tuple(float(b) for b in args.bpp.split(",") if b)
    if not bpps or any(not 0 < b < 24 for b in bpps):
        raise CodecError(f"--bpp {args.bpp}: comma-separated rates in (0, 24) bits per pixel")
    page = write_gallery(images, Path(args.output), args.model, bpps, args.crop)
    print(f"wrote {page} ({len(images)} photos at {', '.join(f'{b:g}' for b in bpps)} bpp)")


def _cmd_models(args: argparse.Namespace) -> None:
    from .engine.registry import describe

    rows = describe()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    fmt = "{:20s} {:>8s} {:>7s} {:>8s} {:>8s}  {:15s} {}"
    print(fmt.format("name", "bpp*", "PSNR*", "MS-SSIM*", "size", "grid", "decoders"))
    for r in rows:
        k = r["kodak"]
        print(
            fmt.format(
                r["name"] + (" (" + ", ".join(r["aliases"]) + ")" if r["aliases"] else ""),
                f"{k['bpp']:.4f}" if "bpp" in k else "-",
                f"{k['psnr']:.2f}" if "psnr" in k else "-",
                f"{k['ms_ssim']:.4f}" if "ms_ssim" in k else "-",
                f"{r['bytes'] / 1e6:.1f} MB",
                r["grid"],
                r["decoders"],
            )
        )
    total = sum(r["bytes"] for r in rows) / 1e6
    print(
        f"{len(rows)} models, {total:.1f} MB in all; * Kodak, 24 images, real files (see zoo.json); "
        "(name): another name of the same model"
    )


def _cmd_info(args: argparse.Namespace) -> None:
    from .format import bitstream

    data = _read(args.file)
    header, payload = bitstream.unpack(data, max_pixels=args.max_pixels)
    pixels = header.height * header.width
    m, h, w = header.token_shape
    rows = [
        ("file", args.file),
        ("format", f".pqm version {header.version}"),
        ("image", f"{header.width}x{header.height}, {header.channels} channels"),
        (
            "size",
            f"{len(data)} bytes = {8 * len(data) / pixels:.4f} bpp "
            f"(header {bitstream.header_size(header, len(payload))})",
        ),
        ("model", header.model_id.hex()),
        ("tokens", f"{m} x {h} x {w} (stride {header.stride}, M={header.M}, K={header.K})"),
        (
            "schedule",
            f"{header.stages} stages, {header.stages_present} present, alpha {header.alpha}, "
            f"order {header.order}"
            + (" (base layer)" if header.groups else "")
            + (
                f", in tiles of {bitstream.TILE_TOKENS}x{bitstream.TILE_TOKENS} positions"
                if header.flags & bitstream.FLAG_TILED
                else ""
            ),
        ),
        ("decoders", "fidelity, realism" if header.flags & bitstream.FLAG_REALISM else "fidelity"),
    ]
    if header.groups:
        bounds = list(accumulate(header.groups, initial=0))
        rows.insert(
            6, ("rate", f"m={header.m} codes of {header.M}, +1 at {header.extra} of {h * w} positions")
        )
        layers = ", ".join(
            f"{bounds[i]}-{min(bounds[i + 1], header.m + (header.extra > 0)) - 1}: {n} B"
            for i, n in enumerate(header.layer_bytes)
        )
        rows.insert(
            7, ("layers", f"{len(header.layer_bytes)} of {len(header.groups)} (codes: bytes) {layers}")
        )
    for k, v in rows:
        print(f"{k:10s} {v}")


def _cmd_truncate(args: argparse.Namespace) -> None:
    from .format import bitstream

    if (args.layers is None) == (args.bpp is None):
        raise CodecError("give one of --layers or --bpp")
    checked_rate(bpp=args.bpp, flag="--")  # nan, inf, <= 0: refused as codec encode refuses them
    _check_pqm_output(args.output, "truncate")
    data = _read(args.input)
    check_output(args.output, args.force, [args.input])
    header, payload = bitstream.unpack(data)  # the one parse: bitstream.truncate without a second
    max_bytes = None if args.bpp is None else int(args.bpp * header.height * header.width / 8)
    cut, kept = bitstream.cut_layers(header, payload, args.layers, max_bytes)
    out = data if cut is header else bitstream.pack(cut, kept)
    if max_bytes is not None and len(out) > max_bytes:  # even the base layer alone is larger
        raise CodecError(
            f"no file of this image fits in {max_bytes} bytes (--bpp {args.bpp}; the smallest, "
            f"its first layer, is {len(out)} bytes)"
        )
    write_output(args.output, out, args.force)
    if args.output != "-":
        bpp = 8 * len(out) / (header.height * header.width)
        print(
            f"{args.input} -> {args.output}: {len(cut.layer_bytes)} layers, m={cut.m}, {len(out)} bytes, "
            f"{bpp:.4f} bpp",
            file=sys.stderr,
        )


def _cmd_train(args: argparse.Namespace) -> None:
    from .train import train
    from .train.config import from_args

    cfg = from_args(args)
    result = train(cfg)
    if result.metrics:
        print(json.dumps(result.metrics))


def _cmd_export(args: argparse.Namespace) -> None:
    from .models.io import export_checkpoint, is_bundle, rewrite_bundle, save_bundle

    if is_bundle(args.checkpoint):  # a bundle rewritten: same model id unless --entropy
        if not (args.realism or args.latent_weights or args.entropy or args.realism_strength):
            give = "--entropy, --realism, --realism-strength or --latent-weights"
            raise CodecError(f"{args.checkpoint} is a bundle: give {give}")
        check_output(args.output, False, [args.checkpoint])
        if args.entropy and not Path(args.entropy).exists():  # before any measuring
            raise CodecError(f"entropy model not found: {args.entropy}")
        strength = args.realism_strength and _number_list("--realism-strength", args.realism_strength)
        weights = _latent_weights(args.checkpoint, args.latent_weights) if args.latent_weights else None
        try:
            path = rewrite_bundle(args.checkpoint, args.output, args.realism, weights, args.entropy, strength)
        except ValueError as e:
            raise CodecError(str(e)) from None
    elif args.latent_weights or args.realism_strength:
        flag = "--latent-weights" if args.latent_weights else "--realism-strength"
        raise CodecError(f"{flag} rewrites a bundle: give the bundle file")
    elif args.entropy:
        from .entropy.schedule import CodingSchedule

        schedule = CodingSchedule(args.stages, args.alpha, args.order).__dict__
        path = save_bundle(
            args.output,
            args.checkpoint,
            args.entropy,
            schedule,
            command=args.command_line,
            realism=args.realism,
        )
    else:
        path = export_checkpoint(args.checkpoint, args.output, command=args.command_line)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, fp16)")


def _number_list(flag: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise CodecError(f"{flag} takes numbers separated by commas, not {text!r}") from None


LATENT_WEIGHT_IMAGES = 8
"""Images (the first, in sorted order) and probes per image of ``codec export
--latent-weights``; their centres, at most 512 px a side, are decoded at 8 codes."""
LATENT_WEIGHT_PROBES = 4


def _latent_weights(bundle: str, folder: str):
    """:func:`codec.engine.effort.latent_weights` of the bundle's model on ``folder``'s images."""
    from .engine.effort import latent_weights
    from .engine.loading import load_codec
    from .util.imageio import list_images, load_rgb

    try:
        files = list_images(folder)[:LATENT_WEIGHT_IMAGES]
    except FileNotFoundError as e:
        raise CodecError(str(e)) from None
    if not files:
        raise CodecError(f"--latent-weights {folder}: no images there")
    codec = load_codec(bundle)
    if not getattr(codec, "layered", False):
        raise CodecError(f"{bundle}: latent weights serve the effort of nested (layered) models only")
    images = []
    for f in files:
        x = load_rgb(f).float() / 255
        h, w = min(x.shape[1], 512), min(x.shape[2], 512)
        top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
        images.append(x[:, top : top + h, left : left + w])
    return latent_weights(codec.autoencoder, images, probes=LATENT_WEIGHT_PROBES)


def build_parser(train_stages: bool = True) -> argparse.ArgumentParser:
    """The ``codec`` parser: one subcommand per ``_add_*`` function below, in this order.
    ``train_stages=False`` leaves out the flags of ``codec train``'s stages (built from their
    configs' source), for a command line that is not ``codec train``."""
    p = argparse.ArgumentParser(
        prog="codec", description="A learned image codec (PQ-VAE + masked entropy model)."
    )
    p.add_argument("--version", action="version", version=f"codec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _add_demo,
        _add_encode,
        _add_decode,
        _add_truncate,
        _add_models,
        _add_info,
        _add_bench,
        _add_gallery,
        partial(_add_train, stages_too=train_stages),
        _add_export,
    ):
        add(sub)
    return p


def _add_demo(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="code the bundled sample image and print the figures")
    d.add_argument("--image", help="another image instead of the bundled sample")
    d.add_argument("--model", help="model bundle (default: $CODEC_MODEL or the bundled one)")
    d.add_argument("-o", "--output", default="codec-demo.png", help="where the reconstruction goes (PNG)")
    d.add_argument("--force", action="store_true", help="replace an existing output file")
    d.add_argument("--threads", type=int, default=None, help="threads (default: torch's)")
    d.add_argument(
        "--lossless", action="store_true", help="the range coder alone: lossless coding of the pixels"
    )
    d.set_defaults(func=_cmd_demo)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    en = sub.add_parser("encode", help="images -> .pqm files ('-': stdin/stdout)")
    en.add_argument("inputs", nargs="+")
    en.add_argument("-o", "--output", required=True, help="a file, '-', or a folder for several inputs")
    en.add_argument("--model", help="model bundle (default: $CODEC_MODEL or the bundled one)")
    en.add_argument("--force", action="store_true", help="replace existing output files")
    en.add_argument(
        "--stages", type=int, help="write only the first stages: a smaller file, decoded progressively"
    )
    en.add_argument(
        "--base-stages",
        type=int,
        metavar="S",
        help="code the first code of each position in S spatial stages (default: 6, or the model's own "
        "count where fewer; the default model's is 8): fewer decode faster for a slightly larger file "
        "(against 8, per photo: 6 about 2 bytes more, 4 about 10)",
    )
    en.add_argument(
        "--effort",
        type=int,
        default=0,
        choices=range(10),
        metavar="0..9",
        help="encode time for a better token grid, same decoder (0: fastest, default; 9: up to ~25x slower)",
    )
    rate = en.add_argument_group("rate control (nested models; at most one)")
    rate.add_argument("--bpp", type=float, help="target bits per pixel: the nearest file the model offers")
    rate.add_argument("--size", type=int, help="the best file not larger than SIZE bytes")
    rate.add_argument(
        "--quality",
        type=float,
        help="0-100, monotone in rate (default 30: about 0.2 bpp with the default model; 100: the full rate)",
    )
    rate.add_argument("--m", type=int, help="codes per latent position (a nested model's rate point)")
    en.set_defaults(func=_cmd_encode)


def _add_decode(sub: argparse._SubParsersAction) -> None:
    de = sub.add_parser(
        "decode", help=".pqm files -> images (PNG, zlib level 1, unless -o names another format)"
    )
    de.add_argument("inputs", nargs="+")
    de.add_argument("-o", "--output", required=True, help="a file, '-', or a folder for several inputs")
    de.add_argument(
        "--model", help="model bundle (default: the shipped model the file names, else $CODEC_MODEL)"
    )
    de.add_argument("--stages", type=int, default=None, help="decode only the first t stages (progressive)")
    de.add_argument("--layers", type=int, default=None, help="layered files: decode only the first L layers")
    de.add_argument(
        "--crop", metavar="X,Y,W,H", help="only this region (pixels): the decoder runs on it alone"
    )
    de.add_argument(
        "--decoder",
        choices=("fidelity", "realism"),
        default="fidelity",
        help="fidelity (MSE-trained) or realism (discriminator-trained) decoder of the same tokens",
    )
    de.add_argument(
        "--realism-strength",
        type=float,
        metavar="S",
        help="with --decoder realism: its image's share over the fidelity decoder's, 0 to 1 "
        "(default: the model's own for the file's rate)",
    )
    de.add_argument("--max-pixels", type=int, default=None, help="refuse larger images (default: Pillow's)")
    de.add_argument("--force", action="store_true", help="replace existing output files")
    de.set_defaults(func=_cmd_decode)


def _add_truncate(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("truncate", help="cut a layered .pqm after a quality layer (a valid lower-rate file)")
    tr.add_argument("input")
    tr.add_argument("-o", "--output", required=True, help="output file ('-': stdout)")
    tr.add_argument("--layers", type=int, help="keep the first L layers")
    tr.add_argument("--bpp", type=float, help="keep as many layers as fit in this many bits per pixel")
    tr.add_argument("--force", action="store_true", help="replace an existing output file")
    tr.set_defaults(func=_cmd_truncate)


def _add_models(sub: argparse._SubParsersAction) -> None:
    ms = sub.add_parser("models", help="list the shipped models with their Kodak bpp and PSNR")
    ms.add_argument("--json", action="store_true", help="machine-readable")
    ms.set_defaults(func=_cmd_models)


def _add_info(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("info", help="print the header of a .pqm file ('-' reads stdin)")
    i.add_argument("file")
    i.add_argument(
        "--max-pixels", type=int, default=None, help="refuse larger images (default: Pillow's limit)"
    )
    i.set_defaults(func=_cmd_info)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="rate-distortion benchmark against classical codecs (BD-rate, plots)")
    b.add_argument(
        "--dataset", default=None, help="a folder of images (default: Kodak: $CODEC_KODAK or the shared data)"
    )
    b.add_argument("--codecs", default="ours,jpeg,jpeg444,webp,avif,jxl", help="comma-separated")
    b.add_argument("--out", default="bench/results/rd", help="results folder (a rerun resumes)")
    b.add_argument("--bpp-range", default="0.05,1.0", help="sweep range, bpp")
    b.add_argument("--bd-range", default="", help="BD-rate range LO,HI in bpp (default: the sweep range)")
    b.add_argument("--points", type=int, default=8, help="settings per classical codec")
    b.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    b.add_argument("--max-images", type=int, default=0, help="only the first N images (0: all)")
    b.set_defaults(func=_cmd_bench)


def _add_gallery(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gallery", help="an HTML page of crops side by side with WebP, AVIF, JPEG at matched size"
    )
    g.add_argument("images", nargs="+", help="images or folders of images")
    g.add_argument("-o", "--output", default="gallery", help="the folder to write (index.html, tiles/)")
    g.add_argument("--model", help="model bundle (default: $CODEC_MODEL or the bundled one)")
    g.add_argument("--bpp", default="0.05,0.1,0.2", help="target rates of our files, comma-separated")
    g.add_argument("--crop", type=int, default=256, help="crop size, pixels (the most detailed region)")
    g.add_argument("--max-images", type=int, default=0, help="only the first N images (0: all)")
    g.add_argument("--force", action="store_true", help="replace an existing output folder")
    g.set_defaults(func=_cmd_gallery)


def _add_train(sub: argparse._SubParsersAction, stages_too: bool = True) -> None:
    t = sub.add_parser(
        "train",
        help="train one stage: codec train STAGE [flags] (resumable; DDP under torchrun)",
        description="Train one stage; `codec train STAGE --help` lists its flags.",
    )
    t.set_defaults(func=_cmd_train)
    if not stages_too:
        return
    from .train.config import STAGES, add_flags

    stages = t.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, cls in STAGES.items():
        doc = (cls.__doc__ or name).strip()
        summary = " ".join(doc.split()).split(": ", 1)[-1].split(". ")[0].rstrip(".")
        sp = stages.add_parser(name, help=summary, description=doc)
        add_flags(sp, cls)


def _add_export(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="write a checkpoint's weights as small fp16 safetensors")
    e.add_argument(
        "checkpoint",
        help="a run's checkpoint folder (runs/NAME/checkpoint), or a bundle to rewrite with --entropy, "
        "--realism or --latent-weights",
    )
    e.add_argument(
        "--entropy",
        help="an entropy-model checkpoint: one codec bundle of both "
        "(or a bundle's new entropy model: a new model id)",
    )
    e.add_argument("-o", "--output", required=True)
    e.add_argument(
        "--realism", help="a --stage realism checkpoint whose decoder joins the bundle (or replaces its own)"
    )
    e.add_argument(
        "--latent-weights",
        metavar="DIR",
        help="a bundle gets the encoder's latent weights for --effort, measured on DIR's first images",
    )
    e.add_argument(
        "--realism-strength",
        metavar="S1,S2,...",
        help="a bundle's share of the realism decoder's image in --decoder realism, for files of 1, 2, ... "
        "codes per position (the last value goes on to M)",
    )
    e.add_argument("--command-line", default="", help="the command that trained it, stored in the file")
    e.add_argument("--stages", type=int, default=8, help="bundle: default coding schedule, stages S")
    e.add_argument("--alpha", type=float, default=2.2, help="bundle: schedule exponent")
    e.add_argument("--order", default="lds", help="bundle: position order (raster, permutation, lds)")
    e.set_defaults(func=_cmd_export)


def _with_stage(argv: list[str]) -> list[str]:
    """Earlier command lines keep working: ``codec train [--stage S] [--preset P] ...`` without
    a STAGE word gets one (``--stage``, else the recipe's first stage, else autoencoder);
    the old preset ``flagship-entropy`` is the ``flagship`` recipe's entropy stage."""
    if not argv or argv[0] != "train" or len(argv) > 1 and not argv[1].startswith("-"):
        return argv
    from .train.config import RECIPES, STAGES

    rest, stage = argv[1:], None
    if any(a in ("-h", "--help") for a in rest[:1]):
        return argv
    for i, a in enumerate(rest):
        if a == "--stage" and i + 1 < len(rest):
            stage = rest[i + 1]
            rest = rest[:i] + rest[i + 2 :]
            break
        if a.startswith("--stage="):
            stage = a.split("=", 1)[1]
            rest = rest[:i] + rest[i + 1 :]
            break
    for i, a in enumerate(rest):
        if a in ("--preset", "--recipe") and i + 1 < len(rest):
            if rest[i + 1] == "flagship-entropy":
                rest[i + 1], stage = "flagship", stage or "entropy"
            recipe = RECIPES / f"{rest[i + 1]}.json"
            if stage is None and recipe.is_file():
                sections = json.loads(recipe.read_text())
                stage = next((s for s in STAGES if s in sections), None)
    if stage is not None and stage not in STAGES:
        raise CodecError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    return ["train", stage or "autoencoder", *rest]


_LIST_OPTIONS = ("--crop", "--bpp-range", "--bd-range")
"""Options whose value is a comma-separated list of numbers, which may start with '-'."""


def _glue_values(argv: list[str]) -> list[str]:
    """``--crop -1,0,10,10`` -> ``--crop=-1,0,10,10``: argparse takes a value starting with '-'
    that is not one number for an option (and fails with its usage text); glued, the value
    reaches the command, which checks it and says in one line what is wrong."""
    out, i = [], 0
    while i < len(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if argv[i] in _LIST_OPTIONS and value[:1] == "-" and value[1:2] in (*"0123456789", "."):
            out.append(f"{argv[i]}={value}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


ENCODE_EXTRA = ("torch", "torchvision", "torchmetrics", "tqdm")
"""What ``pip install 'codec[encode]'`` adds: encoding, training and benchmarks need it."""


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand. Errors the user can act on (bad input, bad arguments, missing or
    damaged files) print one line and return 1; Ctrl-C returns 130; never a traceback."""
    command = "codec"
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if argv[:1] and not argv[0].startswith("-"):  # named from the start: Ctrl-C may come early
            command = f"codec {argv[0]}"
        parser = build_parser(train_stages=argv[:1] == ["train"])
        args = parser.parse_args(_glue_values(_with_stage(argv)))
        command = f"codec {args.command}"
        args.func(args)
    except (CodecError, OSError, ValueError) as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ENCODE_EXTRA:
            raise
        print(
            f"{command}: error: needs {e.name}, which is not installed: pip install 'codec[encode]' "
            "(decoding needs only codec itself)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
