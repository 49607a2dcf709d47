"""The VQ-conditioned discriminator of ILLM (Muckley et al., ICML 2023), our own implementation.

Instead of "real or fake" it predicts, for every 8x8 patch, which code a frozen label model
(a VQ-VAE with one codebook, :class:`LabelModel`) gives the *original* image there, or class 0
("fake"). Real images are trained toward ``label + 1``, reconstructions toward 0; the decoder
(generator) is trained so that its reconstruction is classified as the original's ``label + 1``.
With ``classes=1`` the same network is the binary real/fake discriminator of the ablation.

Shapes: images ``[B, 3, H, W]`` in [0, 1] with H, W multiples of 16; the codec latent
``[B, D, H/s, W/s]``; logits ``[B, classes, H/8, W/8]``; labels int64 ``[B, H/8, W/8]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .pqvae import PQVAE


class LabelModel(nn.Module):
    """A frozen PQ-VAE with one codebook (M=1) that labels each ``stride`` x ``stride`` patch:
    ``forward(x)`` -> int64 ``[B, ceil(H/s), ceil(W/s)]`` in ``[0, K)``. Float32, eval mode,
    no gradients: the labels of an image do not depend on the batch it is in."""

    def __init__(self, vqvae: PQVAE) -> None:
        super().__init__()
        if vqvae.cfg.M != 1:
            raise ValueError(f"a label model has one codebook, this one has M={vqvae.cfg.M}")
        self.vqvae = vqvae.float().eval().requires_grad_(False)

    @property
    def K(self) -> int:
        return self.vqvae.cfg.K

    @property
    def stride(self) -> int:
        return self.vqvae.stride

    def train(self, mode: bool = True) -> LabelModel:  # stays frozen inside a training module
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.vqvae.encode(x.float())[:, 0]


def _conv(cin: int, cout: int, stride: int = 1, sn: bool = True) -> nn.Module:
    conv = nn.Conv2d(cin, cout, 3, stride, 1)
    return spectral_norm(conv) if sn else conv


class _Block(nn.Module):
    """Two 3x3 convs with leaky ReLU and a 1x1 residual path; ``stride`` 2 halves the size."""

    def __init__(self, cin: int, cout: int, stride: int, sn: bool) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, stride, sn)
        self.conv2 = _conv(cout, cout, 1, sn)
        skip = nn.Conv2d(cin, cout, 1, stride)
        self.skip = spectral_norm(skip) if sn else skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return h + self.skip(x)


class ConditionalUNetDiscriminator(nn.Module):
    """OASIS-style U-Net discriminator, output at stride 8, ``classes`` logits per location.

    The codec's quantized latent enters through a small conv, is upsampled (nearest) to the
    image size and concatenated with the image. Encoder: stride 2, 4, 8, 16 (``channels``);
    decoder: back up to stride 8 with a skip from the stride-8 encoder features.
    ``classes``: K + 1 for the VQ-conditioned discriminator (0 = fake), 1 for binary.
    """

    def __init__(
        self,
        latent_dim: int,
        classes: int,
        channels: tuple[int, ...] = (64, 128, 256, 256),
        cond_channels: int = 32,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError("channels: four widths, for strides 2, 4, 8 and 16")
        self.classes = classes
        self.cond = nn.Conv2d(latent_dim, cond_channels, 3, 1, 1)
        widths = (3 + cond_channels, *channels)
        self.down = nn.ModuleList(_Block(widths[i], widths[i + 1], 2, spectral) for i in range(4))
        self.up = _Block(channels[3] + channels[2], channels[2], 1, spectral)
        self.head = nn.Conv2d(channels[2], classes, 1)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] (H, W multiples of 16) and latent [B, D, h, w]
        -> logits [B, classes, H/8, W/8]."""
        H, W = x.shape[-2:]
        if H % 16 or W % 16:
            raise ValueError(f"image size {H}x{W}: the discriminator needs multiples of 16")
        c = F.interpolate(self.cond(latent), size=(H, W), mode="nearest")
        h = torch.cat([x * 2 - 1, c], 1)
        feats = []
        for block in self.down:
            h = block(h)
            feats.append(h)
        h = F.interpolate(feats[3], scale_factor=2, mode="nearest")
        h = self.up(torch.cat([h, feats[2]], 1))
        return self.head(F.leaky_relu(h, 0.2))


# -- losses (ILLM): cross-entropy over K + 1 classes per location -------------------------------


def _match(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    return labels


def vq_discriminator_loss(real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Real logits toward the original's ``labels + 1``, reconstruction logits toward 0 (fake);
    logits ``[B, K+1, h, w]``, labels ``[B, h, w]``. Mean over locations, nats."""
    target = _match(real, labels) + 1
    return F.cross_entropy(real.float(), target) + F.cross_entropy(fake.float(), torch.zeros_like(target))


def vq_generator_loss(fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reconstruction should be classified as the original's ``labels + 1``."""
    return F.cross_entropy(fake.float(), _match(fake, labels) + 1)


def binary_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The ablation: one logit per location, non-saturating real/fake loss."""
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def binary_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake.float()).mean()
