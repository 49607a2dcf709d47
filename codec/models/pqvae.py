"""The product(-residual)-quantized VQ-VAE: Encoder -> ProductQuantizer -> Decoder.

Image tensors are float in [0, 1], ``[B, 3, H, W]``; any H, W (padded to a multiple of the
stride by edge replication, cropped back after decoding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .quantizer import ProductQuantizer


@dataclass
class PQVAEConfig:
    """Sizes of a PQ-VAE. ``stride`` = 2**len(channels)."""

    channels: list[int] = field(default_factory=lambda: [64, 96, 128, 192])  # per downsampling stage
    blocks: int | list[int] = (
        1  # residual blocks per stage (one int for all, or one per stage, high res first)
    )
    latent_dim: int = 256  # D
    M: int = 8
    K: int = 256
    attention: bool = False  # self-attention at the lowest resolution
    ema_decay: float = 0.99
    restart_threshold: float = 0.5
    # Nested product quantization: sub-vectors ordered by importance; any prefix of m of them
    # decodes (absent ones take a learned fill), so one model serves every rate.
    nested: bool = False
    # Product-residual quantization: the group of each of the M codes, in nested order (a group
    # may take several residual stages); empty: product quantization, code j = group j.
    code_groups: list[int] = field(default_factory=list)
    groups: int = 0  # latent groups G (0: M)
    # A linear patch transform at the stride (initialised as a PCA of training patches) as a skip
    # path of the encoder and the decoder; the nonlinear branches start at zero, so an untrained
    # model codes like the linear transform.
    transform: bool = False
    # Residual blocks the decoder adds after its own at each stage (one per stage, high
    # resolution first; empty: none). They start as the identity, so capacity can be added to a
    # trained decoder (with the encoder frozen: same tokens, same entropy model).
    extra_decoder_blocks: list[int] = field(default_factory=list)

    @property
    def stage_blocks(self) -> list[int]:
        """Residual blocks of each stage, high resolution first."""
        b = self.blocks
        if isinstance(b, int):
            return [b] * len(self.channels)
        if len(b) != len(self.channels):
            raise ValueError(f"blocks {b} needs one count per stage of channels {self.channels}")
        return list(b)

    @property
    def stride(self) -> int:
        return 2 ** len(self.channels)

    @property
    def G(self) -> int:  # noqa: N802 (the papers' name)
        """Groups of the latent (M for product quantization)."""
        return self.groups or self.M

    @property
    def raw_bpp(self) -> float:
        """Rate bound before entropy coding: M * log2(K) / stride**2 bits per pixel."""
        return self.prefix_raw_bpp(self.M)

    def prefix_raw_bpp(self, m: int) -> float:
        """Raw bound of the first m codes (a nested model's rate point m)."""
        return m * math.log2(self.K) / self.stride**2

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


class Attention(nn.Module):
    """Multi-head self-attention over all positions of a (small) grid."""

    def __init__(self, c: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        return x + self.attn(t, t, t, need_weights=False)[0].transpose(1, 2).reshape(B, C, h, w)


class Encoder(nn.Module):
    """[B, 3, H, W] in [0, 1] (H, W multiples of the stride) -> z [B, D, H/s, W/s].

    With ``cfg.transform``: z = linear(x) + net(x), ``linear`` a patch transform at the stride
    (:meth:`PQVAE.init_transform`) and ``net``'s last layer starting at zero."""

    def __init__(self, cfg: PQVAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c, n in zip(cfg.channels, cfg.stage_blocks):
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1)] + [ResBlock(c) for _ in range(n)]
            c_in = c
        if cfg.attention:
            layers.append(Attention(c_in))
        layers += [nn.LeakyReLU(0.2), nn.Conv2d(c_in, cfg.latent_dim, 1)]
        self.net = nn.Sequential(*layers)
        self.linear = nn.Conv2d(3, cfg.latent_dim, cfg.stride, stride=cfg.stride) if cfg.transform else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x * 2 - 1)
        return z if self.linear is None else z + self.linear(x)


