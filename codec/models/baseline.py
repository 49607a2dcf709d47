"""CompressAI's learned codecs as benchmark baselines: the architectures, and one image's
strings as a file (the bytes the benchmark counts). Trained by ``codec train baseline``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

ARCHS = ("bmshj2018-hyperprior", "mbt2018-mean")


def build_baseline(arch: str, N: int, M: int) -> torch.nn.Module:
    """A CompressAI model: ScaleHyperprior (Balle et al. 2018) or MeanScaleHyperprior
    (Minnen et al. 2018, without the autoregressive context)."""
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    if arch not in ARCHS:
        raise ValueError(f"unknown --arch {arch!r} (choose from {', '.join(ARCHS)})")
    return (ScaleHyperprior if arch == ARCHS[0] else MeanScaleHyperprior)(N, M)


def pack_strings(strings: list[list[bytes]], shape: tuple[int, int], size: tuple[int, int]) -> bytes:
    """One image's CompressAI strings as a file: H, W, latent h, w (2 bytes each), then each
    string with a 4-byte length. The file size is the rate the benchmark counts."""
    out = bytearray()
    for v in (*size, *shape):
        out += int(v).to_bytes(2, "little")
    for s in strings:
        out += len(s[0]).to_bytes(4, "little") + s[0]
    return bytes(out)


def unpack_strings(data: bytes) -> tuple[list[list[bytes]], tuple[int, int], tuple[int, int]]:
    H, W, h, w = (int.from_bytes(data[i : i + 2], "little") for i in range(0, 8, 2))
    strings, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "little")
        strings.append([data[i + 4 : i + 4 + n]])
        i += 4 + n
    return strings, (h, w), (H, W)


@torch.no_grad()
def compress_image(model, x: torch.Tensor) -> bytes:
    """float [1, 3, H, W] in [0, 1] -> bytes (padded to a multiple of 64, replicate)."""
    H, W = x.shape[-2:]
    ph, pw = -H % 64, -W % 64
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
    r = model.compress(xp)
    return pack_strings(r["strings"], tuple(r["shape"]), (H, W))


@torch.no_grad()
def decompress_image(model, data: bytes) -> torch.Tensor:
    strings, shape, (H, W) = unpack_strings(data)
    y = model.decompress(strings, shape)["x_hat"]
    return y[..., :H, :W].clamp(0, 1)
