"""The ``codec`` command line. User errors print one line and exit with status 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import CodecError


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    print(run_demo(args.image, threads=args.threads).report())


def _cmd_info(args: argparse.Namespace) -> None:
    from . import bitstream

    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    header, payload = bitstream.unpack(data, max_pixels=args.max_pixels)
    pixels = header.height * header.width
    m, h, w = header.token_shape
    rows = [
        ("file", args.file),
        ("format", f".pqm version {bitstream.VERSION}"),
        ("image", f"{header.width}x{header.height}, {header.channels} channels"),
        ("size", f"{len(data)} bytes = {8 * len(data) / pixels:.4f} bpp (header {len(data) - len(payload)})"),
        ("model", header.model_id.hex()),
        ("tokens", f"{m} x {h} x {w} (stride {header.stride}, M={header.M}, K={header.K})"),
        (
            "schedule",
            f"{header.stages} stages, {header.stages_present} present, alpha {header.alpha}, "
            f"order {header.order}",
        ),
        ("decoders", "fidelity, realism" if header.flags & bitstream.FLAG_REALISM else "fidelity"),
    ]
    for k, v in rows:
        print(f"{k:10s} {v}")


def _cmd_train(args: argparse.Namespace) -> None:
    from .train import train
    from .train.config import from_args

    cfg = from_args(args)
    result = train(cfg)
    if result.metrics:
        print(json.dumps(result.metrics))


def _cmd_export(args: argparse.Namespace) -> None:
    from .models.io import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.output, command=args.command_line)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, fp16)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codec", description="A learned image codec (PQ-VAE + masked entropy model)."
    )
    p.add_argument("--version", action="version", version=f"codec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="code the bundled sample image and print the figures")
    d.add_argument("--image", help="another image instead of the bundled sample")
    d.add_argument("--threads", type=int, default=None, help="coder threads (default: usable CPUs, max 8)")
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("info", help="print the header of a .pqm file ('-' reads stdin)")
    i.add_argument("file")
    i.add_argument(
        "--max-pixels", type=int, default=None, help="refuse larger images (default: Pillow's limit)"
    )
    i.set_defaults(func=_cmd_info)

    from .train.config import add_flags

    t = sub.add_parser("train", help="train a PQ-VAE (resumable; DDP under torchrun)")
    add_flags(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("export", help="write a checkpoint's weights as small fp16 safetensors")
    e.add_argument("checkpoint", help="a run's checkpoint folder (runs/NAME/checkpoint)")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--command-line", default="", help="the command that trained it, stored in the file")
    e.set_defaults(func=_cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CodecError, OSError) as e:
        print(f"codec {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
