"""Images <-> .pqm bytes: the PQ-VAE, the masked entropy model and the range coder.

Data flow (one way): image uint8 [H, W, 3] -> PQVAE.encode -> tokens int [M, h, w]
-> for each schedule stage: MaskedEntropyModel(tokens known so far) -> logits of the
stage's positions -> RangeEncoder -> payload -> .pqm (header + payload); and back.
The encoder makes exactly the entropy-model calls the decoder makes (same inputs, same
shapes, same order), on the CPU in float32, so both sides see the same logits.
"""

from __future__ import annotations

import numpy as np
import torch

from . import bitstream
from .entropy import RangeDecoder, RangeEncoder
from .entropy.schedule import CodingSchedule
from .errors import CodecError
from .models.mim import MaskedEntropyModel
from .models.pqvae import PQVAE


class ImageCodec:
    """A trained PQ-VAE + entropy model + schedule; ``compress``/``decompress`` work on bytes.

    The autoencoder may run on ``device`` (e.g. a GPU); the entropy model always runs on
    the CPU in float32 (determinism between encoder and decoder).
    """

    def __init__(
        self,
        autoencoder: PQVAE,
        entropy_model: MaskedEntropyModel,
        schedule: CodingSchedule | None = None,
        model_id: bytes = bytes(4),
        device: str | torch.device = "cpu",
    ) -> None:
        self.autoencoder = autoencoder.to(device).eval()
        self.entropy_model = entropy_model.float().cpu().eval()
        self.schedule = schedule or CodingSchedule()
        self.model_id = model_id
        self.device = torch.device(device)
        cfg = autoencoder.cfg
        if (entropy_model.cfg.M, entropy_model.cfg.K) != (cfg.M, cfg.K):
            raise ValueError("autoencoder and entropy model disagree on M, K")

    # -- tokens <-> payload -------------------------------------------------------------
    @torch.no_grad()
    def _stage_logits(self, tokens: torch.Tensor, known: torch.Tensor, pos: np.ndarray) -> np.ndarray:
        """float32 [n * M, K] logits of the positions ``pos`` given the known ones."""
        M, h, w = tokens.shape
        logits = self.entropy_model(tokens[None], known[None])[0]  # [h, w, M, K]
        return logits.reshape(h * w, M, -1)[torch.from_numpy(pos)].reshape(-1, logits.shape[-1]).numpy()

    def encode_tokens(
        self, tokens: np.ndarray, schedule: CodingSchedule | None = None, estimate: bool = True
    ) -> tuple[bytes, float]:
        """Tokens int [M, h, w] -> (payload, ideal bits under the model; 0.0 if not ``estimate``)."""
        from .entropy import information_content

        M, h, w = tokens.shape
        tok = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
        flat = tok.reshape(M, h * w)
        known = torch.zeros(h, w, dtype=torch.bool)
        enc, bits = RangeEncoder(), 0.0
        for pos in (schedule or self.schedule).stages_for(h, w):
            if len(pos) == 0:
                continue
            logits = self._stage_logits(tok, known, pos)
            symbols = flat[:, torch.from_numpy(pos)].T.reshape(-1).numpy()  # [n, M] row-major
            enc.encode_logits(symbols, logits)
            if estimate:  # a second quantization pass: skipped when only the bytes are wanted
                bits += information_content(symbols, logits)
            known.view(-1)[torch.from_numpy(pos)] = True
        return enc.finish(), bits

    def decode_tokens(
        self,
        payload: bytes,
        shape: tuple[int, int, int],
        schedule: CodingSchedule | None = None,
        stages: int | None = None,
    ) -> np.ndarray:
        """Payload -> tokens int64 [M, h, w]. With ``stages`` < S, only the first stages are
        decoded and the other positions get the model's most likely tokens."""
        M, h, w = shape
        tok = torch.zeros(M, h, w, dtype=torch.int64)
        flat = tok.view(M, h * w)
        known = torch.zeros(h, w, dtype=torch.bool)
        dec = RangeDecoder(payload)
        plan = (schedule or self.schedule).stages_for(h, w)
        for pos in plan[:stages]:
            if len(pos) == 0:
                continue
            logits = self._stage_logits(tok, known, pos)
            p = torch.from_numpy(pos)
            flat[:, p] = torch.from_numpy(dec.decode_logits(logits).astype(np.int64)).reshape(len(pos), M).T
            known.view(-1)[p] = True
        if not bool(known.all()):
            with torch.no_grad():
                guess = self.entropy_model(tok[None], known[None])[0].argmax(-1).permute(2, 0, 1)
            tok = torch.where(known[None], tok, guess)
        return tok.numpy()

    # -- images <-> bytes ---------------------------------------------------------------
    @torch.no_grad()
    def compress(self, image, max_pixels: int | None = None) -> bytes:
        """RGB image (PIL image, or uint8 array/tensor [H, W, 3]) -> .pqm bytes.

        Images over ``max_pixels`` (default :data:`codec.bitstream.MAX_IMAGE_PIXELS`) are
        refused with CodecError before any work (tiled coding is not implemented yet).
        """
        x = to_uint8_rgb(image)
        H, W, _ = x.shape
        limit = bitstream.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        if H * W > limit:
            raise CodecError(f"image of {W}x{H} = {H * W} pixels exceeds the limit of {limit}")
        xt = torch.from_numpy(x).permute(2, 0, 1)[None].float().div(255).to(self.device)
        tokens = self.autoencoder.encode(xt)[0].cpu().numpy()
        payload, _ = self.encode_tokens(tokens, estimate=False)
        cfg, s = self.autoencoder.cfg, self.schedule
        header = bitstream.Header(
            height=H,
            width=W,
            channels=3,
            stride=cfg.stride,
            M=cfg.M,
            K=cfg.K,
            stages=s.stages,
            stages_present=s.stages,
            alpha=s.alpha,
            order=s.order,
            model_id=self.model_id,
            token_crc=bitstream.token_checksum(tokens),
        )
        return bitstream.pack(header, payload)

    @torch.no_grad()
    def decompress(self, data: bytes, stages: int | None = None, max_pixels: int | None = None) -> np.ndarray:
        """.pqm bytes -> uint8 [H, W, 3]. Raises CodecError for any file this model cannot decode."""
        header, payload = bitstream.unpack(data, max_pixels=max_pixels)
        cfg = self.autoencoder.cfg
        if header.model_id != self.model_id:
            raise CodecError(
                f"file made with model {header.model_id.hex()}, this is model {self.model_id.hex()}"
            )
        if (header.stride, header.M, header.K) != (cfg.stride, cfg.M, cfg.K):
            raise CodecError("file's stride/M/K do not match the model")
        if stages is not None and not 0 <= stages <= header.stages:
            raise CodecError(f"--stages must be in 0..{header.stages} for this file, got {stages}")
        schedule = CodingSchedule(header.stages, header.alpha, header.order)
        tokens = self.decode_tokens(payload, header.token_shape, schedule, stages)
        if stages is None and bitstream.token_checksum(tokens) != header.token_crc:
            raise CodecError(
                "decoded tokens fail their checksum: the file is corrupt or the decoder differs "
                "from the encoder"
            )
        t = torch.from_numpy(tokens)[None].to(self.device)
        y = self.autoencoder.decode(t, (header.height, header.width))[0]
        return (y.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def to_uint8_rgb(image) -> np.ndarray:
    """uint8 [H, W, 3] from a PIL image (any mode: converted to RGB, alpha dropped) or an
    array/tensor [H, W, 3] uint8; anything else raises ValueError."""
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            return np.array(image.convert("RGB"))
    except ImportError:  # pragma: no cover
        pass
    x = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected a PIL image or uint8 [H, W, 3], got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)
