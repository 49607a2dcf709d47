"""Tests for codec.train.config: stage configs, recipes, flags."""

import dataclasses

import pytest

from codec.train import TrainConfig
from codec.train.config import STAGES, field_help, load_recipe, recipes


def test_lr_schedule_and_late_crops():
    cfg = TrainConfig(out="x", lr=1e-3, lr_schedule="cosine", lr_warmup_steps=10, steps=110, lr_min_ratio=0.1)
    lrs = [cfg.lr_at(i) for i in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # decays after the warm-up
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert TrainConfig(out="x").lr_at(57) == TrainConfig(out="x").lr
    with pytest.raises(ValueError):
        TrainConfig(out="x", lr_schedule="step").lr_at(0)
    cfg = TrainConfig(out="x", crop=128, batch=8, late_crop=256, late_crop_from=0.8, steps=100)
    assert cfg.crop_at(79) == (128, 8) and cfg.crop_at(80) == (256, 2)


def test_runs_dir(monkeypatch, tmp_path):
    from codec.train.config import runs_dir

    monkeypatch.setenv("CODEC_RUNS", str(tmp_path / "r"))
    assert runs_dir() == tmp_path / "r"
    assert TrainConfig(stage="entropy").out == str(tmp_path / "r" / "entropy")
    monkeypatch.delenv("CODEC_RUNS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert runs_dir() == tmp_path / "c" / "codec" / "runs"


@pytest.mark.parametrize("name", recipes())
def test_every_recipe_sets_only_fields_of_its_stages(name):
    import json
    from pathlib import Path

    import codec.train.config as config

    recipe = json.loads((Path(config.__file__).with_name("recipes") / f"{name}.json").read_text())
    assert recipe["description"]
    stages = [s for s in recipe if s in STAGES]
    assert stages and set(recipe) <= {"description", "common", *STAGES}
    for stage in stages:
        cfg = TrainConfig(stage, **load_recipe(name, stage))
        assert cfg.stage == stage


def test_a_field_of_another_stage_is_refused_not_ignored():
    with pytest.raises(ValueError, match="--token-crop do"):
        TrainConfig("autoencoder", token_crop=8)
    with pytest.raises(ValueError, match="--M do"):
        TrainConfig("entropy", M=4)
    with pytest.raises(ValueError, match="unknown stage"):
        TrainConfig("decoder")
    with pytest.raises(ValueError, match="no realism stage"):
        load_recipe("flagship", "realism")
    with pytest.raises(ValueError, match="unknown recipe"):
        load_recipe("no-such-recipe", "autoencoder")


def test_each_stage_has_its_own_flags_each_with_help_and_default(capsys):
    from codec.cli import build_parser

    for stage, cls in STAGES.items():
        helps = field_help(cls)
        assert all(helps.get(f.name) for f in dataclasses.fields(cls)), stage
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", stage, "--help"])
        text = capsys.readouterr().out
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in text
        assert text.count("(default:") >= len(dataclasses.fields(cls))
    autoencoder = {f.name for f in dataclasses.fields(STAGES["autoencoder"])}
    assert "token_crop" not in autoencoder and "em_dim" not in autoencoder and "baseline_M" not in autoencoder


def test_earlier_command_lines_still_parse():
    from codec.cli import _with_stage, build_parser

    def parsed(*argv):
        args = build_parser().parse_args(_with_stage(list(argv)))
        return args.stage, args.preset

    assert parsed("train", "--preset", "flagship", "--resume") == ("autoencoder", "flagship")
    assert parsed("train", "--preset", "flagship-entropy") == ("entropy", "flagship")
    assert parsed("train", "--stage", "entropy", "--em-dim", "32") == ("entropy", None)
    assert parsed("train", "--steps", "5") == ("autoencoder", None)
    assert parsed("train", "realism", "--crop", "64") == ("realism", None)


def test_state_json_keeps_the_stage(tmp_path):
    cfg = TrainConfig("entropy", out=str(tmp_path))
    assert cfg.to_dict()["stage"] == "entropy" and cfg.to_dict()["token_crop"] == 16


def test_codebook_statistics_flags_reach_the_quantizer():
    """--restart-threshold and --ema-decay are per step: a small CPU batch needs other values
    than the GPU recipe's (docs/training.md), so both must reach the model."""
    from codec.models.pqvae import PQVAE

    cfg = TrainConfig(out="x", restart_threshold=0.035, ema_decay=0.999, M=2, K=16, latent_dim=8)
    q = PQVAE(cfg.model_config()).quantizer
    assert (q.restart_threshold, q.decay) == (0.035, 0.999)
    assert TrainConfig(out="x").model_config().ema_decay == 0.99
