"""bench/recognition.py: a two-batch smoke run of the study on real Imagenette files."""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def study():
    spec = importlib.util.spec_from_file_location("recognition", ROOT / "bench" / "recognition.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["recognition"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(
    not (DATA / "imagenette" / "classes.tsv").exists() or not (DATA / "models").is_dir(),
    reason="needs ../shared/data/imagenette and the MobileNetV2 beside the checkout",
)
def test_two_batch_smoke_run(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    monkeypatch.setenv("CODEC_FEATURE_MODEL", str(DATA / "models" / "mobilenet_v2_1.0_224_quant.tflite"))
    args = ["--data", str(DATA / "imagenette"), "--val-per-class", "1", "--train-per-class", "2"]
    args += ["--codecs", "jpeg,webp", "--bpps", "0.3,0.8", "--aug-codecs", "jpeg", "--aug-copies", "1"]
    args += ["--epochs", "1", "--batch", "10", "--seeds", "2", "--bootstrap", "20", "--workers", "0"]
    args += ["--calib-images", "3", "--out", str(tmp_path)]
    result = study().main(args)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert (tmp_path / "accuracy_vs_bpp.png").stat().st_size > 1000
    assert "| jpeg |" in (tmp_path / "summary.md").read_text()
    rows = {(r["codec"], r["target_bpp"]): r for r in saved["rows"]}
    assert set(rows) == {("none", None), ("jpeg", 0.3), ("jpeg", 0.8), ("webp", 0.3), ("webp", 0.8)}
    for (codec, target), r in rows.items():
        assert 0 <= r["pretrained_top1"] <= 1 and len(r["aug_head_top1_seeds"]) == 2
        if codec != "none":
            assert 0.25 * target < r["bpp"] < 4 * target  # real files near the calibrated rate
    assert rows[("jpeg", 0.3)]["bpp"] < rows[("jpeg", 0.8)]["bpp"]
    assert saved["val_images"] == 10 and saved["train_images"] == 20
    # a rerun reuses the feature cache (same files, same figures)
    again = study().main(args)
    assert again["rows"][1]["pretrained_top1"] == result["rows"][1]["pretrained_top1"]


def backbone_study():
    study()  # recognition_backbone imports its helpers
    path = ROOT / "bench" / "recognition_backbone.py"
    spec = importlib.util.spec_from_file_location("recognition_backbone", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["recognition_backbone"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(
    not (DATA / "imagenette" / "classes.tsv").exists(), reason="needs ../shared/data/imagenette"
)
def test_backbone_study_trains_saves_and_re_evaluates(tmp_path, capsys):
    """bench/recognition_backbone.py on 20 images at 32 px: both backbones train and are saved
    as fp16 safetensors, --eval-only reloads them and measures the same accuracies."""
    mod = backbone_study()
    args = ["--data", str(DATA / "imagenette"), "--train-per-class", "2", "--val-per-class", "2"]
    args += ["--size", "32", "--epochs", "1", "--batch", "8", "--aug-codecs", "jpeg", "--aug-copies", "1"]
    args += ["--codecs", "jpeg", "--bpps", "0.5", "--bootstrap", "20", "--out", str(tmp_path / "r")]
    args += ["--weights", str(tmp_path / "w")]
    first = mod.main(args)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "recognition_mobilenet_v2_augmented.safetensors",
        "recognition_mobilenet_v2_clean.safetensors",
    ]
    again = mod.main([*args, "--eval-only"])
    assert [r["acc_augmented"] for r in again["rows"]] == [r["acc_augmented"] for r in first["rows"]]
    with pytest.raises(ValueError, match="trained on 32-px crops: pass --size 32"):
        mod.main([*args, "--eval-only", "--size", "48"])
    assert {r["variant"] for r in first["rows"]} == {"clean", "jpeg-0.5"}
    assert "| jpeg-0.5 |" in (tmp_path / "r" / "summary.md").read_text()
    # another augmentation retrains only the augmented network: the clean one's recipe is the same
    clean_file = tmp_path / "w" / "recognition_mobilenet_v2_clean.safetensors"
    os.utime(clean_file, (0, 0))  # a retrained network would be saved anew
    third = mod.main([*args, "--aug-p", "0.9"])
    assert clean_file.stat().st_mtime == 0
    assert third["rows"][0]["acc_clean_trained"] == first["rows"][0]["acc_clean_trained"]
    assert mod.same_recipe(
        clean_file,
        mod.BackboneConfig(train_per_class=2, size=32, epochs=1, batch=8, data=str(DATA / "imagenette")),
    )
    assert not mod.same_recipe(
        clean_file,
        mod.BackboneConfig(train_per_class=2, size=32, epochs=2, batch=8, data=str(DATA / "imagenette")),
    )
    # one cache per copy: a run with two copies reuses the first one's file and adds one;
    # paired clean/compressed views with a consistency loss take the same steps as the clean network
    (copy0,) = (tmp_path / "r" / "cache" / "36px").glob("train-copy0-*.npz")  # stored at 32 * 9 / 8
    os.utime(copy0, (0, 0))
    capsys.readouterr()
    paired = mod.main([*args, "--consistency", "1", "--aug-copies", "2"])
    assert copy0.stat().st_mtime == 0
    assert len(list((tmp_path / "r" / "cache" / "36px").glob("train-copy1-*.npz"))) == 1
    log = capsys.readouterr().out  # half batches: one pass would be 5 steps; it stops at clean's 3
    assert "step 3/3" in log and "step 4/" not in log and "step 5/" not in log
    assert clean_file.stat().st_mtime == 0
    assert paired["config"]["consistency"] == 1.0
    assert "JS consistency x 1.0" in (tmp_path / "r" / "summary.md").read_text()
    a, b = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.0, 4.0, 0.0]])
    assert mod.js_divergence(a, a).item() == pytest.approx(0, abs=1e-6)
    assert 0.5 < mod.js_divergence(a, b).item() <= math.log(2)
    jobs = [(0, "jpeg", 0.5, None)]
    assert mod.jobs_key(jobs) != mod.jobs_key([(1, "jpeg", 0.5, None)])
    assert mod.jobs_key(jobs) == mod.jobs_key(list(jobs))
    ref, clean, aug = (np.array(v, bool) for v in ([1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]))
    rec = mod.recovery(ref, clean, aug)
    assert rec(np.arange(4)) == pytest.approx(1 / 3)


