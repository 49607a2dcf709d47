"""Compressed-training data augmentation, in the style of torchvision transforms v2.

- :class:`RandomCompression`: per image, in the data pipeline (DataLoader workers): encode
  to real bytes with a randomly drawn codec and rate, decode back.
- :class:`NeuralCompression`: batched, in the training loop, on the training device: images
  through our autoencoder and quantizer (the tokens a file would hold) and back, with each
  image's estimated bpp; no entropy coding.

Training a recognition model on such images recovers much of the accuracy that compression
costs it (bench/recognition.py measures how much).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

try:
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import Transform
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "codec.transforms needs torchvision (transforms v2): pip install 'codec[augment]'"
    ) from e

from . import classical
from .errors import CodecError
from .format import bitstream
from .util.hardware import autocast

OURS = "ours"


def parse_codec(spec: str) -> tuple[str, str | None]:
    """``"jpeg"`` -> ("jpeg", None); ``"ours"`` / ``"ours:MODEL"`` -> ("ours", MODEL or None).
    ValueError for an unknown codec, a model that is neither a bundle file nor a shipped name,
    or a codec whose library is missing here (so RandomCompression refuses it when built, not
    in a DataLoader worker)."""
    name, _, model = str(spec).partition(":")
    if name == OURS:
        from .engine.registry import resolve

        try:
            resolve(model or None)
        except CodecError as e:
            raise ValueError(f"codec {spec!r}: {e}") from None
        return name, model or None
    if name not in classical.SETTINGS or model:
        raise ValueError(f"unknown codec {spec!r} (known: {', '.join([*classical.SETTINGS, OURS])}[:MODEL])")
    why = classical.missing(name)
    if why:
        raise ValueError(f"codec {name!r} cannot run here: {why}")
    return name, None


def compress_decode(
    img: np.ndarray,
    codec: str,
    bpp: float | None = None,
    quality: int | None = None,
    bounds: tuple[float, float] | None = None,
) -> tuple[np.ndarray, int]:
    """uint8 RGB [H, W, 3] -> (decoded uint8 [H, W, 3], file size in bytes).

    Classical codecs: at ``quality`` when given, else at the setting whose file is nearest
    ``bpp`` (:func:`codec.classical.fit_bpp`, preferring one inside ``bounds``). ``ours`` /
    ``ours:MODEL``: the model's .pqm file, at ``bpp`` for a nested model (its rate control),
    at its one rate otherwise."""
    name, model = parse_codec(codec)
    if name == OURS:
        from .engine.loading import get_codec

        c = get_codec(model)
        data = c.compress(img, bpp=bpp) if bpp is not None and c.layered else c.compress(img)
        return c.decompress(data), len(data)
    if quality is not None:
        data = classical.encode(img, name, quality)
    elif bpp is not None:
        data = classical.fit_bpp(img, name, bpp, bounds)[1]
    else:
        raise ValueError("give a bpp or a quality")
    return classical.decode(data), len(data)


def finite_images(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged; ValueError if it holds NaN or +-inf (clamped and cast, they would pass
    as black or white pixels and give a finite, meaningless result)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError("images must hold finite values: this one has NaN or infinity")
    return x


def _pair(value, cast) -> tuple:
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    return cast(lo), cast(hi)


class RandomCompression(Transform):
    """Replaces an image by its compressed-and-decoded version, with probability ``p``.

    Per call, a codec is drawn uniformly from ``codecs`` (``jpeg``, ``jpeg444``, ``webp``,
    ``avif``, ``jxl``, ``ours`` or ``ours:MODEL`` with MODEL a shipped name or bundle path) and
    a target rate log-uniformly from ``bpp`` = (lo, hi) bits per pixel (a number: exactly
    that). Classical codecs reach the target by a quick search over their quality setting
    (5-7 encodes, preferring a file inside the range), or, when ``quality`` = (lo, hi) is
    given, draw a quality uniformly from it instead (one encode; faster). ``ours`` codes at
    its model's own rate point: choose rate points by listing several ``ours:MODEL``.

    Inputs: PIL images (RGB, L, RGBA with alpha kept, others converted to RGB) and tensors
    [..., C, H, W] with C = 1 or 3, uint8 or floating point in [0, 1], on any device;
    ``tv_tensors.Image`` stays one. The output has the input's type, mode, dtype, device and
    shape; the input is never modified. All images of one call (e.g. a batch tensor) share
    one draw.

    ``seed``: None draws from torch's global generator (which DataLoader seeds per worker);
    an int gives a private generator, reproducible, seeded by (seed, DataLoader worker id and
    its per-epoch seed) so workers and epochs differ. Picklable (the generator's state travels with it).
    """

    def __init__(
        self,
        codecs: Sequence[str] | str = ("jpeg", "webp", "avif"),
        bpp: float | Sequence[float] = (0.1, 1.0),
        quality: int | Sequence[int] | None = None,
        p: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        codecs = (codecs,) if isinstance(codecs, str) else tuple(codecs)
        if not codecs:
            raise ValueError("codecs must name at least one codec")
        for c in codecs:
            parse_codec(c)
        lo, hi = _pair(bpp, float)
        if not 0 < lo <= hi <= 24:
            raise ValueError(f"bpp must be (lo, hi) with 0 < lo <= hi <= 24, got {bpp!r}")
        if quality is not None:
            qlo, qhi = _pair(quality, int)
            if not 0 <= qlo <= qhi <= 100:
                raise ValueError(f"quality must be (lo, hi) with 0 <= lo <= hi <= 100, got {quality!r}")
            quality = (qlo, qhi)
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        self.codecs, self.bpp, self.quality, self.p, self.seed = codecs, (lo, hi), quality, float(p), seed
        self._gen: torch.Generator | None = None
        self._gen_worker: tuple[int, int] | None = None

    # -- randomness -------------------------------------------------------------------
    def _generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = torch.utils.data.get_worker_info()
        # DataLoader gives each worker of each epoch its own seed (base seed + worker id, the
        # base drawn from the main process's generator): mixing it in makes epochs differ and
        # keeps them reproducible under torch.manual_seed, persistent workers or not.
        worker = (info.id, info.seed) if info is not None else None
        if self._gen is None or self._gen_worker != worker:
            entropy = [self.seed] if worker is None else [self.seed, worker[0] + 1, worker[1] % 2**63]
            seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
            self._gen = torch.Generator().manual_seed(seed)
            self._gen_worker = worker
        return self._gen

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state.get("_gen") is not None:
            state["_gen"] = state["_gen"].get_state()
        return state

    def __setstate__(self, state: dict) -> None:
        gen = state.get("_gen")
        if gen is not None:
            state = {**state, "_gen": torch.Generator()}
            state["_gen"].set_state(gen)
        super().__setstate__(state)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        g = self._generator()
        u = torch.rand(3, generator=g, dtype=torch.float64).tolist()  # apply?, codec, rate
        lo, hi = self.bpp
        quality = None
        if self.quality is not None:
            quality = int(torch.randint(self.quality[0], self.quality[1] + 1, (1,), generator=g))
        return {
            "apply": u[0] < self.p,
            "codec": self.codecs[min(int(u[1] * len(self.codecs)), len(self.codecs) - 1)],
            "bpp": math.exp(math.log(lo) + u[2] * (math.log(hi) - math.log(lo))),
            "quality": quality,
        }

    # -- the work -----------------------------------------------------------------------
    def _rgb(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return compress_decode(img, params["codec"], params["bpp"], params["quality"], self.bpp)[0]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        if isinstance(inpt, Image.Image):
            return self._pil(inpt, params)
        if isinstance(inpt, torch.Tensor):
            return self._tensor(inpt, params)
        return inpt

    def _pil(self, img: Image.Image, params: dict[str, Any]) -> Image.Image:
        out = Image.fromarray(self._rgb(np.asarray(img.convert("RGB")), params))
        if img.mode == "L":
            return out.convert("L")
        if img.mode in ("RGBA", "LA"):
            out = out.convert(img.mode[:-1])
            out.putalpha(img.getchannel("A"))
        return out

    def _tensor(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if x.ndim < 3 or x.shape[-3] not in (1, 3):
            raise ValueError(f"expected a tensor [..., C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            u8 = x
        elif x.is_floating_point():
            u8 = (finite_images(x).detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        else:
            raise TypeError(f"expected a uint8 or floating point tensor, got {x.dtype}")
        C, H, W = x.shape[-3:]
        outs = []
        for a in u8.reshape(-1, C, H, W).permute(0, 2, 3, 1).cpu().numpy():
            dec = self._rgb(np.ascontiguousarray(np.repeat(a, 3, 2) if C == 1 else a), params)
            outs.append(np.asarray(Image.fromarray(dec).convert("L"))[..., None] if C == 1 else dec)
        out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).reshape(x.shape).to(x.device)
        if x.is_floating_point():
            out = out.to(x.dtype) / 255
        return tv_tensors.wrap(out, like=x) if isinstance(x, tv_tensors.TVTensor) else out

    def extra_repr(self) -> str:
        return f"codecs={self.codecs}, bpp={self.bpp}, quality={self.quality}, p={self.p}, seed={self.seed}"


class NeuralCompression(torch.nn.Module):
    """Batched compression for a training loop, on the training device, without entropy coding.

    ``forward(x)``: x [B, 3, H, W], float in [0, 1] or uint8 -> ``(x_hat, bpp)``: x_hat like x
    (dtype, device), decoded from the tokens our file would hold (same encoder, float32; the
    decoder in bf16 where ``amp`` = auto finds it pays: CUDA, AMX or AVX512-BF16 CPUs; "off"
    for float32);
    bpp float32 [B], each file's estimated size per pixel: the entropy model's ideal code
    length of the tokens under the model's schedule plus the header (within a few bytes of
    the real file), or with ``estimate=False`` the raw bound M*log2(K)/s^2 plus the header.
    ``model``: a shipped name or bundle path (default: the default model). ``m`` (nested
    models): codes per position, default that of ``quality``
    :data:`~codec.engine.layered_codec.DEFAULT_QUALITY` rounded (10 of the default model's 32).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str | torch.device = "cpu",
        estimate: bool = True,
        amp: str = "auto",
        m: int | None = None,
    ):
        super().__init__()
        from .engine.loading import load_codec
        from .engine.registry import resolve

        codec = load_codec(resolve(model), "cpu")
        self.model = str(model) if model is not None else None
        self.autoencoder = codec.autoencoder.float()
        self.entropy_model = codec.entropy_model.float()  # this codec is private: no copy needed
        self.schedule, self.estimate, self.amp = codec.schedule, estimate, amp
        self.layered = codec.layered  # a nested model: files of m sub-vectors
        M = codec.autoencoder.cfg.M
        if self.layered:
            from .engine.layered_codec import DEFAULT_QUALITY, RatePoint

            g0 = codec.groups[0]
            self.m = round(codec.quality_subvectors(DEFAULT_QUALITY)) if m is None else m
            if not g0 <= self.m <= M:
                raise ValueError(f"m must be in {g0}..{M}, got {m}")
            point = RatePoint(self.m)
            self._header = lambda size: codec.header_for(size, point)  # empty layers: sizes unknown
        else:
            if m not in (None, M):
                raise ValueError(f"this model codes at one rate (m={M}); m needs a nested model")
            self.m = M
            self._header = codec.header
        self.requires_grad_(False).eval().to(device)

    def header_bytes(self, height: int, width: int) -> int:
        """Bytes of this model's .pqm header for an image of height x width pixels (with
        length fields of an empty payload: a byte or two below the real file's)."""
        return bitstream.header_size(self._header((height, width)))

    def train(self, mode: bool = True) -> NeuralCompression:
        return super().train(False)  # frozen: quantizer statistics never update

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(x.shape)}")
        device = next(self.autoencoder.parameters()).device
        xf = (x.float() / 255 if x.dtype == torch.uint8 else finite_images(x).float().clamp(0, 1)).to(device)
        H, W = x.shape[-2:]
        tokens = self.autoencoder.encode(xf)  # float32: the tokens of the file
        with autocast(self.amp, device):  # the decoder in bf16 where it pays, as ImageCodec
            y = self.autoencoder.decode(tokens[:, : self.m], (H, W)).float()
        if self.estimate and self.layered:
            from .models.layered import layered_schedule_bits

            bits = layered_schedule_bits(self.entropy_model, tokens, self.schedule, self.m)
        elif self.estimate:
            from .models.mim import schedule_bits

            bits = schedule_bits(self.entropy_model, tokens, self.schedule)
        else:
            cfg = self.autoencoder.cfg
            bits = torch.full((x.shape[0],), tokens[0, : self.m].numel() * math.log2(cfg.K), device=device)
        bpp = (bits + 8 * self.header_bytes(H, W)).float() / (H * W)
        out = (y * 255).round().to(torch.uint8) if x.dtype == torch.uint8 else y.to(x.dtype)
        return out.to(x.device), bpp.to(x.device)

    def extra_repr(self) -> str:
        return f"model={self.model or 'default'}, m={self.m}, estimate={self.estimate}"
