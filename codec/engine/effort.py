"""Encoder effort: spend encode time for better token grids; decoder and files unchanged.

The encoder network's tokens (effort 0) are not the best grid for its own decoder: the
encoder was trained to be good on average, and a hard quantizer hides what each image needs.
Effort ``E >= 1`` refines the continuous latent of one image by gradient steps on the pixel
error of the *quantized* decode, through the frozen decoder (straight-through quantization:
the forward pass uses the nearest codewords exactly, the gradient flows to the latent), and
keeps the token grid with the lowest error seen, so a higher effort is never worse in
distortion than effort 0 on the image it was measured on. With a nested model the error is
that of the rate point the file will have (its per-position sub-vector counts), so the
refinement works for the sub-vectors that are coded.

Rate is not in the objective: the refined grids cost a few percent more bits (measured in
docs/effort.md), which the rate controllers (``bpp=``, ``size=``) absorb by re-planning.

Efforts follow cjxl's 0..9 scale; :data:`EFFORT_STEPS` gives the gradient steps of each.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.pqvae import PQVAE, pad_to_multiple
from ..util.hardware import autocast

EFFORT_MAX_PIXELS = 1024 * 1024
"""The largest image effort > 0 refines (it runs the autoencoder on the whole image, with
gradients): larger ones are refused with CodecError (the CLI says to use effort 0, which
codes them in tiles)."""

EFFORT_STEPS = (0, 2, 3, 4, 6, 8, 10, 12, 16, 20)
"""Gradient steps on the latent for effort 0..9 (each one decoder forward + backward)."""


def learning_rate(steps: int) -> float:
    """Adam's step size on the latent for a run of ``steps``: larger for short runs, smaller
    for long ones (chosen on held-out BSDS500 test photos, not on Kodak: 0.01-0.02 was best
    for 3-6 steps, 0.005 for 20)."""
    return min(0.02, 0.03 / steps**0.5)


def effort_steps(effort: int) -> int:
    """Gradient steps of an effort level (ValueError outside 0..9)."""
    if not isinstance(effort, int) or not 0 <= effort < len(EFFORT_STEPS):
        raise ValueError(f"effort must be an integer in 0..{len(EFFORT_STEPS) - 1}, got {effort!r}")
    return EFFORT_STEPS[effort]


def refine_tokens(
    autoencoder: PQVAE,
    images: torch.Tensor,
    steps: int,
    counts: torch.Tensor | np.ndarray | None = None,
    amp: str = "auto",
    lr: float | None = None,
) -> torch.Tensor:
    """Token indices int64 ``[B, M, h, w]`` for images ``[B, 3, H, W]`` in [0, 1] whose
    quantized decode has the lowest mean squared error found in ``steps`` gradient steps
    from the encoder's latent (``steps = 0``: exactly ``autoencoder.encode``). ``counts``
    (nested models; int ``[B]`` or ``[B, h, w]``): the sub-vectors the file will code at
    each position; the others take the learned fill, as the decoder will see them.
    ``lr``: Adam's step size (default :func:`learning_rate`).
    The images of a batch are refined together but chosen per image."""
    ae = autoencoder
    q = ae.quantizer
    H, W = images.shape[-2:]
    with torch.no_grad():
        z0 = ae.encoder(pad_to_multiple(images, ae.stride)).float()
    B = z0.shape[0]

    best = q.indices(z0)
    if steps <= 0:
        return best
    if counts is not None:
        counts = torch.as_tensor(counts, device=z0.device)
    best_err = torch.full((B,), float("inf"), device=z0.device)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr or learning_rate(steps))
    frozen = [p for p in ae.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(steps + 1):  # the last pass only measures the last update
            tokens = q.indices(z.detach())
            codes, has_code = q.dequantize(tokens, counts)
            z_q = ae.fill_absent(z + (codes - z).detach(), has_code)  # straight-through
            with autocast(amp, z.device):
                x_hat = ae.decoder(z_q)[..., :H, :W]
            err = F.mse_loss(x_hat.float().clamp(0, 1), images, reduction="none").mean((1, 2, 3))
            better = err.detach() < best_err
            best_err = torch.where(better, err.detach(), best_err)
            best = torch.where(better[:, None, None, None], tokens, best)
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            err.sum().backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best
