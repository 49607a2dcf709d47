"""Recognition under compression on Imagenette: how much accuracy compression costs a fixed
pretrained classifier, and how much of it compressed-training augmentation recovers.

1. Drop: top-1 of the bundled pretrained MobileNetV2 (TFLite, uint8; its 1001 outputs restricted
   to the 10 Imagenette classes) on val images, uncompressed (the 224-px JPEGs as given) and
   compressed by each codec at each target bpp. Classical codecs use one quality setting per
   target, calibrated on training images (the setting whose mean bpp is nearest the target),
   so the achieved mean bpp is reported beside it; ``ours`` / ``ours:BUNDLE`` code real .pqm
   files at the bundle's own rate.
2. Recovery: a linear classifier (1280 -> 10) on the frozen MobileNetV2 features, trained twice
   with the same budget (epochs x images, Adam, same seed): on clean training images, and
   with RandomCompression (each image replaced with probability p by one of C compressed
   copies drawn by codec.transforms.RandomCompression: codec uniform from --aug-codecs, bpp
   log-uniform in --aug-bpp). Recovery at a val variant = (acc_aug - acc_clean) /
   (acc_clean on uncompressed val - acc_clean), over --seeds seeds; 95% intervals by bootstrap
   over val images (of the seed-averaged per-image accuracy).
3. Outputs in --out: results.json, summary.md (the table), accuracy_vs_bpp.png, and a feature
   cache (cache/*.npz) that reruns reuse.

    python bench/recognition.py [--val-per-class 100] [--codecs jpeg,webp,avif,ours] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec import classical
from codec.bench.features import default_model_path
from codec.transforms import RandomCompression, compress_decode, parse_codec

SIZE = 224


@dataclass
class StudyConfig:
    data: str = "../shared/data/imagenette"
    classifier: str = ""  # the TFLite model; default: codec.bench.features.default_model_path()
    val_per_class: int = 100
    train_per_class: int = 400
    codecs: str = "jpeg,webp,avif,ours"
    bpps: str = "0.1,0.2,0.4,0.8"
    calib_images: int = 24
    aug_codecs: str = "jpeg,webp,avif,ours"
    aug_bpp: str = "0.1,1.0"
    aug_p: float = 0.5
    aug_copies: int = 2
    head: str = "linear"  # or "mlp": 1280 -> 512 -> 10 with ReLU and dropout 0.2
    epochs: int = 30
    batch: int = 128
    lr: float = 1e-3
    seeds: int = 5
    bootstrap: int = 1000
    workers: int = 2
    out: str = "bench/results/recognition"


# -- data ------------------------------------------------------------------------------
def class_rows(root: Path) -> list[list[str]]:
    """classes.tsv: [wnid, name, ImageNet-1k index] per class, in label order."""
    return [line.split("\t") for line in (root / "classes.tsv").read_text().splitlines()[1:] if line]


def split(root: Path, name: str, per_class: int) -> tuple[list[Path], np.ndarray, list[str]]:
    """The first ``per_class`` images (sorted names) of each class: paths, labels 0..9, names."""
    rows = class_rows(root)
    paths, labels = [], []
    for label, (wnid, _, _) in enumerate(rows):
        files = sorted((root / name / wnid).iterdir())[:per_class]
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels), [r[1] for r in rows]


def imagenet_outputs(root: Path) -> list[int]:
    """The classifier's output index of each class (ImageNet-1k index + 1: 0 is background)."""
    return [int(r[2]) + 1 for r in class_rows(root)]


