"""``codec bench``: every codec swept over its rate parameter on a folder of images, bpp from
real encoded bytes, PSNR (RGB) and MS-SSIM (torchmetrics) per image, BD-rate of each codec
against each other, results.jsonl (appended as jobs finish: a run resumes), results.json,
results.csv, an R-D plot per metric and a Markdown summary.

Codec names: the classical ones of :mod:`codec.classical` (jpeg, jpeg444, webp, avif, jxl),
``ours`` (the default bundle; ``ours:NAME_OR_PATH`` for another), swept over the number of
coded stages (a prefix of the stages is a real, smaller file), or for a nested model over its
sub-vectors per position m; ``ours:A+B+...``: one rate
point per bundle, each coded whole; learned baselines trained by ``codec train --stage
baseline``: ``hyperprior:RUN1+RUN2+...`` (each run folder one rate point; ``mbt:RUN1+...``
names a curve of mbt2018-mean runs; each run's state says its architecture);
``compressai:ARCH`` (bmshj2018-hyperprior, mbt2018-mean) with CompressAI's pretrained
weights when the user has them in the torch cache (they are never downloaded).
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import classical
from ..errors import CodecError
from .bdrate import bd_rate

METRICS = ("psnr", "ms_ssim")
_LPIPS: list = []  # per process: [LPIPS module or None]


def full_rate(c) -> dict:
    """compress() arguments for a model's whole file: a nested model's every sub-vector."""
    return {"quality": 100} if c.layered else {}


def _lpips():
    if not _LPIPS:
        from ..util.metrics import load_lpips

        try:
            _LPIPS.append(load_lpips())
        except RuntimeError:
            _LPIPS.append(None)
    return _LPIPS[0]


@dataclass
class BenchCodec:
    """A codec to sweep: ``encode(img, setting) -> bytes``, ``decode(bytes, setting) -> img``
    (the setting tells a multi-model codec which model made the file)."""

    name: str
    grid: list[int]  # every setting, rate rising with the setting
    note: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes, int], np.ndarray]


_CACHE: dict[str, BenchCodec] = {}

LEARNED_KINDS = ("hyperprior", "mbt", "compressai")
"""Codec names of the form KIND:SPEC besides ``ours``/``ours:SPEC`` (see the module doc)."""


def check_codec_name(name: str) -> None:
    """ValueError for a name that is no codec at all (a typo), so a benchmark refuses it before
    any work; a known codec that cannot run here (library, weights or bundle missing) is
    skipped by :func:`run_bench` with the reason instead."""
    kind, sep, spec = name.partition(":")
    if kind == "ours" and (not sep or spec) or kind in LEARNED_KINDS and spec:
        return
    if kind in classical.SETTINGS and not sep:
        return
    raise ValueError(
        f"unknown codec {name!r} (codecs: {', '.join(classical.SETTINGS)}, ours, ours:MODEL[+MODEL...], "
        "hyperprior:RUN[+RUN...], mbt:RUN[+RUN...], compressai:ARCH)"
    )


def make_codec(name: str) -> BenchCodec:
    """The :class:`BenchCodec` for a name (cached per process); ValueError if it cannot run."""
    if name in _CACHE:
        return _CACHE[name]
    if name == "ours" or name.startswith("ours:"):
        from ..engine.loading import get_codec

        specs = name.partition(":")[2].split("+") if ":" in name else [None]
        models = [get_codec(m) for m in specs]
        if len(models) == 1 and models[0].layered:  # a nested model: its own rate points
            c = models[0]
            M, g0 = c.autoencoder.cfg.M, c.groups[0]
            points = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
            grid = sorted({m for m in points if g0 <= m < M} | {M})
            bc = BenchCodec(
                name,
                grid,
                f"one nested model, m = {grid[0]}..{M} codes (model id {c.model_id.hex()}), "
                "entropy model 1 thread",
                lambda img, m: c.compress(img, m=m),
                lambda data, m: c.decompress(data),
            )
        elif len(models) == 1:  # one model: a real curve of stage prefixes (progressive files)
            c = models[0]
            S = c.schedule.stages
            bc = BenchCodec(
                name,
                list(range(1, S + 1)),
                f"stages coded 1..{S} of {S} (model id {c.model_id.hex()}), entropy model 1 thread",
                lambda img, t: c.compress(img, stages=t),
                lambda data, t: c.decompress(data),
            )
        else:  # one rate point per model, each its whole file; listed by rising rate
            bc = BenchCodec(
                name,
                list(range(len(models))),
                "one bundle per rate point (whole files; nested models at their full rate): "
                + ", ".join(f"{m} (id {c.model_id.hex()})" for m, c in zip(specs, models)),
                lambda img, i: models[i].compress(img, **full_rate(models[i])),
                lambda data, i: models[i].decompress(data),
            )
    elif name.split(":")[0] in ("hyperprior", "mbt") and ":" in name:
        runs = name.partition(":")[2].split("+")
        models, about = zip(*(_load_baseline(r) for r in runs))
        bc = BenchCodec(
            name,
            list(range(len(models))),
            "trained by codec train --stage baseline: " + ", ".join(about),
            lambda img, i: _baseline_encode(models[i], img),
            lambda data, i: _baseline_decode(models[i], data),
        )
    elif name.startswith("compressai:"):
        bc = _pretrained(name)
    else:
        why = classical.missing(name)
        if why:
            raise ValueError(why)
        grid, kw = classical.SETTINGS[name]
        bc = BenchCodec(
            name,
            grid,
            f"Pillow {json.dumps({k: v for k, v in kw(0).items() if k != 'quality'})}, quality swept",
            lambda img, q: classical.encode(img, name, q),
            lambda data, q: classical.decode(data),
        )
    _CACHE[name] = bc
    return bc


def _load_baseline(run: str):
    """(model ready to code, description) from a run folder (``runs/NAME`` or its ``checkpoint``)."""
    from ..format import schema
    from ..models.baseline import build_baseline
    from ..train.checkpoint import load_checkpoint

    folder = Path(run)
    folder = folder / "checkpoint" if (folder / "checkpoint").is_dir() else folder
    if not (folder / schema.CHECKPOINT_STATE).exists():
        raise ValueError(f"no baseline checkpoint in {run}")
    state = json.loads((folder / schema.CHECKPOINT_STATE).read_text())
    arch = state[schema.STATE_ARCH]
    model = build_baseline(arch, state[schema.STATE_N], state[schema.STATE_M])
    load_checkpoint(folder, model)
    model.eval().update(force=True)
    cfg = state[schema.STATE_CONFIG]
    return model, f"{run} ({arch}, lambda {cfg['rd_lambda']}, {state[schema.STATE_STEP]} steps)"


def _baseline_encode(model, img: np.ndarray) -> bytes:
    import torch

    from ..models.baseline import compress_image

    return compress_image(model, torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255)


def _baseline_decode(model, data: bytes) -> np.ndarray:
    from ..models.baseline import decompress_image

    y = decompress_image(model, data)[0]
    return (y * 255).round().byte().permute(1, 2, 0).numpy()


def _pretrained(name: str) -> BenchCodec:
    """CompressAI's pretrained models, only from the user's torch cache."""
    import torch

    arch = name.partition(":")[2]
    cached = sorted((Path(torch.hub.get_dir()) / "checkpoints").glob(f"{arch}-*.pth.tar"))
    qualities = sorted({int(p.name.split("-")[len(arch.split("-"))]) for p in cached})
    if not qualities:
        raise ValueError(
            f"no pretrained {arch} weights in the torch cache ({torch.hub.get_dir()}); never downloaded"
        )
    from compressai import zoo

    models = {q: getattr(zoo, arch.replace("-", "_"))(quality=q, pretrained=True).eval() for q in qualities}
    for m in models.values():
        m.update(force=True)
    return BenchCodec(
        name,
        qualities,
        f"CompressAI pretrained {arch}, qualities {qualities} (from the torch cache)",
        lambda img, q: _baseline_encode(models[q], img),
        lambda data, q: _baseline_decode(models[q], data),
    )


def find_settings(
    bpp_of: Callable[[int], float], grid: Sequence[int], lo: float, hi: float, n: int
) -> list[int]:
    """Up to ``n`` settings of ``grid`` (rate rising along it) whose rate ``bpp_of`` lies in
    [lo, hi], spread evenly in log-rate: binary searches for both ends, then the settings
    between them nearest to log-spaced targets."""

    def first_at_least(target: float) -> int:
        a, b = 0, len(grid)
        while a < b:
            m = (a + b) // 2
            if bpp_of(grid[m]) >= target:
                b = m
            else:
                a = m + 1
        return a

    i, j = first_at_least(lo), first_at_least(hi)
    if j == len(grid) or bpp_of(grid[j]) > hi:
        j -= 1
    if i > j:
        return []
    rates = {k: bpp_of(grid[k]) for k in range(i, j + 1)}
    targets = np.exp(np.linspace(math.log(rates[i]), math.log(rates[j]), n))
    chosen = {min(rates, key=lambda k: abs(math.log(rates[k]) - math.log(t))) for t in targets}
    return [grid[k] for k in sorted(chosen)]


def _quality(rec: np.ndarray, img: np.ndarray) -> dict:
    import torch

    from ..util.metrics import from_uint8, image_quality

    row = {**image_quality(rec, img), "lpips": None}
    fn = _lpips()
    if fn is not None:
        with torch.no_grad():
            row["lpips"] = float(fn(from_uint8(rec) * 2 - 1, from_uint8(img) * 2 - 1).mean())
    return row


_FEATURES: list = []  # per process: [extractor or None]


def _features():
    if not _FEATURES:
        from .features import feature_extractor

        _FEATURES.append(feature_extractor()[0])
    return _FEATURES[0]


def _feature_file(out: Path, name: str, setting, image: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{name}__{setting}__{image}")
    return out / "features" / f"{safe}.npy"


def _job(args: tuple[str, int, str, str]) -> dict:
    name, setting, path, out = args
    from ..util.imageio import load_rgb

    img = load_rgb(Path(path)).permute(1, 2, 0).numpy()
    c = make_codec(name)
    t0 = time.perf_counter()
    data = c.encode(img, setting)
    t1 = time.perf_counter()
    rec = c.decode(data, setting)
    t2 = time.perf_counter()
    row = {"codec": name, "setting": setting, "image": Path(path).name, "bytes": len(data)}
    row["bpp"] = 8 * len(data) / (img.shape[0] * img.shape[1])
    row.update(_quality(rec, img), encode_ms=1e3 * (t1 - t0), decode_ms=1e3 * (t2 - t1))
    ext = _features()
    if ext is not None:
        from .features import patches

        np.save(_feature_file(Path(out), name, setting, row["image"]), ext(patches(rec)))
    return row


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def curves(rows: list[dict], n_images: int) -> dict[str, list[dict]]:
    """Per codec, the mean over images of each setting that every image has, by bpp."""
    by: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        by.setdefault((r["codec"], r["setting"]), []).append(r)
    out: dict[str, list[dict]] = {}
    for (name, setting), rs in by.items():
        if len(rs) < n_images:
            continue
        point = {"setting": setting, "bpp": statistics.mean(r["bpp"] for r in rs)}
        for m in (*METRICS, "lpips"):
            vals = [r[m] for r in rs if r.get(m) is not None]
            point[m] = statistics.mean(vals) if len(vals) == len(rs) else None
        out.setdefault(name, []).append(point)
    return {k: sorted(v, key=lambda p: p["bpp"]) for k, v in out.items()}


def _feature_distances(cur: dict[str, list[dict]], images: list[Path], out: Path) -> str:
    """Adds FD and KID on MobileNetV2 features (originals vs decoded 256-px patches, over
    all images) to every curve point; returns what the columns mean, or why they are n/a."""
    from ..util.imageio import load_rgb
    from .features import feature_extractor, frechet_distance, kernel_distance, patches

    ext, why = feature_extractor()
    for pts in cur.values():
        for p in pts:
            p["fd_mobilenet"] = p["kid_mobilenet"] = None
    if ext is None:
        return why or "n/a"
    (out / "features").mkdir(exist_ok=True)
    ref = []
    for path in images:
        f = _feature_file(out, "original", 0, path.name)
        if not f.exists():
            np.save(f, ext(patches(load_rgb(path).permute(1, 2, 0).numpy())))
        ref.append(np.load(f))
    ref_all = np.concatenate(ref)
    if len(ref_all) < 2:
        return "n/a: images smaller than one 256-px patch"
    for name, pts in cur.items():
        for p in pts:
            files = [_feature_file(out, name, p["setting"], path.name) for path in images]
            if all(f.exists() for f in files):
                rec = np.concatenate([np.load(f) for f in files])
                p["fd_mobilenet"] = frechet_distance(ref_all, rec)
                p["kid_mobilenet"] = kernel_distance(ref_all, rec)
    return (
        f"FD and KID on MobileNetV2 (TFLite, ImageNet) pooled features of {len(ref_all)} 256-px patches, "
        "originals vs decoded: an offline stand-in for FID/KID, comparable within this run only"
    )


def bd_table(cur: dict[str, list[dict]], metric: str, bpp_range: tuple[float, float]) -> dict:
    """BD-rate (%) of every codec (row) against every other (column), or None."""
    pts = {k: [(p["bpp"], p[metric]) for p in v if p[metric] is not None] for k, v in cur.items()}
    table: dict[str, dict[str, float | None]] = {}
    for a in pts:
        for b in pts:
            try:
                table.setdefault(a, {})[b] = bd_rate(pts[b], pts[a], bpp_range) if a != b else 0.0
            except ValueError:
                table.setdefault(a, {})[b] = None
    return table


def run_bench(
    dataset: str | Path,
    codecs: Sequence[str],
    out: str | Path,
    bpp_range: tuple[float, float] = (0.05, 1.0),
    points: int = 8,
    workers: int = 2,
    max_images: int = 0,
    progress: bool = True,
    bd_range: tuple[float, float] | None = None,
) -> dict:
    """Runs (or resumes) a benchmark; returns the summary written to ``out``/results.json.
    ``bpp_range``: where settings are swept; ``bd_range``: the BD-rate interval (default: the
    sweep range)."""
    from ..util.imageio import list_images

    if not codecs:
        raise ValueError("no codec to run: name at least one")
    for name in codecs:  # a typo fails here, not after a run that prints empty tables
        check_codec_name(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = list_images(str(dataset))[: max_images or None]
    if not images:
        raise ValueError(f"no images in {dataset}")
    runnable, skipped = _runnable(codecs)
    settings = _settings(runnable, images[0], bpp_range, points)
    (out / "features").mkdir(exist_ok=True)
    log = out / "results.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    done = {(r["codec"], r["setting"], r["image"]) for r in rows}
    jobs = [
        (name, s, str(p), str(out))
        for name in runnable
        for s in settings[name]
        for p in images
        if (name, s, p.name) not in done
    ]
    print(
        f"{len(images)} images from {dataset}; codecs {', '.join(runnable)}; {len(jobs)} jobs to run "
        f"({len(done)} done before); {workers} worker processes of 1 thread"
    )
    rows += _run_jobs(jobs, log, workers, progress)
    rows = [r for r in rows if r["codec"] in runnable]  # earlier runs' other codecs stay in the log only
    cur = curves(rows, len(images))
    feature_note = _feature_distances(cur, images, out)
    summary = {
        "dataset": str(dataset),
        "images": len(images),
        "bpp_range": list(bpp_range),
        "bd_range": list(bd_range or bpp_range),
        "workers": workers,
        "codecs": {k: runnable[k].note for k in runnable},
        "skipped": skipped,
        "unavailable_metrics": _unavailable_metrics(feature_note),
        "curves": cur,
        "bd_rate": {m: bd_table(cur, m, tuple(bd_range or bpp_range)) for m in METRICS},
    }
    _write_results(summary, rows, out)
    return summary


def _runnable(codecs: Sequence[str]) -> tuple[dict[str, BenchCodec], dict[str, str]]:
    """(the codecs that can run here, by name; the others with the reason, printed too)."""
    runnable, skipped = {}, {}
    for name in codecs:
        try:
            runnable[name] = make_codec(name)
        except (ValueError, OSError, CodecError) as e:  # a library, weights or a bundle missing
            skipped[name] = str(e)
            print(f"skipping {name}: {e}")
    return runnable, skipped


def _settings(
    runnable: dict[str, BenchCodec], calibration: Path, bpp_range: tuple[float, float], points: int
) -> dict[str, list[int]]:
    """The settings to run of each codec: ours and learned ones every model / stage; a classical
    codec's grid narrowed to ``points`` settings in the bpp range on a calibration image."""
    from ..util.imageio import load_rgb

    calib = load_rgb(calibration).permute(1, 2, 0).numpy()
    px = calib.shape[0] * calib.shape[1]
    settings = {}
    for name, c in runnable.items():
        if name.split(":")[0] not in classical.SETTINGS:  # ours, learned: every model / stage
            settings[name] = c.grid
        else:
            memo: dict[int, float] = {}

            def bpp_of(s: int, c: BenchCodec = c, memo: dict = memo) -> float:
                if s not in memo:
                    memo[s] = 8 * len(c.encode(calib, s)) / px
                return memo[s]

            lo, hi = bpp_range
            settings[name] = (
                find_settings(bpp_of, c.grid, lo, hi, points) or c.grid[:: max(1, len(c.grid) // points)]
            )
    return settings


def _run_jobs(jobs: list[tuple[str, int, str, str]], log: Path, workers: int, progress: bool) -> list[dict]:
    """The rows of ``jobs`` (in ``workers`` processes when more than one), each appended to
    ``log`` as it finishes, so an interrupted run resumes."""
    from tqdm import tqdm

    rows = []
    with open(log, "a") as f:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                it = pool.imap_unordered(_job, jobs)
                for row in tqdm(it, total=len(jobs), disable=not progress):
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    rows.append(row)
        else:
            for job in tqdm(jobs, disable=not progress):
                row = _job(job)
                f.write(json.dumps(row) + "\n")
                f.flush()
                rows.append(row)
    return rows


def _unavailable_metrics(feature_note: str) -> dict[str, str]:
    """What the summary says of the metrics this run could not compute (or how it did)."""
    return {
        "lpips": "per image (AlexNet LPIPS)"
        if _lpips() is not None
        else "n/a: needs torchvision's AlexNet weights in the torch cache (none offline here)",
        "fid_kid": "n/a: needs Inception-v3 weights (none offline here)",
        "fd_kid_mobilenet": feature_note,
    }


def _write_results(summary: dict, rows: list[dict], out: Path) -> None:
    """results.json, results.csv (a row per job), the R-D plots and summary.md in ``out``."""
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["codec"])
        w.writeheader()
        w.writerows(rows)
    _plots(summary["curves"], out)
    (out / "summary.md").write_text(markdown(summary))


def label(name: str) -> str:
    """A short display name: ``ours:runs/a.safetensors+default`` -> ``ours:a+default``."""
    kind, sep, spec = name.partition(":")
    return kind + sep + "+".join(Path(p).stem or p for p in spec.split("+")) if sep else name


def _plots(cur: dict[str, list[dict]], out: Path) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots")
        return
    for m in METRICS:
        fig, ax = plt.subplots(figsize=(8.5, 4.8))
        drawn = 0
        for name, pts in cur.items():
            xy = [(p["bpp"], p[m]) for p in pts if p[m] is not None]
            if xy:
                ax.plot(*zip(*xy), marker="o", ms=3, label=label(name))
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, f"{m}: n/a for these images", ha="center", transform=ax.transAxes)
        ax.set_xlabel("bpp (from file sizes)")
        ax.set_ylabel({"psnr": "PSNR (dB, RGB)", "ms_ssim": "MS-SSIM"}[m])
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes
        fig.tight_layout()
        fig.savefig(out / f"rd_{m}.png", dpi=120)
        plt.close(fig)


