"""Recognition under compression with a trained backbone: does compressed-training
augmentation make a whole network robust to compression?

Twice, with the same budget and seed, a torchvision backbone (``--arch mobilenet_v2`` or
``resnet18``) is trained on Imagenette train at ``--size`` px, from random initialisation or
(``--init tflite``, MobileNetV2 only) fine-tuned from the bundled pretrained TFLite
MobileNetV2 (ImageNet; converted by ``codec.bench.features.torch_mobilenet_v2``, its
classifier cut to the 10 Imagenette classes): on clean images, and with each image replaced, with
probability ``--aug-p``, by one of ``--aug-copies`` compressed copies drawn as
``codec.transforms.RandomCompression`` draws them (codec uniform from ``--aug-codecs``, bpp
log-uniform in ``--aug-bpp``; the copies are made once and cached, so AVIF's speed does not
set the pace; one cache per copy). ``--consistency W`` instead shows every image clean and
compressed in the same batch and adds W x the Jensen-Shannon divergence of the two views'
predictions to the loss (as AugMix does). Both are evaluated on Imagenette val, clean and
compressed by each codec at each target bpp (classical codecs: one quality per target,
calibrated on training images; ``ours``: the nested model's own rate control at that bpp).

Recovery at a val variant = (acc_aug - acc_clean) / (acc_clean on clean val - acc_clean),
with 95% bootstrap intervals over val images. The two backbones are saved as fp16
safetensors with their recipe (``--weights``); ``--eval-only`` evaluates saved ones.

    python bench/recognition_backbone.py [--arch mobilenet_v2] [--epochs 16] [--threads 1]
    python bench/recognition_backbone.py --init tflite --lr 0.001 --label-smoothing 0 --epochs 8
    python bench/recognition_backbone.py --eval-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from recognition import bootstrap_ci, calibrate, split

from codec.transforms import RandomCompression, compress_decode


@dataclass
class BackboneConfig:
    data: str = "../shared/data/imagenette"
    arch: str = "mobilenet_v2"  # or resnet18
    init: str = ""  # "": random initialisation; "tflite": the bundled pretrained MobileNetV2
    size: int = 128  # network input, px (images are stored at size * 9 / 8 and cropped)
    epochs: int = 16
    batch: int = 64
    lr: float = 0.1  # SGD (momentum 0.9, Nesterov), one epoch of warm-up, cosine decay
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    train_per_class: int = 400
    val_per_class: int = 100
    aug_codecs: str = "jpeg,webp,avif,ours:flagship"
    aug_bpp: str = "0.1,1.0"
    aug_p: float = 0.5
    aug_copies: int = 2
    consistency: float = 0.0  # > 0: paired clean/compressed views of each image, + this x JS divergence
    codecs: str = "jpeg,webp,avif,ours:flagship"
    bpps: str = "0.1,0.2,0.4,0.8"
    seed: int = 0
    threads: int = 1
    bootstrap: int = 1000
    out: str = "bench/results/recognition_backbone"
    weights: str = "bench/weights"
    eval_only: bool = False


def stored_size(cfg: BackboneConfig) -> int:
    return cfg.size * 9 // 8


def load_images(paths: list[Path], side: int) -> np.ndarray:
    """uint8 [N, side, side, 3], resized (bicubic) from the 224-px files."""
    return np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
            for p in paths
        ]
    )


def build(arch: str, init: str = "", classes: int = 10) -> torch.nn.Module:
    """A randomly initialised network; with ``init`` "tflite" in the form of the converted
    pretrained MobileNetV2 (its stride-2 convs pad as TensorFlow does)."""
    import torchvision

    from codec.bench.features import tf_same_padding

    if arch not in ("mobilenet_v2", "resnet18"):
        raise ValueError(f"--arch {arch!r}: mobilenet_v2 or resnet18")
    net = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    return tf_same_padding(net) if init == "tflite" else net


def initial(cfg: BackboneConfig, x: np.ndarray) -> torch.nn.Module:
    """The network training starts from: random (seeded by the caller), or with ``--init
    tflite`` the pretrained MobileNetV2 whose BatchNorms take their statistics from 256 of
    the training images ``x`` (uint8 [N, S, S, 3], drawn with ``cfg.seed``), centre crops at
    ``cfg.size``."""
    if not cfg.init:
        return build(cfg.arch)
    if (cfg.init, cfg.arch) != ("tflite", "mobilenet_v2"):
        raise ValueError(f"--init {cfg.init!r}: only 'tflite' with --arch mobilenet_v2")
    from recognition import imagenet_outputs

    from codec.bench.features import calibrate_batchnorm, torch_mobilenet_v2

    net = torch_mobilenet_v2(outputs=imagenet_outputs(Path(cfg.data)))
    sample = np.random.default_rng(cfg.seed).permutation(len(x))[:256]
    calibrate_batchnorm(net, batches(x[sample], cfg.size, False, torch.Generator(), cfg.init))
    return net


# Input normalization per --init: ImageNet's mean and std, or [-1, 1] as the TFLite model wants.
NORMALIZATION = {"": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "tflite": ((0.5,) * 3, (0.5,) * 3)}


def jobs_key(jobs: list[tuple]) -> str:
    """A short hash of ``jobs`` and of the model id behind each ``ours`` codec in them, so a
    cache made with other images, rates or weights is never reused."""
    from codec.engine.loading import get_codec

    ids = {
        c: get_codec(c.partition(":")[2] or None).model_id.hex()
        for c in {j[1] for j in jobs}
        if c.startswith("ours")
    }
    return hashlib.sha1(json.dumps([jobs, sorted(ids.items())]).encode()).hexdigest()[:10]


def compressed(
    cfg: BackboneConfig, name: str, imgs: np.ndarray, jobs: list[tuple]
) -> tuple[np.ndarray, np.ndarray]:
    """(decoded images, bytes) of ``jobs`` = (image index, codec, bpp, quality), cached in
    OUT/cache/SIDEpx/NAME-KEY.npz (SIDE: the images' size; KEY: :func:`jobs_key`)."""
    path = Path(cfg.out) / "cache" / f"{imgs.shape[1]}px" / f"{name}-{jobs_key(jobs)}.npz"
    if path.exists():  # the key covers the jobs: nothing more to compare
        with np.load(path) as f:
            return f["images"], f["bytes"]
    t0 = time.time()
    out, sizes = np.empty((len(jobs), *imgs.shape[1:]), np.uint8), np.zeros(len(jobs), np.int64)
    for k, (i, codec, bpp, quality) in enumerate(jobs):
        out[k], sizes[k] = compress_decode(imgs[i], codec, bpp, quality)
    print(f"  {name}: {len(jobs)} images coded in {time.time() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=out, bytes=sizes)
    return out, sizes


def batches(x: np.ndarray, size: int, train: bool, g: torch.Generator, init: str = "") -> torch.Tensor:
    """uint8 [B, S, S, 3] -> float [B, 3, size, size] normalized for ``init``'s network
    (NORMALIZATION): a random crop and flip for training, the centre crop otherwise."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)
    S = t.shape[-1]
    if train:
        oy, ox = (int(v) for v in torch.randint(0, S - size + 1, (2,), generator=g))
        t = t[..., oy : oy + size, ox : ox + size]
        if torch.rand((), generator=g) < 0.5:
            t = t.flip(-1)
    else:
        o = (S - size) // 2
        t = t[..., o : o + size, o : o + size]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION[init])
    return (t - mean) / std


def train(cfg: BackboneConfig, x: np.ndarray, y: np.ndarray, copies: np.ndarray | None) -> tuple:
    """A backbone trained on ``x`` (uint8 [N, S, S, 3]); with ``copies`` [C, N, S, S, 3] each image is
    replaced with probability aug_p by one of them, per epoch. With ``cfg.consistency`` > 0 each
    batch is instead batch / 2 images seen twice, clean and as one of their copies (the same
    crop), and the loss adds that weight x the Jensen-Shannon divergence between the two views'
    predictions (AugMix's consistency loss); the steps and the images per step are those of the
    clean network, so the budget is the same. Returns (model, images/s)."""
    from codec.util.hardware import autocast

    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = initial(cfg, x).to(memory_format=torch.channels_last)  # 1.3x faster on CPU
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
    )
    paired = copies is not None and cfg.consistency > 0
    n, steps_per_epoch = len(x), math.ceil(len(x) / cfg.batch)
    total, step, seen, t0 = cfg.epochs * steps_per_epoch, 0, 0, time.time()
    yt = torch.from_numpy(y)
    model.train()
    for epoch in range(cfg.epochs * (2 if paired else 1)):
        if step == total:
            break
        use = (torch.rand(n, generator=g) < cfg.aug_p).numpy() if copies is not None else np.zeros(n, bool)
        pick = torch.randint(len(copies) if copies is not None else 1, (n,), generator=g).numpy()
        correct = count = 0
        for idx in torch.randperm(n, generator=g).split(cfg.batch // 2 if paired else cfg.batch):
            if step == total:
                break
            idx = idx.numpy()
            imgs = x[idx].copy()
            if paired:
                imgs, idx = np.concatenate([imgs, copies[pick[idx], idx]]), np.concatenate([idx, idx])
            elif use[idx].any():
                sel = idx[use[idx]]
                imgs[use[idx]] = copies[pick[sel], sel]
            xb = batches(imgs, cfg.size, True, g, cfg.init).contiguous(memory_format=torch.channels_last)
            warm = steps_per_epoch
            lr = (
                cfg.lr * (step + 1) / warm
                if step < warm
                else cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            )
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast("auto", torch.device("cpu")):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yt[idx], label_smoothing=cfg.label_smoothing)
            if paired:
                loss = loss + cfg.consistency * js_divergence(*logits.float().chunk(2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == yt[idx]).sum())
            step, seen, count = step + 1, seen + len(idx), count + len(idx)
        print(
            f"  epoch {epoch + 1}: train top-1 {correct / count:.3f}, "
            f"{seen / (time.time() - t0):.0f} images/s, step {step}/{total}",
            flush=True,
        )
    return model.eval(), seen / (time.time() - t0)


def js_divergence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence (nats) between the softmax of logits ``a`` and ``b`` [B, C]."""
    pa, pb = a.softmax(1), b.softmax(1)
    log_mix = ((pa + pb) / 2).clamp_min(1e-7).log()
    return (F.kl_div(log_mix, pa, reduction="batchmean") + F.kl_div(log_mix, pb, reduction="batchmean")) / 2


@torch.no_grad()
def predict(cfg: BackboneConfig, model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    from codec.util.hardware import autocast

    g = torch.Generator()
    model = model.to(memory_format=torch.channels_last)
    out = []
    for i in range(0, len(x), 256):
        xb = batches(x[i : i + 256], cfg.size, False, g, cfg.init)
        xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast("auto", torch.device("cpu")):
            out.append(model(xb).float().argmax(1).numpy())
    return np.concatenate(out)


def save(model: torch.nn.Module, path: Path, cfg: BackboneConfig, kind: str, images_per_s: float) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()
    }
    meta = {
        "arch": cfg.arch,
        "init": cfg.init,
        "kind": kind,
        "config": json.dumps(asdict(cfg)),
        "images_per_s": f"{images_per_s:.1f}",
    }
    save_file(tensors, str(path), metadata=meta)


def saved_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


# What a network's training depends on, besides the compressed copies of the augmented one.
RECIPE = (
    "data",
    "arch",
    "init",
    "size",
    "epochs",
    "batch",
    "lr",
    "weight_decay",
    "label_smoothing",
    "train_per_class",
    "seed",
)


def same_recipe(path: Path, cfg: BackboneConfig) -> bool:
    """Whether the saved network at ``path`` was trained with ``cfg``'s recipe (RECIPE fields)."""
    if not path.is_file():
        return False
    saved = json.loads(saved_metadata(path).get("config", "{}"))
    return all(saved.get(k) == getattr(cfg, k) for k in RECIPE)


def load(path: Path, arch: str, init: str = "", size: int | None = None) -> torch.nn.Module:
    """The saved network at ``path``; refused unless it is an ``arch`` with ``init`` and (if
    ``size`` is given) was trained on crops of ``size`` px, the size it is evaluated at."""
    from safetensors.torch import load_file

    meta = saved_metadata(path)
    if meta.get("arch") != arch or meta.get("init", "") != init:
        raise ValueError(
            f"{path} holds a {meta.get('arch')} with --init {meta.get('init', '')!r}, "
            f"not a {arch} with --init {init!r}"
        )
    trained = json.loads(meta.get("config", "{}")).get("size")
    if size is not None and trained not in (None, size):
        raise ValueError(f"{path} was trained on {trained}-px crops: pass --size {trained}")
    model = build(arch, init)
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    )
    return model.eval()


def recovery(clean_ref: np.ndarray, clean: np.ndarray, augmented: np.ndarray):
    """Recovery over the val images ``idx``: (acc_aug - acc_clean) / (acc_clean on clean val -
    acc_clean), from per-image correctness (bool [N]) of the clean-trained model on clean val,
    and of both models on the compressed val; NaN where compression costs nothing."""

    def rec(idx: np.ndarray) -> float:
        drop = clean_ref[idx].mean() - clean[idx].mean()
        return float((augmented[idx].mean() - clean[idx].mean()) / drop) if drop > 0 else math.nan

    return rec


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f, v in asdict(BackboneConfig()).items():
        if isinstance(v, bool):
            ap.add_argument("--" + f.replace("_", "-"), action="store_true")
        else:
            ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    cfg = BackboneConfig(**vars(ap.parse_args(argv)))
    torch.set_num_threads(cfg.threads)
    root, out, side = Path(cfg.data), Path(cfg.out), stored_size(cfg)
    out.mkdir(parents=True, exist_ok=True)
    train_paths, train_y, _ = split(root, "train", cfg.train_per_class)
    val_paths, val_y, _ = split(root, "val", cfg.val_per_class)
    x_train, x_val = load_images(train_paths, side), load_images(val_paths, side)
    print(f"Imagenette: {len(x_train)} train, {len(x_val)} val images at {side} px, crops of {cfg.size}")

    weights = {
        k: Path(cfg.weights) / f"recognition_{cfg.arch}{'-' + cfg.init if cfg.init else ''}_{k}.safetensors"
        for k in ("clean", "augmented")
    }
    speed = {}
    if cfg.eval_only:
        models = {k: load(p, cfg.arch, cfg.init, cfg.size) for k, p in weights.items()}
    else:
        aug = RandomCompression(
            tuple(cfg.aug_codecs.split(",")),
            bpp=tuple(float(b) for b in cfg.aug_bpp.split(",")),
            p=1.0,
            seed=cfg.seed,
        )
        copies = np.empty((cfg.aug_copies, *x_train.shape), np.uint8)
        for c in range(cfg.aug_copies):  # one cache per copy: a run with more copies reuses the first
            jobs = [
                (i, *itemgetter("codec", "bpp", "quality")(aug.make_params([]))) for i in range(len(x_train))
            ]
            copies[c] = compressed(cfg, f"train-copy{c}", x_train, jobs)[0]
        models = {}
        for kind, cp in (("clean", None), ("augmented", copies)):
            if kind == "clean" and same_recipe(weights[kind], cfg):
                # the clean network does not depend on the augmentation: train it once per recipe
                print(f"the clean {cfg.arch} of this recipe is reused from {weights[kind]}", flush=True)
                models[kind] = load(weights[kind], cfg.arch, cfg.init, cfg.size)
                speed[kind] = float(saved_metadata(weights[kind]).get("images_per_s", "nan"))
                continue
            print(
                f"training the {kind} {cfg.arch} ({cfg.epochs} epochs, {cfg.threads} thread(s))", flush=True
            )
            models[kind], speed[kind] = train(cfg, x_train, train_y, cp)
            save(models[kind], weights[kind], cfg, kind, speed[kind])
            # evaluate what is saved (fp16), as --eval-only does
            models[kind] = load(weights[kind], cfg.arch, cfg.init, cfg.size)

    variants = [("none", None, None, None)]
    for codec in cfg.codecs.split(","):
        for bpp in (float(b) for b in cfg.bpps.split(",")):
            if codec.startswith("ours"):
                variants.append((codec, bpp, None, bpp))
            else:
                q, got = calibrate(list(x_train[:24]), codec, bpp)
                if any(v[0] == codec and v[2] == q for v in variants):
                    continue  # the codec's lowest setting already (small images: headers dominate)
                variants.append((codec, bpp, q, got))
    rows, preds = [], {}
    for codec, bpp, q, _calibrated in variants:
        key = "clean" if codec == "none" else f"{codec.replace(':', '-')}-{bpp}"
        if codec == "none":
            xv, nbytes = x_val, np.zeros(len(x_val))
        else:
            xv, nbytes = compressed(cfg, f"val-{key}", x_val, [(i, codec, bpp, q) for i in range(len(x_val))])
        preds[key] = {k: predict(cfg, m, xv) == val_y for k, m in models.items()}
        rows.append(
            dict(
                variant=key, codec=codec, target_bpp=bpp, quality=q, bpp=float(np.mean(nbytes) * 8 / side**2)
            )
        )
    n = len(val_y)
    clean_ref = preds["clean"]["clean"]
    for row in rows:
        c, a = preds[row["variant"]]["clean"], preds[row["variant"]]["augmented"]
        row["acc_clean_trained"], row["acc_augmented"] = float(c.mean()), float(a.mean())
        row["acc_clean_ci"] = bootstrap_ci(lambda idx, v=c: float(v[idx].mean()), n, cfg.bootstrap)
        row["acc_augmented_ci"] = bootstrap_ci(lambda idx, v=a: float(v[idx].mean()), n, cfg.bootstrap)
        if row["codec"] != "none":
            rec = recovery(clean_ref, c, a)
            row["drop"] = float(clean_ref.mean() - c.mean())
            row["recovery"] = rec(np.arange(n))
            row["recovery_ci"] = bootstrap_ci(rec, n, cfg.bootstrap)
    result = {"config": asdict(cfg), "images_per_s": speed, "rows": rows, "val_images": n}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    text = summary(result)
    (out / "summary.md").write_text(text)
    print(text)
    return result


def summary(r: dict) -> str:
    cfg = r["config"]
    lines = [
        f"{cfg['arch']} "
        + (
            "fine-tuned from the pretrained TFLite MobileNetV2"
            if cfg.get("init") == "tflite"
            else "from random initialisation"
        )
        + f", {cfg['size']} px, {cfg['epochs']} epochs of "
        f"{cfg['train_per_class'] * 10} Imagenette train images, twice (clean; RandomCompression "
        f"{cfg['aug_codecs']} at {cfg['aug_bpp']} bpp, {cfg['aug_copies']} cached copies per image, "
        + (
            f"every image seen clean and compressed, JS consistency x {cfg['consistency']}"
            if cfg.get("consistency")
            else f"p={cfg['aug_p']}"
        )
        + f"); {r['val_images']} val images; 95% bootstrap intervals. Training speed (images/s, "
        f"{cfg['threads']} thread(s)): " + ", ".join(f"{k} {v:.0f}" for k, v in r["images_per_s"].items()),
        "",
        "| val images | bpp | top-1 clean-trained | top-1 augmented | drop | recovery |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        ci = lambda v: f"[{v[0]:.3f}, {v[1]:.3f}]"  # noqa: E731
        rec = (
            f"{row['recovery']:.2f} [{row['recovery_ci'][0]:.2f}, {row['recovery_ci'][1]:.2f}]"
            if row.get("recovery") is not None and math.isfinite(row["recovery"])
            else "-"
        )
        drop = f"{row['drop']:.3f}" if "drop" in row else "-"
        lines.append(
            f"| {row['variant']} | {row['bpp']:.3f} | "
            f"{row['acc_clean_trained']:.3f} {ci(row['acc_clean_ci'])} | "
            f"{row['acc_augmented']:.3f} {ci(row['acc_augmented_ci'])} | {drop} | {rec} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
