"""codec bench: settings inside the bpp range, a tiny end-to-end run, resume, skipped codecs."""

import json

import numpy as np
import pytest
from PIL import Image

from codec import classical
from codec.bench import run as bench
from codec.cli import main
from codec.engine.loading import get_codec


def test_find_settings_lands_inside_the_range():
    rate = {q: 0.01 * 1.08**q for q in range(101)}  # rising, 0.01 .. 22 bpp
    got = bench.find_settings(rate.__getitem__, list(range(101)), 0.05, 1.0, 6)
    assert 3 <= len(got) <= 6 and got == sorted(got)
    assert all(0.05 <= rate[q] <= 1.0 for q in got)
    assert rate[got[0]] < 0.06 and rate[got[-1]] > 0.9  # spans the range
    assert bench.find_settings(rate.__getitem__, list(range(101)), 50, 60, 4) == []


def test_find_settings_with_a_real_codec():
    img = np.asarray(Image.open("codec/data/sample.png").convert("RGB"))[:128, :192]

    def bpp(q):
        return 8 * len(classical.encode(img, "webp", q)) / (128 * 192)

    got = bench.find_settings(bpp, classical.SETTINGS["webp"][0], 0.2, 1.5, 4)
    assert got and all(0.2 <= bpp(q) <= 1.5 for q in got)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    im = Image.open("codec/data/sample.png").convert("RGB")
    im.crop((0, 0, 96, 64)).save(d / "a.png")
    im.crop((300, 200, 396, 264)).save(d / "b.png")
    return d


def test_tiny_bench_end_to_end_resumes_and_skips(images, tmp_path, monkeypatch, capsys):
    real = classical.missing
    monkeypatch.setattr(classical, "missing", lambda c: "not here" if c == "jxl" else real(c))
    out = tmp_path / "out"
    args = ["bench", "--dataset", str(images), "--codecs", "jpeg,webp,jxl", "--out", str(out)]
    assert main(args + ["--points", "3", "--workers", "1", "--bpp-range", "0.3,3"]) == 0
    text = capsys.readouterr().out
    assert "skipping jxl: not here" in text and "BD-rate (psnr)" in text
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["curves"]) == {"jpeg", "webp"} and summary["skipped"] == {"jxl": "not here"}
    for pts in summary["curves"].values():
        assert len(pts) >= 2 and all(p["psnr"] > 20 for p in pts)
    assert summary["bd_rate"]["psnr"]["jpeg"]["jpeg"] == 0.0
    assert summary["bd_rate"]["psnr"]["webp"]["jpeg"] is not None
    rows = (out / "results.jsonl").read_text().splitlines()
    assert len(rows) == sum(len(p) for p in summary["curves"].values()) * 2
    for f in ("results.csv", "rd_psnr.png", "rd_ms_ssim.png", "summary.md"):
        assert (out / f).exists()
    # a rerun resumes: nothing is coded again; BD-rates over another interval
    assert (
        main(args + ["--points", "3", "--workers", "1", "--bpp-range", "0.3,3", "--bd-range", "0.5,2"]) == 0
    )
    assert "0 jobs to run" in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)
    again = json.loads((out / "results.json").read_text())
    assert again["bd_range"] == [0.5, 2.0] and "0.5-2.0 bpp" in (out / "summary.md").read_text()
    assert again["bd_rate"]["psnr"]["webp"]["jpeg"] != summary["bd_rate"]["psnr"]["webp"]["jpeg"]
    # a rerun with fewer codecs reports only those (the log keeps the others)
    only = ["bench", "--dataset", str(images), "--codecs", "jpeg", "--out", str(out)]
    assert main(only + ["--points", "3", "--workers", "1", "--bpp-range", "0.3,3"]) == 0
    assert "0 jobs to run" in capsys.readouterr().out
    assert set(json.loads((out / "results.json").read_text())["curves"]) == {"jpeg"}


def test_ours_is_swept_over_its_rates(images, tmp_path):
    """The default (nested) model: one point per prefix length m, from 1 to its M."""
    s = bench.run_bench(images, ["ours"], tmp_path / "o", workers=1, progress=False)
    pts = s["curves"]["ours"]
    settings = [p["setting"] for p in pts]
    assert settings == sorted(set(settings)) and settings[0] == 1
    assert settings[-1] == get_codec().autoencoder.cfg.M
    assert all(a["bpp"] < b["bpp"] for a, b in zip(pts, pts[1:]))


def test_several_bundles_make_one_curve_of_whole_files(images, tmp_path):
    """ours:A+B: one point per bundle, each file coded whole (the default and the extreme model)."""
    s = bench.run_bench(
        images, ["ours:extreme-s32-m1-k16+default"], tmp_path / "o", workers=1, progress=False
    )
    pts = s["curves"]["ours:extreme-s32-m1-k16+default"]
    assert [p["setting"] for p in pts] == [0, 1] and pts[0]["bpp"] < pts[1]["bpp"]
    whole = bench.run_bench(images, ["ours"], tmp_path / "p", workers=1, progress=False)["curves"]["ours"][-1]
    assert pts[1]["bpp"] == whole["bpp"] and pts[1]["psnr"] == whole["psnr"]
    assert bench.label("ours:runs/a.safetensors+default") == "ours:a+default"  # plot and table names


def test_learned_baseline_run_is_a_codec(images, tmp_path, capsys):
    """A (tiny) baseline trained by codec train --stage baseline codes real bytes in the
    bench; CompressAI's pretrained weights are skipped when not in the torch cache."""
    from codec.train import TrainConfig, train

    run = tmp_path / "hp"
    cfg = TrainConfig(
        stage="baseline",
        out=str(run),
        data=str(images),
        eval_data=str(images),
        baseline_N=16,
        baseline_M=24,
        crop=64,
        batch=2,
        steps=6,
        eval_every=6,
        eval_images=1,
        log_every=3,
        amp="off",
        threads=1,
        ckpt_every_minutes=1e9,
    )
    result = train(cfg)
    assert result.metrics["bpp"] > 0
    groups = json.loads((run / "checkpoint" / "state.json").read_text())["param_groups"]
    assert [g["lr"] for g in groups] == [cfg.lr, 10 * cfg.lr]  # quantiles: their own, faster group
    s = bench.run_bench(
        images, [f"hyperprior:{run}", "compressai:no-such-arch"], tmp_path / "o", workers=1, progress=False
    )
    (pt,) = s["curves"][f"hyperprior:{run}"]
    assert pt["bpp"] > 0 and pt["psnr"] > 5
    assert "no pretrained" in s["skipped"]["compressai:no-such-arch"]
    assert "(bmshj2018-hyperprior, lambda 0.0067, 6 steps)" in s["codecs"][f"hyperprior:{run}"]
