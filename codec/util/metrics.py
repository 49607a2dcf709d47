"""Image quality metrics on float images in [0, 1], [B, 3, H, W]."""

from __future__ import annotations

import torch


def from_uint8(img) -> torch.Tensor:
    """uint8 [H, W, 3] (array or tensor) -> float [1, 3, H, W] in [0, 1] (a copy)."""
    import numpy as np

    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


def image_quality(rec, ref) -> dict:
    """{"psnr": dB, "ms_ssim": float or None} of a decoded uint8 [H, W, 3] against the original."""
    x, y = from_uint8(rec), from_uint8(ref)
    s = ms_ssim(x, y)
    return {"psnr": float(psnr(x, y)[0]), "ms_ssim": float(s[0]) if s is not None else None}


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """What a decoder writes to a PNG: rounded to 1/255 steps."""
    return (x.clamp(0, 1) * 255).round() / 255


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over RGB, per image [B] (peak 1.0)."""
    mse = ((x.float() - y.float()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """MS-SSIM per image [B] (torchmetrics, 5 scales), or None when torchmetrics is not
    installed or the image is too small for 5 scales (a side under 161 pixels)."""
    if min(x.shape[-2:]) <= 160:
        return None
    try:
        from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as f
    except ImportError:
        return None
    return f(x.float(), y.float(), data_range=1.0, reduction="none")


def alexnet_weights_cached() -> bool:
    """Whether torchvision's AlexNet weights (LPIPS's backbone) are in the user's torch cache."""
    from pathlib import Path

    return any((Path(torch.hub.get_dir()) / "checkpoints").glob("alexnet-*.pth"))


def load_lpips(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The LPIPS (AlexNet) metric, frozen; raises RuntimeError saying what is missing rather
    than downloading anything (nothing is fetched at run time)."""
    if not alexnet_weights_cached():
        raise RuntimeError(
            "LPIPS needs torchvision's pretrained AlexNet weights in the torch cache "
            f"({torch.hub.get_dir()}/checkpoints/alexnet-owt-*.pth); they cannot be downloaded here"
        )
    try:
        import lpips
    except ImportError as e:
        raise RuntimeError("LPIPS needs the 'lpips' package (pip install codec[bench])") from e
    m = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m
