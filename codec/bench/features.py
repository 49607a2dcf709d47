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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

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


def torch_mobilenet_v2(path: str | Path | None = None, outputs: list[int] | None = None) -> torch.nn.Module:
    """The bundled TFLite MobileNetV2 as a trainable torchvision ``mobilenet_v2`` (float32).

    Each uint8 weight is dequantized (``scale * (q - zero_point)``) into the matching conv
    of torchvision's network, in graph order; each int32 bias (batch norm already folded in
    by the TFLite converter) goes into that conv's BatchNorm, set to the identity plus the
    bias (mean 0, variance 1, weight sqrt(1 + eps)); :func:`calibrate_batchnorm` then gives
    the BatchNorms real statistics without changing the function. The classifier is the
    1001-way logits layer, or only its rows ``outputs`` (e.g. the Imagenette classes).
    The stride-2 convs pad as TensorFlow's "SAME" does (:func:`tf_same_padding`), so the one
    difference from the TFLite model is float activations (no uint8 rounding). Input: RGB
    scaled to [-1, 1], i.e. ``(x - 0.5) / 0.5`` for x in [0, 1]; any size. Needs
    ``ai-edge-litert`` (to read the file) and torchvision."""
    import torch
    import torchvision
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path or default_model_path()))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def dequantize(index: int) -> torch.Tensor:
        t = tensors[index]
        scale, zero = t["quantization"]
        q = interpreter.get_tensor(index).astype(np.float64)
        return torch.from_numpy(scale * (q - zero) if t["dtype"] == np.uint8 else scale * q).float()

    layers = [  # (weight, bias) in graph order: 52 convs, then the logits (a 1x1 conv)
        (dequantize(op["inputs"][1]), dequantize(op["inputs"][2]), op["op_name"])
        for op in interpreter._get_ops_details()  # the public API has no op list
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
    ]
    net = tf_same_padding(torchvision.models.mobilenet_v2(weights=None, num_classes=1001))
    convs = [m for m in net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if len(layers) != len(convs) + 1:
        raise ValueError(f"{path}: {len(layers)} conv layers, a MobileNetV2 has {len(convs) + 1}")
    with torch.no_grad():
        for conv, bn, (w, b, kind) in zip(convs, norms, layers, strict=False):
            # TFLite: conv [out, kh, kw, in], depthwise [1, kh, kw, channels]
            w = w.permute(3, 0, 1, 2) if kind == "DEPTHWISE_CONV_2D" else w.permute(0, 3, 1, 2)
            if w.shape != conv.weight.shape:
                raise ValueError(f"{path}: weight {tuple(w.shape)} for a conv of {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_((1 + bn.eps) ** 0.5)
            bn.bias.copy_(b)
        w, b, _ = layers[-1]
        rows = list(range(len(b))) if outputs is None else list(outputs)
        linear = torch.nn.Linear(w.shape[-1], len(rows))
        linear.weight.copy_(w.reshape(len(b), -1)[rows])
        linear.bias.copy_(b[rows])
        net.classifier[-1] = linear
    return net.eval()


def tf_same_padding(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with each stride-2 conv padding as TensorFlow's "SAME" does (the extra row and
    column of an even input at the bottom and right; PyTorch pads both sides alike, which
    shifts the sampling grid by one input pixel). Parameters and their names are unchanged,
    so a state dict moves between the two forms."""
    import torch
    import torch.nn.functional as F

    class SamePadConv2d(torch.nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads = []
            for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]  # left/top, right/bottom
            x = F.pad(x, pads)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.Conv2d) and child.stride != (1, 1):
                same = SamePadConv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    dilation=child.dilation,
                    groups=child.groups,
                    bias=child.bias is not None,
                )
                same.load_state_dict(child.state_dict())
                setattr(module, name, same)
    return net


def calibrate_batchnorm(net: torch.nn.Module, x: torch.Tensor) -> None:
    """Give every BatchNorm2d of ``net`` the mean and variance of its input over the batch
    ``x`` (float [N, 3, H, W]) and the affine parameters that keep its eval-mode output
    unchanged, so that training (which normalizes by batch statistics) starts from the same
    function. Meant for the nets of :func:`torch_mobilenet_v2`, whose BatchNorms are affine
    maps; ``net`` is left in eval mode."""
    import torch

    stats = {}
    hooks = [
        m.register_forward_pre_hook(
            lambda m, inp: stats.__setitem__(
                m, (inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3), unbiased=False))
            )
        )
        for m in net.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    net.eval()
    with torch.no_grad():
        net(x)  # one pass: each BatchNorm keeps its output, so no later input changes
        for bn, (mean, var) in stats.items():
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            shift = bn.bias - bn.running_mean * scale  # eval output: x * scale + shift
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(scale * (var + bn.eps).sqrt())
            bn.bias.copy_(shift + scale * mean)
    for h in hooks:
        h.remove()