class Decoder(nn.Module):
    """z [B, D, h, w] -> image [B, 3, h*s, w*s] (unclamped, ~[0, 1]).

    ``net`` holds the layers; the extra blocks of a stage (``cfg.extra_decoder_blocks``) live
    in ``extra[stage]`` (stage 0: the highest resolution) and run after that stage's own
    blocks, so adding them leaves the names of a trained decoder's weights unchanged.
    With ``cfg.transform``: image = linear(z) + net(z / scale) / 2, ``linear`` the inverse
    patch transform, ``scale`` [D] the latent's spread per channel (so ``net`` sees unit-scale
    inputs), ``net``'s last layer starting at zero."""

    def __init__(self, cfg: PQVAEConfig) -> None:
        super().__init__()
        chans, blocks = list(reversed(cfg.channels)), list(reversed(cfg.stage_blocks))
        extra = list(cfg.extra_decoder_blocks) or [0] * len(chans)
        if len(extra) != len(chans):
            raise ValueError(f"extra_decoder_blocks {extra} needs one count per stage of {cfg.channels}")
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_dim, chans[0], 3, padding=1)]
        if cfg.attention:
            layers.append(Attention(chans[0]))
        self.extra = nn.ModuleDict()
        self._extra_after: dict[int, str] = {}  # index in net -> key of the blocks that follow it
        for i, (c, n) in enumerate(zip(chans, blocks)):
            c_out = chans[i + 1] if i + 1 < len(chans) else 32
            layers += [ResBlock(c) for _ in range(n)]
            stage = len(chans) - 1 - i
            if extra[stage]:
                self.extra[str(stage)] = nn.Sequential(*[ResBlock(c) for _ in range(extra[stage])])
                self._extra_after[len(layers) - 1] = str(stage)
            layers += [nn.LeakyReLU(0.2), nn.Conv2d(c, 4 * c_out, 3, padding=1), nn.PixelShuffle(2)]
        layers += [nn.LeakyReLU(0.2), nn.Conv2d(32, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.linear = None
        if cfg.transform:
            self.linear = nn.ConvTranspose2d(cfg.latent_dim, 3, cfg.stride, stride=cfg.stride)
            self.register_buffer("scale", torch.ones(cfg.latent_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.linear is not None:
            return self.linear(z) + self._branch(z / self.scale.to(z.dtype)[:, None, None]) * 0.5
        return self._branch(z) * 0.5 + 0.5

    def _branch(self, z: torch.Tensor) -> torch.Tensor:
        if not self._extra_after:
            return self.net(z)
        for j, layer in enumerate(self.net):
            z = layer(z)
            if j in self._extra_after:
                z = self.extra[self._extra_after[j]](z)
        return z

    def zero_extra_blocks(self) -> None:
        """The extra blocks' residual branches output zero: the decoder computes what it did
        without them."""
        for m in self.extra.modules():
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.conv2.weight)
                nn.init.zeros_(m.conv2.bias)


def kaiming_init(module: nn.Module) -> None:
    """He initialisation (learned much faster than PyTorch's default here, DESIGN.md)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)
    for m in module.modules():  # residual branches start near identity
        if isinstance(m, ResBlock):
            m.conv2.weight.data.mul_(0.1)


def pad_to_multiple(x: torch.Tensor, s: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    ph, pw = (-H) % s, (-W) % s
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class PQVAE(nn.Module):
    """Encoder + ProductQuantizer + Decoder.

    ``forward(x)`` (training): returns ``(x_hat, indices, stats)``; with
    ``quantize=False`` the quantizer is bypassed (autoencoder warm-up); ``prefix`` (nested
    models; int [B], or [B, h, w] per latent position) keeps that many leading codes
    and gives the others the learned fill (nested dropout).
    ``encode(x)`` -> indices int64 [B, M, h, w]; ``decode(indices, (H, W))`` -> image in [0, 1],
    where a nested model accepts any prefix ``indices[:, :m]`` (and a per-position count map).
    """

    def __init__(self, cfg: PQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = ProductQuantizer(
            cfg.latent_dim,
            cfg.M,
            cfg.K,
            decay=cfg.ema_decay,
            restart_threshold=cfg.restart_threshold,
            code_groups=cfg.code_groups,
            groups=cfg.G,
        )
        self.decoder = Decoder(cfg)
        if cfg.nested:  # what the decoder sees for a group without codes: [G, D/G]
            self.fill = nn.Parameter(torch.zeros(cfg.G, cfg.latent_dim // cfg.G))
        kaiming_init(self)
        self.decoder.zero_extra_blocks()
        if cfg.transform:  # the nonlinear branches start at zero: the model codes like the transform
            for conv in (self.encoder.net[-1], self.decoder.net[-1]):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    @torch.no_grad()
    def init_transform(self, basis: torch.Tensor, scale: torch.Tensor) -> None:
        """Sets the linear skip paths to an orthonormal patch transform: ``basis`` [D, 3*s*s]
        (orthonormal rows, over patches flattened as [3, s, s]; no bias), ``scale`` [D] (the
        spread of each coefficient)."""
        s, D = self.stride, self.cfg.latent_dim
        w = basis.reshape(D, 3, s, s).to(self.encoder.linear.weight)
        for lin in (self.encoder.linear, self.decoder.linear):  # ConvTranspose2d: the transpose
            lin.weight.copy_(w)
            nn.init.zeros_(lin.bias)
        self.decoder.scale.copy_(scale.clamp_min(1e-3))

    @property
    def stride(self) -> int:
        return self.cfg.stride

    def fill_absent(self, z_q: torch.Tensor, has_code: torch.Tensor | None) -> torch.Tensor:
        """z_q [B, D, h, w] with each group that has no code (``has_code`` bool [B, G, h, w]
        False) replaced by the learned fill; ``has_code`` None or a model that is not nested
        (no fill: such a group stays zero): unchanged."""
        if has_code is None or not self.cfg.nested:
            return z_q
        B, D, h, w = z_q.shape
        G = self.cfg.G
        keep = has_code[:, :, None].expand(B, G, D // G, h, w).reshape(B, D, h, w)
        return torch.where(keep, z_q, self.fill.reshape(1, D, 1, 1).to(z_q.dtype))

    def forward(self, x: torch.Tensor, quantize: bool = True, prefix: torch.Tensor | None = None):
        H, W = x.shape[-2:]
        if prefix is not None and not self.cfg.nested:
            raise ValueError("prefix needs a nested model")
        if quantize:
            z_q, indices, stats = self.quantized_latent(x, prefix)
        else:
            z_q = self.encoder(pad_to_multiple(x, self.stride))
            indices, stats = None, {"commit_loss": z_q.new_zeros(()), "perplexity": None}
        return self.decoder(z_q)[..., :H, :W], indices, stats

    def quantized_latent(self, x: torch.Tensor, prefix: torch.Tensor | None = None):
        """What the decoder sees for images [B, 3, H, W] in [0, 1]: ``(z_q [B, D, h, w],
        indices, stats)``, the groups without codes given the learned fill; ``prefix``: see
        :meth:`forward` (nested models only)."""
        z_q, indices, stats = self.quantizer(self.encoder(pad_to_multiple(x, self.stride)), prefix)
        return self.fill_absent(z_q, stats.get("has_code")), indices, stats

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> token indices int64 [B, M, ceil(H/s), ceil(W/s)]."""
        z = self.encoder(pad_to_multiple(x, self.stride))
        return self.quantizer(z)[1]

    def latent(self, indices: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's input [B, D, h, w] from indices [B, m, h, w] (m < M: nested models only).
        ``counts`` (int [B, h, w], each <= m): sub-vectors present per position (default m)."""
        m, M = indices.shape[1], self.cfg.M
        if not 1 <= m <= M or (not self.cfg.nested and (m < M or counts is not None)):
            raise ValueError(
                f"{m} codes given, the model needs {M}" + ("" if self.cfg.nested else " (not nested)")
            )
        return self.fill_absent(*self.quantizer.dequantize(indices, counts))

    @torch.no_grad()
    def decode(
        self, indices: torch.Tensor, size: tuple[int, int], counts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token indices [B, m, h, w] -> images [B, 3, H, W] in [0, 1] (size = (H, W));
        ``counts``: see :meth:`latent`."""
        x = self.decoder(self.latent(indices, counts))
        return x[..., : size[0], : size[1]].clamp(0, 1)


def random_prefix(
    B: int, M: int, h: int, w: int, generator: torch.Generator, log_uniform: bool = False
) -> torch.Tensor:
    """Nested dropout's per-position counts int64 [B, h, w]: per image a rate r ~ U(1, M)
    (``log_uniform``: log r ~ U(0, log M), as many draws below sqrt(M) codes as above); every
    position keeps floor(r) sub-vectors, and one more with probability r - floor(r), so the
    decoder also learns the fractional prefixes that fine rate control writes."""
    u = torch.rand(B, generator=generator)
    r = M**u if log_uniform else 1 + u * (M - 1)
    m = r.floor().long()
    extra = torch.rand(B, h, w, generator=generator) < (r - m)[:, None, None]
    return (m[:, None, None] + extra.long()).clamp(max=M)
