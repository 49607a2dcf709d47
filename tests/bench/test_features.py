"""The offline feature distance: FD / KID on known feature sets, patches, the extractor."""

from pathlib import Path

import numpy as np
import pytest

from codec.bench.features import feature_extractor, frechet_distance, kernel_distance, patches


def test_distances_are_zero_for_one_set_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    near, far = frechet_distance(a, b), frechet_distance(a, b + 1.0)
    assert near < 0.5 and far == pytest.approx(8.0, rel=0.15)  # |mean shift|^2 = 8
    assert abs(kernel_distance(a, b)) < 0.05 < kernel_distance(a, b + 1.0)


def test_patches():
    img = np.zeros((512, 768, 3), np.uint8)
    assert patches(img).shape == (6, 224, 224, 3)
    assert patches(img[:100]).shape == (0, 224, 224, 3)


def test_mobilenet_features_when_available():
    ext, why = feature_extractor()
    if ext is None:
        pytest.skip(why)
    from PIL import Image

    img = np.asarray(Image.open("codec/data/sample.png").convert("RGB"))
    f = ext(patches(img))
    assert f.shape == (6, 1280) and np.isfinite(f).all() and f.std() > 0
    blurred = np.asarray(Image.fromarray(img).resize((96, 64)).resize((768, 512)))
    g = ext(patches(blurred))
    assert np.abs(f - g).mean() > 0.01  # blur changes the features


def test_bench_reports_feature_distances(tmp_path):
    ext, why = feature_extractor()
    if ext is None:
        pytest.skip(why)
    from PIL import Image

    from codec.bench.run import run_bench

    d = tmp_path / "imgs"
    d.mkdir()
    im = Image.open("codec/data/sample.png").convert("RGB")
    im.crop((0, 0, 512, 256)).save(d / "a.png")
    im.crop((256, 256, 768, 512)).save(d / "b.png")
    s = run_bench(d, ["jpeg"], tmp_path / "o", (0.1, 2.0), points=3, workers=1, progress=False)
    pts = s["curves"]["jpeg"]
    assert all(p["fd_mobilenet"] is not None for p in pts)
    assert pts[0]["fd_mobilenet"] > pts[-1]["fd_mobilenet"]  # more bits, closer features
    assert "MobileNetV2" in s["unavailable_metrics"]["fd_kid_mobilenet"]


def test_torch_mobilenet_v2_is_the_tflite_model_in_float():
    """The converted network predicts what the TFLite model predicts (10 Imagenette val images,
    one per class), and BatchNorm calibration leaves its eval-mode outputs unchanged."""
    ext, why = feature_extractor()
    imagenette = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenette" / "val"
    if ext is None or not imagenette.is_dir():
        pytest.skip(why or "needs ../shared/data/imagenette")
    pytest.importorskip("torchvision")
    import torch
    from PIL import Image

    from codec.bench.features import calibrate_batchnorm, torch_mobilenet_v2

    files = [sorted(d.iterdir())[0] for d in sorted(imagenette.iterdir())]
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224))) for f in files])
    _, scores = ext.outputs(imgs)
    net = torch_mobilenet_v2()
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        logits = net(x)
    probs = logits.softmax(1).numpy()
    assert (probs.argmax(1) == scores.argmax(1)).sum() >= 9
    assert np.abs(probs - scores).sum(1).mean() < 0.3  # L1 distance of the two distributions
    cut = torch_mobilenet_v2(outputs=[5, 7])  # two of the 1001 outputs: the same logits
    with torch.no_grad():
        assert torch.allclose(cut(x), logits[:, [5, 7]], atol=1e-4)
    calibrate_batchnorm(net, x[:6])
    bn = net.features[0][1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    with torch.no_grad():
        assert torch.allclose(net(x), logits, atol=1e-3 * float(logits.abs().max()))