def markdown(summary: dict) -> str:
    """The summary table: each codec's points, then BD-rate tables."""
    lines = [
        f"# Benchmark: {summary['images']} images of {summary['dataset']}",
        "",
        "| codec | setting | bpp | PSNR dB | MS-SSIM | LPIPS | FD (MobileNetV2) | KID (MobileNetV2) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v, f: str) -> str:
        return format(v, f) if v is not None else "n/a"

    for name, pts in summary["curves"].items():
        for p in pts:
            lines.append(
                f"| {label(name)} | {p['setting']} | {p['bpp']:.4f} | {p['psnr']:.2f} | "
                f"{fmt(p['ms_ssim'], '.4f')} | {fmt(p.get('lpips'), '.4f')} | "
                f"{fmt(p.get('fd_mobilenet'), '.3f')} | {fmt(p.get('kid_mobilenet'), '.4f')} |"
            )
    lo, hi = summary["bd_range"]
    for m, table in summary["bd_rate"].items():
        names = list(table)
        lines += [
            "",
            f"BD-rate ({m}) of the row against the column, {lo}-{hi} bpp, % (negative: fewer bits)",
            "",
        ]
        lines += ["| | " + " | ".join(map(label, names)) + " |", "|---" * (len(names) + 1) + "|"]
        for a in names:
            cells = [f"{table[a][b]:+.1f}" if table[a][b] is not None else "n/a" for b in names]
            lines.append(f"| {label(a)} | " + " | ".join(cells) + " |")
    lines += ["", "Codecs: " + "; ".join(f"{k}: {v}" for k, v in summary["codecs"].items())]
    for k, v in summary["skipped"].items():
        lines.append(f"Skipped {k}: {v}")
    for k, v in summary["unavailable_metrics"].items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines) + "\n"
