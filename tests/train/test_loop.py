"""Tests for codec.train.loop: the spike guard, SIGTERM, the GPU recipe's two stages."""

import json
import os

import torch
from builders import write_images

from codec.train import TrainConfig, train
from codec.train.config import load_recipe


def test_spike_guard_skips_bad_steps(tmp_path):
    from codec.train.loop import Run, fit

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 3)
    seen = []

    def step(i):
        loss = (model(x) ** 2).mean()
        if i == 5:
            loss = loss * float("nan")
        if i == 7:
            loss = loss * 1e6
        seen.append(model.weight.detach().clone())
        return loss, {}

    cfg = TrainConfig(
        out=str(tmp_path / "run"), steps=10, log_every=1, eval_every=1000, ckpt_every_minutes=1e9
    )
    fit(Run(cfg, model, opt, step, lambda done: None, {}, 0, 1, torch.device("cpu")))
    assert torch.equal(seen[5], seen[6]) and torch.equal(seen[7], seen[8])  # no update after 5 and 7
    assert not torch.equal(seen[4], seen[5])
    rows = [json.loads(r) for r in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum("skipped_spike" in r for r in rows) == 2


def test_sigterm_checkpoints_and_stops(tmp_path):
    """A SIGTERM mid-run finishes the step, writes a checkpoint and exits cleanly."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    data = write_images(tmp_path / "data")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codec",
            "train",
            "autoencoder",
            "--recipe",
            "tiny",
            "--steps",
            "100000",
            "--data",
            str(data),
            "--eval-data",
            str(data),
            "--out",
            str(out),
            "--amp",
            "off",
            "--threads",
            "1",
            "--ckpt-every-minutes",
            "1000",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 60
    while not (out / "log.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    output = p.communicate(timeout=60)[0]
    assert p.returncode == 0, output[-2000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert 0 < state["step"] < 100000
    resumed = TrainConfig(
        "autoencoder",
        **{
            **load_recipe("tiny", "autoencoder"),
            "out": str(out),
            "data": str(data),
            "eval_data": str(data),
            "amp": "off",
            "threads": 1,
            "steps": state["step"] + 2,
            "resume": True,
            "lr": 1e-5,
        },
    )
    train(resumed)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == state["step"] + 2


def test_gpu_recipe_runs_on_cpu_with_a_tiny_config(tmp_path):
    """bench/train_gpu.sh end to end (autoencoder, entropy model, fp16 bundle) with the tiny
    recipe on the CPU."""
    import subprocess
    import sys
    from pathlib import Path

    data = write_images(tmp_path / "data")
    root = Path(__file__).resolve().parents[2]
    cpu = "--device cpu --amp off --threads 1 --batch 2"
    env = dict(
        os.environ,
        RUN_DIR=str(tmp_path / "gpu"),
        OUT="",
        PYTHON=sys.executable,
        INIT="",
        DATA=str(data),
        EVAL=str(data),
        RECIPE="tiny",
        AE_ARGS=f"{cpu} --crop 32 --steps 20 --max-minutes 2",
        EM_ARGS=f"{cpu} --token-crop 8 --max-minutes 2",
    )
    p = subprocess.run(
        ["bash", "bench/train_gpu.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    from codec.engine.loading import load_codec

    c = load_codec(tmp_path / "gpu" / "bundle.safetensors")
    assert c.autoencoder.cfg.M == 2 and c.autoencoder.cfg.K == 16


def test_a_weight_average_is_what_evaluations_and_checkpoints_hold_and_resumes(tmp_path):
    """--average-weights D: the checkpoint's model file and every evaluation hold the moving
    average (the first update's weights, then D x average + (1 - D) x weights per step); the
    weights the optimizer steps are kept beside it, and a resumed run goes on bit for bit."""
    from safetensors.torch import load_file

    from codec.format import schema
    from codec.train.checkpoint import load_checkpoint
    from codec.train.loop import Run, fit

    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)), torch.ones(16, 1)

    def run(out, steps, start=0, model=None):
        torch.manual_seed(0)
        model = model or torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        seen = []

        def step(i):
            seen.append(model.weight.detach().clone())
            return ((model(x) - y) ** 2).mean(), {}

        cfg = TrainConfig(
            out=str(out), steps=steps, log_every=1, eval_every=6, ckpt_every_minutes=1e9, average_weights=0.5
        )
        if start:
            load_checkpoint(out / "checkpoint", model)
        evaluate = lambda done: {"weight": model.weight.detach().clone().tolist()}  # noqa: E731
        metrics = fit(Run(cfg, model, opt, step, evaluate, {}, 0, 1, torch.device("cpu"), start=start))
        return model, seen, metrics

    model, seen, metrics = run(tmp_path / "a", 6)
    ckpt = tmp_path / "a" / "checkpoint"
    raw = load_file(str(ckpt / schema.CHECKPOINT_TRAINING))["weight"]
    weights = seen[1:] + [raw]  # after each of the 6 updates
    average = weights[0]
    for w in weights[1:]:
        average = 0.5 * average + 0.5 * w
    saved = load_file(str(ckpt / schema.CHECKPOINT_MODEL))["weight"]
    assert torch.allclose(saved, average) and not torch.allclose(saved, raw)
    assert torch.allclose(torch.tensor(metrics["weight"]), average)  # evaluated on the average
    assert torch.equal(model.weight.detach(), saved)  # the trained model is the average
    run(tmp_path / "b", 3)
    run(tmp_path / "b", 6, start=3)
    for name in (schema.CHECKPOINT_MODEL, schema.CHECKPOINT_TRAINING):
        assert torch.equal(
            load_file(str(tmp_path / "b" / "checkpoint" / name))["weight"],
            load_file(str(ckpt / name))["weight"],
        )
