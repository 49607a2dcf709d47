"""An offline feature distance for statistical fidelity: Frechet distance (FD) and kernel
distance (KID) between features of original and decoded 256-pixel patches, the features
being the 1280-d pooled activations of the bundled MobileNetV2 (ImageNet, uint8 TFLite,
../shared/data/models). This is *not* FID/KID (Inception-v3, whose weights are not
available offline): the numbers are comparable between codecs of one run only.

Running the TFLite model needs the ``ai-edge-litert`` package (``pip install
ai-edge-litert``); without it :func:`feature_extractor` says why and the benchmark reports
the columns as n/a.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "../shared/data/models/mobilenet_v2_1.0_224_quant.tflite"
POOL = "MobilenetV2/Logits/AvgPool"


class MobileNetFeatures:
    """``__call__(patches uint8 [N, 224, 224, 3]) -> float64 [N, 1280]``; :meth:`outputs`
    also gives the classifier's scores (bench/recognition.py)."""

    def __init__(self, path: str | Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(
            model_path=str(path), experimental_preserve_all_tensors=True, num_threads=1
        )
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        (self.pool,) = [d for d in self.interpreter.get_tensor_details() if d["name"] == POOL]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return self.outputs(patches)[0]

    def outputs(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, 224, 224, 3] -> (pooled features float64 [N, 1280], class scores float64
        [N, 1001]: the classifier's softmax output, index 0 "background", i + 1 ImageNet class i)."""
        scale, zero = self.pool["quantization"]
        out_scale, out_zero = self.output["quantization"]
        feats, scores = [], []
        for p in patches:
            self.interpreter.set_tensor(self.input, np.ascontiguousarray(p[None], dtype=np.uint8))
            self.interpreter.invoke()
            q = self.interpreter.get_tensor(self.pool["index"]).reshape(-1).astype(np.float64)
            feats.append(scale * (q - zero))
            q = self.interpreter.get_tensor(self.output["index"]).reshape(-1).astype(np.float64)
            scores.append(out_scale * (q - out_zero))
        if not feats:
            return np.zeros((0, self.pool["shape"][-1])), np.zeros((0, self.output["shape"][-1]))
        return np.stack(feats), np.stack(scores)


def default_model_path() -> str:
    """``$CODEC_FEATURE_MODEL``, else the model in ../shared/data beside the working folder
    or beside this checkout."""
    if os.environ.get("CODEC_FEATURE_MODEL"):
        return os.environ["CODEC_FEATURE_MODEL"]
    beside_checkout = Path(__file__).resolve().parents[3] / DEFAULT_MODEL.removeprefix("../")
    return (
        DEFAULT_MODEL
        if Path(DEFAULT_MODEL).exists() or not beside_checkout.exists()
        else str(beside_checkout)
    )


def feature_extractor(path: str | None = None) -> tuple[MobileNetFeatures | None, str | None]:
    """(extractor, None), or (None, the reason it cannot run here)."""
    path = path or default_model_path()
    if not Path(path).exists():
        return None, f"n/a: no feature model at {path}"
    try:
        return MobileNetFeatures(path), None
    except ImportError:
        return None, "n/a: needs the ai-edge-litert package to run the TFLite MobileNetV2"


def patches(img: np.ndarray, size: int = 256, out: int = 224) -> np.ndarray:
    """Non-overlapping size x size patches of uint8 [H, W, 3], resized to out x out:
    uint8 [N, out, out, 3] (none if the image is smaller than a patch)."""
    from PIL import Image

    H, W, _ = img.shape
    tiles = [
        np.asarray(
            Image.fromarray(img[y : y + size, x : x + size]).resize((out, out), Image.Resampling.BILINEAR)
        )
        for y in range(0, H - size + 1, size)
        for x in range(0, W - size + 1, size)
    ]
    return np.stack(tiles) if tiles else np.zeros((0, out, out, 3), np.uint8)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets [N, d] and [M, d]."""
    from scipy import linalg

    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(ca @ cb, disp=False)
    return float(mu @ mu + np.trace(ca + cb - 2 * np.real(root)))


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, as in KID."""
    d = a.shape[1]

    def k(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T / d + 1) ** 3

    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return float(
        (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
        + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        - 2 * k(a, b).mean()
    )