def load(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if img.size != (SIZE, SIZE):
        img = img.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return np.asarray(img)


# -- per-image work (in worker processes) ------------------------------------------------
_NET = None


def _init(classifier: str) -> None:
    global _NET
    torch.set_num_threads(1)
    from codec.bench.features import MobileNetFeatures

    _NET = MobileNetFeatures(classifier)


def _job(job: tuple) -> tuple[np.ndarray, np.ndarray, int]:
    """(path, codec or None, bpp, quality, bounds) -> (features [1280], scores [1001], bytes)."""
    path, codec, bpp, quality, bounds = job
    img, nbytes = load(path), 0
    if codec is not None:
        img, nbytes = compress_decode(img, codec, bpp, quality, bounds)
    feats, scores = _NET.outputs(img[None])
    return feats[0].astype(np.float32), scores[0].astype(np.float32), nbytes


def run_jobs(cfg: StudyConfig, jobs: list[tuple], what: str) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    t0 = time.time()
    if cfg.workers > 0:
        ctx = mp.get_context("spawn")
        with ctx.Pool(cfg.workers, _init, (cfg.classifier,)) as pool:
            out = list(tqdm(pool.imap(_job, jobs, chunksize=8), total=len(jobs), desc=what, leave=False))
    else:
        _init(cfg.classifier)
        out = [_job(j) for j in tqdm(jobs, desc=what, leave=False)]
    print(f"  {what}: {len(jobs)} images in {time.time() - t0:.1f} s")
    return {
        "features": np.stack([o[0] for o in out]),
        "scores": np.stack([o[1] for o in out]),
        "bytes": np.array([o[2] for o in out]),
    }


def cached(cfg: StudyConfig, key: str, jobs: list[tuple]) -> dict[str, np.ndarray]:
    """run_jobs, kept in out/cache/KEY-HASH.npz (the hash covers every job's image, codec and
    setting; delete the cache when a bundle changes in place)."""
    digest = hashlib.sha1(repr([(str(j[0]), *j[1:]) for j in jobs]).encode()).hexdigest()[:10]
    path = Path(cfg.out) / "cache" / f"{key}-{digest}.npz"
    if path.exists():
        with np.load(path) as f:
            if len(f["bytes"]) == len(jobs):
                return dict(f)
    res = run_jobs(cfg, jobs, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **res)
    return res


# -- calibration -----------------------------------------------------------------------
def calibrate(imgs: list[np.ndarray], codec: str, bpp: float) -> tuple[int, float]:
    """(quality, mean bpp on ``imgs``) of the setting whose mean bpp is nearest ``bpp``."""
    qs, memo = classical.SETTINGS[codec][0], {}

    def mean_bpp(i: int) -> float:
        if i not in memo:
            memo[i] = float(
                np.mean(
                    [len(classical.encode(im, codec, qs[i])) * 8 / im.shape[0] / im.shape[1] for im in imgs]
                )
            )
        return memo[i]

    lo, hi = 0, len(qs) - 1
    while lo < hi:  # the first setting at or above the target
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if mean_bpp(mid) < bpp else (lo, mid)
    best = min({max(lo - 1, 0), lo}, key=lambda i: abs(math.log(mean_bpp(i) / bpp)))
    return qs[best], mean_bpp(best)


# -- heads -----------------------------------------------------------------------------
def train_head(cfg: StudyConfig, x: torch.Tensor, y: torch.Tensor, copies: torch.Tensor | None, seed: int):
    """A linear (or MLP) head on standardized features; ``copies`` [C, N, D]: with probability aug_p an
    image's features are replaced by those of one of its compressed copies, per epoch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    classes = int(y.max()) + 1
    if cfg.head == "mlp":
        head = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], 512),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(512, classes),
        )
    elif cfg.head == "linear":
        head = torch.nn.Linear(x.shape[1], classes)
    else:
        raise ValueError(f"--head {cfg.head!r}: linear or mlp")
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=1e-4)
    n = len(x)
    for _ in range(cfg.epochs):
        xe = x
        if copies is not None:
            use = torch.rand(n, generator=g) < cfg.aug_p
            pick = copies[torch.randint(len(copies), (n,), generator=g), torch.arange(n)]
            xe = torch.where(use[:, None], pick, x)
        for idx in torch.randperm(n, generator=g).split(cfg.batch):
            loss = torch.nn.functional.cross_entropy(head(xe[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def bootstrap_ci(fn, n: int, reps: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = np.array([fn(rng.integers(0, n, n)) for _ in range(reps)], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    return (
        [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if len(vals) else [math.nan] * 2
    )


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# -- the study -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f, v in asdict(StudyConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    cfg = StudyConfig(**vars(ap.parse_args(argv)))
    cfg.classifier = cfg.classifier or default_model_path()
    root, out = Path(cfg.data), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    val_paths, val_y, names = split(root, "val", cfg.val_per_class)
    train_paths, train_y, _ = split(root, "train", cfg.train_per_class)
    outputs = imagenet_outputs(root)
    print(
        f"Imagenette: {len(val_paths)} val, {len(train_paths)} train images ({SIZE} px); "
        f"classifier {cfg.classifier}"
    )

    # 1. val variants -> pretrained top-1 and features
    calib_rng = np.random.default_rng(0)
    calib = [
        load(p) for p in calib_rng.choice(train_paths, min(cfg.calib_images, len(train_paths)), replace=False)
    ]
    variants = [{"codec": "none", "target_bpp": None, "quality": None, "calib_bpp": None}]
    for spec in cfg.codecs.split(","):
        name, model = parse_codec(spec)
        if name == "ours":
            variants.append({"codec": spec, "target_bpp": None, "quality": None, "calib_bpp": None})
            continue
        for b in map(float, cfg.bpps.split(",")):
            q, got = calibrate(calib, name, b)
            if any(v["codec"] == name and v["quality"] == q for v in variants):
                print(f"  {name}: target {b} bpp gives the setting of a lower target (quality {q}): skipped")
                continue
            variants.append({"codec": name, "target_bpp": b, "quality": q, "calib_bpp": got})
    val = {}
    for v in variants:
        key = "val-" + (v["codec"] if v["quality"] is None else f"{v['codec']}-q{v['quality']}")
        key = key.replace("/", "_").replace(":", "_")
        codec = None if v["codec"] == "none" else v["codec"]
        val[key] = cached(cfg, key, [(p, codec, None, v["quality"], None) for p in val_paths])
        v["key"] = key
        pixels = SIZE * SIZE
        v["bpp"] = float(val[key]["bytes"].mean() * 8 / pixels) if codec else None
        pred = np.array(outputs)[val[key]["scores"][:, outputs].argmax(1)]
        v["pretrained_correct"] = pred == np.array(outputs)[val_y]

    # 2. heads: clean vs RandomCompression copies
    clean = cached(cfg, "train-clean", [(p, None, None, None, None) for p in train_paths])
    aug = RandomCompression(cfg.aug_codecs.split(","), bpp=tuple(map(float, cfg.aug_bpp.split(","))), seed=0)
    copies, aug_stats = [], []
    for c in range(cfg.aug_copies):
        params = [aug.make_params([]) for _ in train_paths]
        jobs = [(p, q["codec"], q["bpp"], q["quality"], aug.bpp) for p, q in zip(train_paths, params)]
        res = cached(cfg, f"train-aug{c}", jobs)
        copies.append(res["features"])
        aug_stats += [(q["codec"], b * 8 / SIZE / SIZE) for q, b in zip(params, res["bytes"])]
    mu, sd = clean["features"].mean(0), clean["features"].std(0) + 1e-6
    norm = lambda f: torch.from_numpy((f - mu) / sd).float()  # noqa: E731
    x, y = norm(clean["features"]), torch.from_numpy(train_y)
    xc = torch.stack([norm(f) for f in copies])
    correct = {"clean": {v["key"]: [] for v in variants}, "aug": {v["key"]: [] for v in variants}}
    for seed in range(cfg.seeds):
        for kind, cp in (("clean", None), ("aug", xc)):
            head = train_head(cfg, x, y, cp, seed)
            with torch.no_grad():
                for v in variants:
                    pred = head(norm(val[v["key"]]["features"])).argmax(1).numpy()
                    correct[kind][v["key"]].append(pred == val_y)

    # 3. figures
    n, reps = len(val_y), cfg.bootstrap
    base = variants[0]["key"]
    c_unc = np.mean(correct["clean"][base], 0)
    p_unc = variants[0]["pretrained_correct"].astype(float)
    rows = []
    for v in variants:
        k = v["key"]
        pc = v["pretrained_correct"].astype(float)
        cc, ac = np.mean(correct["clean"][k], 0), np.mean(correct["aug"][k], 0)
        seeds_c = [float(np.mean(a)) for a in correct["clean"][k]]
        seeds_a = [float(np.mean(a)) for a in correct["aug"][k]]
        rec = lambda i, cc=cc, ac=ac: ratio(ac[i].mean() - cc[i].mean(), c_unc[i].mean() - cc[i].mean())  # noqa: E731
        row = {
            "codec": v["codec"],
            "target_bpp": v["target_bpp"],
            "quality": v["quality"],
            "calib_bpp": v["calib_bpp"],
            "bpp": v["bpp"],
            "pretrained_top1": float(pc.mean()),
            "pretrained_top1_ci": bootstrap_ci(lambda i, pc=pc: pc[i].mean(), n, reps),
            "pretrained_drop": float(p_unc.mean() - pc.mean()),
            "clean_head_top1": float(cc.mean()),
            "clean_head_top1_seeds": seeds_c,
            "aug_head_top1": float(ac.mean()),
            "aug_head_top1_seeds": seeds_a,
            "clean_head_drop": float(c_unc.mean() - cc.mean()),
            "recovery": rec(np.arange(n)) if v["codec"] != "none" else None,
            "recovery_ci": bootstrap_ci(rec, n, reps) if v["codec"] != "none" else None,
        }
        rows.append(row)
    codes, rates = zip(*aug_stats) if aug_stats else ((), ())
    result = {
        "config": asdict(cfg),
        "classes": names,
        "val_images": n,
        "train_images": len(train_y),
        "head": ("linear 1280 -> 10" if cfg.head == "linear" else "MLP 1280 -> 512 -> 10")
        + " on frozen MobileNetV2 (TFLite uint8) pooled features, standardized",
        "augmentation": {
            "transform": repr(aug),
            "p": cfg.aug_p,
            "copies": cfg.aug_copies,
            "mean_bpp": float(np.mean(rates)) if rates else None,
            "codec_share": {c: codes.count(c) / len(codes) for c in sorted(set(codes))},
        },
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "summary.md").write_text(summary(result))
    plot(result, out / "accuracy_vs_bpp.png")
    print(summary(result))
    return result


def fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def summary(r: dict) -> str:
    a = r["augmentation"]
    lines = [
        f"Imagenette val: {r['val_images']} images ({r['config']['val_per_class']} per class), 224 px; "
        f"train: {r['train_images']} images.",
        f"Pretrained: MobileNetV2 (TFLite uint8) restricted to the 10 classes. Heads: {r['head']}; "
        f"{r['config']['epochs']} epochs, batch {r['config']['batch']}, Adam {r['config']['lr']}, "
        f"{r['config']['seeds']} seeds.",
        f"Augmentation: {a['transform']} with p = {a['p']}, {a['copies']} copies per training image "
        f"(mean bpp {fmt(a['mean_bpp'])}; codec share {a['codec_share']}).",
        "Recovery = (aug - clean) / (clean on uncompressed - clean); "
        "[95% bootstrap interval over val images].",
        "",
        "| codec | target bpp | quality | bpp | pretrained top-1 | clean head | aug head | recovery |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        ci = row["pretrained_top1_ci"]
        rec = "" if row["recovery"] is None else fmt(row["recovery"], 2)
        if row["recovery_ci"] is not None:
            rec += f" [{fmt(row['recovery_ci'][0], 2)}, {fmt(row['recovery_ci'][1], 2)}]"
        sc, sa = np.std(row["clean_head_top1_seeds"]), np.std(row["aug_head_top1_seeds"])
        quality = row["quality"] if row["quality"] is not None else ""
        lines.append(
            f"| {row['codec']} | {fmt(row['target_bpp'], 2)} | {quality} "
            f"| {fmt(row['bpp'])} | {fmt(row['pretrained_top1'])} [{fmt(ci[0])}, {fmt(ci[1])}] "
            f"| {fmt(row['clean_head_top1'])} ±{fmt(sc)} | {fmt(row['aug_head_top1'])} ±{fmt(sa)} | {rec} |"
        )
    lines.append("")
    lines.append("(± is the standard deviation over seeds.)")
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    none = next(row for row in r["rows"] if row["codec"] == "none")
    family = lambda c: c.split(":")[0]  # noqa: E731  (every bundle of ours on one curve)
    codecs = dict.fromkeys(family(row["codec"]) for row in r["rows"] if row["codec"] != "none")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(codecs):
        rows = sorted((row for row in r["rows"] if family(row["codec"]) == c), key=lambda row: row["bpp"])
        bpp = [row["bpp"] for row in rows]
        label = c
        axes[0].plot(bpp, [row["pretrained_top1"] for row in rows], "o-", color=colors[i % 10], label=label)
        axes[1].plot(
            bpp, [row["clean_head_top1"] for row in rows], "o--", color=colors[i % 10], label=f"{label} clean"
        )
        axes[1].plot(
            bpp, [row["aug_head_top1"] for row in rows], "s-", color=colors[i % 10], label=f"{label} aug"
        )
    axes[0].axhline(none["pretrained_top1"], color="gray", ls=":", label="uncompressed")
    axes[1].axhline(none["clean_head_top1"], color="gray", ls=":", label="clean head, uncompressed")
    axes[0].set_title("pretrained MobileNetV2 (10 classes)")
    axes[1].set_title(f"{r['config']['head']} head: clean training (dashed) vs RandomCompression (solid)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("bpp (real files, mean over val)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 on Imagenette val")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