@pytest.mark.skipif(
    not (DATA / "imagenette" / "classes.tsv").exists() or not (DATA / "models").is_dir(),
    reason="needs ../shared/data/imagenette and the MobileNetV2 beside the checkout",
)
def test_backbone_study_starts_from_the_pretrained_mobilenet(tmp_path, monkeypatch):
    """--init tflite: the converted pretrained network already knows the 10 classes at 128 px
    (from random initialisation it would be at chance), its saved files are named apart and
    are not loaded as another recipe's."""
    pytest.importorskip("ai_edge_litert")
    monkeypatch.setenv("CODEC_FEATURE_MODEL", str(DATA / "models" / "mobilenet_v2_1.0_224_quant.tflite"))
    mod = backbone_study()
    cfg = mod.BackboneConfig(data=str(DATA / "imagenette"), init="tflite")
    paths, labels, _ = study().split(DATA / "imagenette", "val", 3)
    x = mod.load_images(paths, mod.stored_size(cfg))
    net = mod.initial(cfg, x)
    assert (mod.predict(cfg, net, x) == labels).mean() >= 0.7
    with pytest.raises(ValueError, match="--init 'tflite'"):
        mod.initial(mod.BackboneConfig(arch="resnet18", init="tflite"), x)
    path = tmp_path / "w.safetensors"
    mod.save(net, path, cfg, "clean", 1.0)
    again = mod.load(path, "mobilenet_v2", "tflite")
    assert (mod.predict(cfg, again, x) == mod.predict(cfg, net, x)).mean() >= 0.9  # saved as fp16
    with pytest.raises(ValueError, match="with --init 'tflite'"):
        mod.load(path, "mobilenet_v2")
