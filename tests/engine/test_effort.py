"""Tests for codec.engine.effort: refined token grids, never worse in distortion, and rate-distortion
optimised codes for nested models, decoded by the unchanged decoder (tiny untrained models;
every shipped model at effort 9 on a crop)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_api import tiny_codec
from test_layered_codec import tiny_layered

import codec
from codec.demo import sample_image_path
from codec.engine import effort as effort_module
from codec.engine.effort import (
    EFFORT_STEPS,
    effort_steps,
    latent_weights,
    rd_optimize,
    rd_search,
    refine_tokens,
)
from codec.engine.layered_codec import RatePoint
from codec.engine.loading import get_codec
from codec.engine.registry import shipped_models
from codec.entropy.range_coder import information_content
from codec.models.quantizer import codeword_distances

IMG = np.asarray(Image.open(sample_image_path()).convert("RGB"))[160:224, 300:396]  # 64 x 96


def as_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255


def decode_mse(ae, tokens, img, counts=None) -> float:
    y = ae.decode(tokens, img.shape[:2], counts=counts)
    return float(((y - as_batch(img)) ** 2).mean())


def test_zero_steps_is_the_encoder_and_steps_never_hurt():
    c = tiny_codec(amp="off")
    x = as_batch(IMG)
    t0 = refine_tokens(c.autoencoder, x, 0, amp="off")
    assert torch.equal(t0, c.autoencoder.encode(x))
    mse0 = decode_mse(c.autoencoder, t0, IMG)
    for steps in (1, 4, 12):
        t = refine_tokens(c.autoencoder, x, steps, amp="off")
        assert t.shape == t0.shape and t.dtype == torch.int64
        assert decode_mse(c.autoencoder, t, IMG) <= mse0 + 1e-7
    assert not torch.equal(t, t0)  # the search moved some tokens
    assert decode_mse(c.autoencoder, t, IMG) < mse0
    assert all(p.requires_grad for p in c.autoencoder.parameters())  # left as found


def test_nested_refinement_is_for_the_coded_prefix():
    """With per-position counts the error measured is the one of the file's decode."""
    c = tiny_layered()
    x = as_batch(IMG)
    _, _, h, w = c.autoencoder.encode(x).shape
    counts = torch.from_numpy(RatePoint(2, 5).counts(h, w, c.schedule.order))[None]
    t0 = refine_tokens(c.autoencoder, x, 0, counts, amp="off")
    t = refine_tokens(c.autoencoder, x, 10, counts, amp="off")
    prefix = slice(0, 3)
    assert decode_mse(c.autoencoder, t[:, prefix], IMG, counts) < decode_mse(
        c.autoencoder, t0[:, prefix], IMG, counts
    )


def test_effort_files_decode_with_the_same_decoder_and_rate_control_holds():
    v1 = tiny_codec(amp="off")
    img = IMG[:40, :56]
    for effort in (0, 3):
        assert v1.decompress(v1.compress(img, effort=effort)).shape == img.shape
    c = tiny_layered()
    a, b = c.compress(img, m=3), c.compress(img, m=3, effort=4)
    assert a != b and c.decompress(b).shape == img.shape  # decompress checks the token CRCs
    budget = len(a)
    assert len(c.compress(img, size=budget, effort=4)) <= budget


def test_effort_out_of_range_is_refused_before_work():
    assert [effort_steps(e) for e in range(10)] == list(EFFORT_STEPS)
    for bad in (-1, 10, 2.5, "3"):
        with pytest.raises(ValueError, match="effort"):
            effort_steps(bad)
    with pytest.raises(ValueError, match="effort"):
        tiny_layered().compress(IMG, effort=10)


def prefix_bits(c, tokens: np.ndarray, codes: int) -> float:
    base, per = c.symbol_costs(tokens)
    return base + per[:codes].sum()


def test_rate_distortion_optimised_codes_trade_error_for_bits():
    c = tiny_layered()
    q = c.autoencoder.quantizer
    z = c.encoder_latent(IMG)
    nearest = q.indices(z[None])[0].numpy()
    assert np.array_equal(nearest, c.tokenize([IMG])[0])
    # lambda 0 with one stage per group (no lookahead): exactly effort 0
    assert np.array_equal(rd_optimize(q, c.tokens, z, 3, factor=0.0), nearest)
    t = rd_optimize(q, c.tokens, z, 3, factor=20.0)
    assert t.shape == nearest.shape and t.dtype == np.int64
    assert not np.array_equal(t[:3], nearest[:3])
    assert prefix_bits(c, t, 3) < prefix_bits(c, nearest, 3)
    # With the most probable codeword among the candidates, a high lambda saves more bits.
    alone = rd_optimize(q, c.tokens, z, 3, factor=1e4, candidates=1, likely=0)
    cheap = rd_optimize(q, c.tokens, z, 3, factor=1e4, candidates=1, likely=1)
    assert np.array_equal(alone, nearest) and prefix_bits(c, cheap, 3) < prefix_bits(c, alone, 3)
    # The codes after the optimised prefix are the nearest codewords of what it left.
    rest = q.indices(z[None])[0, 3:].numpy()  # product quantization: each group on its own
    assert np.array_equal(t[3:], rest)


def test_a_code_is_chosen_for_the_error_its_groups_next_coded_stage_leaves():
    c = tiny_layered(code_groups=[0, 1, 0, 2, 1, 2], groups=3)  # code 2: group 0's second stage
    q = c.autoencoder.quantizer
    z = c.encoder_latent(IMG)
    nearest = q.indices(z[None])[0].numpy()
    group = q._split(z[None].float())  # [G, N, d]
    cb = q.codebooks.float()

    def error_left(t: np.ndarray, codes: list[int], g: int) -> np.ndarray:
        flat = torch.from_numpy(t.reshape(q.M, -1))
        return (group[g] - sum(cb[j][flat[j]] for j in codes)).square().sum(-1).numpy()

    t = rd_optimize(q, c.tokens, z, 3, factor=0.0)  # lambda 0: distortion alone
    joint, greedy = error_left(t, [0, 2], 0), error_left(nearest, [0, 2], 0)
    assert np.all(joint <= greedy + 1e-5) and np.any(joint < greedy - 1e-5)
    assert np.array_equal(t[1], nearest[1])  # group 1's next stage is not coded: the nearest
    t4 = rd_optimize(q, c.tokens, z, 3, factor=0.0, candidates=1, likely=0)  # no choice: the nearest
    assert np.array_equal(t4, nearest)


def test_efforts_above_1_choose_the_codes_again_looking_further_ahead():
    search = [rd_search(e) for e in range(10)]
    assert search[1]["passes"] == 0 and all(s["passes"] >= 1 for s in search[2:])
    for a, b in zip(search[1:], search[2:]):  # a higher effort never searches less
        assert all(b[k] >= a[k] for k in a), (a, b)
    with pytest.raises(ValueError, match="effort"):
        rd_search(10)


@pytest.mark.parametrize(("code_groups", "codes"), [([0, 1, 0, 2, 1, 2], 5), ([0, 1, 2, 2, 0, 1], 6)])
def test_choosing_again_with_foresight_lowers_the_points_error_plus_lambda_bits(
    monkeypatch, code_groups, codes
):
    """lambda fixed at ``factor`` (the image's slope set to 1): the pass lowers the objective
    the greedy pass left, counted exactly over the whole point, and keeps the codes after the
    point the nearest codewords of what is left. Residual stages in every group; in the second
    model layer 2 (codes 2, 3) holds two stages of one group, which are chosen one after the
    other."""
    monkeypatch.setattr(effort_module, "_slope", lambda *args: 1.0)
    c = tiny_layered(code_groups=code_groups, groups=3)
    q = c.autoencoder.quantizer
    img = np.asarray(Image.open(sample_image_path()).convert("RGB"))[96:224, 200:392]
    z = c.encoder_latent(img)
    split = q._split(z[None].float())  # [G, N, d]
    cb = q.codebooks.float()
    lam = 1.0

    def objective(t: np.ndarray) -> float:
        flat = torch.from_numpy(t.reshape(q.M, -1))
        left = split.clone()
        for j in range(codes):
            left[q.code_groups[j]] -= cb[j][flat[j]]
        return float(left.square().sum()) + lam * prefix_bits(c, t, codes)

    greedy = rd_optimize(q, c.tokens, z, codes, factor=lam)
    again = rd_optimize(q, c.tokens, z, codes, factor=lam, passes=1, foresight=3)
    assert not np.array_equal(again[:codes], greedy[:codes])
    blind = rd_optimize(q, c.tokens, z, codes, factor=lam, passes=1, foresight=0)
    assert objective(again) < objective(blind) < objective(greedy)  # later layers' bits count
    assert np.array_equal(again[0], greedy[0])  # the base layer is kept
    flat = torch.from_numpy(again.reshape(q.M, -1))
    left = split.clone()
    for j in range(q.M):
        g = q.code_groups[j]
        if j >= codes:  # after the point: the nearest codeword of what is left
            assert torch.equal(flat[j], codeword_distances(left[g][None], cb[j][None])[0].argmin(1))
        left[g] -= cb[j][flat[j]]


def test_latent_weights_measure_errors_where_the_decoder_feels_them():
    c = tiny_layered()
    q = c.autoencoder.quantizer
    z = c.encoder_latent(IMG)
    nearest = q.indices(z[None])[0].numpy()
    w = np.where(np.arange(q.dim) % q.d == 0, 50.0, 1.0)  # each group's first channel weighs 50x
    t = rd_optimize(q, c.tokens, z, 3, factor=0.0, candidates=q.K, weights=w)  # distortion alone
    # one stage per group: each code is the nearest codeword in the weighted error, whatever the
    # weights of the other groups' channels
    x = q._split(z[None].float()).numpy()  # [G, N, d]
    cb = q.codebooks.float().numpy()
    for j, g in enumerate(q.code_groups[:3]):
        wg = w[g * q.d : (g + 1) * q.d]
        err = (wg * (x[g][:, None, :] - cb[j][None]) ** 2).sum(-1)
        assert np.array_equal(t[j].reshape(-1), err.argmin(1)), j
    assert not np.array_equal(t[:3], nearest[:3])  # the weights changed choices
    per_group = np.repeat(np.linspace(0.1, 10.0, q.G), q.d)
    # one weight per group scales its errors alone: the choices are those without weights
    assert np.array_equal(
        rd_optimize(q, c.tokens, z, 3, factor=0.0, candidates=q.K, weights=per_group), nearest
    )


def test_latent_weights_are_the_decoders_pixel_sensitivity():
    c = tiny_layered()
    ae = c.autoencoder
    first = ae.decoder.net[0]  # the first convolution reads the latent
    images = [as_batch(IMG)[0], as_batch(IMG[::-1].copy())[0]]
    w = latent_weights(ae, images, codes=4, probes=2)
    assert w.shape == (ae.quantizer.dim,) and np.all(w > 0) and w.mean() == pytest.approx(1.0)
    with torch.no_grad():
        first.weight[:, 0] = 0  # the decoder no longer reads channel 0
        first.weight[:, 1] *= 10  # and reads channel 1 ten times as strongly
        if ae.decoder.linear is not None:
            ae.decoder.linear.weight[0] = 0
    w2 = latent_weights(ae, images, codes=4, probes=2)
    assert w2[0] == 0 and w2[1] / w2[2:].mean() > 5 * w[1] / w[2:].mean()
    assert all(p.requires_grad for p in ae.parameters())  # the model is left trainable


def test_stage_choices_see_the_probabilities_the_file_is_coded_with():
    c = tiny_layered()
    tokens = np.ascontiguousarray(c.tokenize([IMG])[0][:1])
    bits = sum(
        information_content(tokens.reshape(1, -1)[:, at].T.reshape(-1), logits.reshape(-1, logits.shape[-1]))
        for at, logits in c.tokens.choose_stages(tokens)
    )
    assert bits == pytest.approx(c.tokens.encode_tokens(tokens)[1], rel=1e-9)
    chosen = tokens.copy()
    for at, _ in c.tokens.choose_stages(chosen):  # each stage sees what was written before it
        chosen.reshape(1, -1)[:, at] = (chosen.reshape(1, -1)[:, at] + 1) % 16
    assert np.array_equal(chosen, (tokens + 1) % 16)


@pytest.mark.parametrize("name", shipped_models())
def test_effort_9_files_of_every_shipped_model_decode(name):
    c = get_codec(name)
    data = codec.compress(IMG, name, m=8) if c.layered else codec.compress(IMG, name)
    more = codec.compress(IMG, name, m=8, effort=9) if c.layered else codec.compress(IMG, name, effort=9)
    assert more != data
    out = np.asarray(codec.decompress(more)).astype(np.float64)  # token CRCs checked
    ref = np.asarray(codec.decompress(data)).astype(np.float64)
    mse = [np.mean((o - IMG) ** 2) for o in (out, ref)]
    assert out.shape == IMG.shape
    if c.layered:  # fewer bits for a little more error: less than the next code would remove
        assert len(more) < len(data) * 0.98 and mse[0] < mse[1] * 1.1
    else:
        assert mse[0] < mse[1] * 1.02  # bf16 decode: about no worse
    del c


def test_cli_and_pillow_take_an_effort(tmp_path, capsys):
    from codec.cli import main

    src = tmp_path / "in.png"
    Image.fromarray(IMG).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "e.pqm"), "--effort", "2"]) == 0
    assert (tmp_path / "e.pqm").read_bytes() == codec.compress(IMG, effort=2)
    with pytest.raises(SystemExit):  # argparse: "invalid choice", one usage line
        main(["encode", str(src), "-o", str(tmp_path / "f.pqm"), "--effort", "12"])
    assert not (tmp_path / "f.pqm").exists()
    buf = io.BytesIO()
    Image.fromarray(IMG).save(buf, format="PQM", effort=2)
    assert buf.getvalue() == codec.compress(IMG, effort=2)


def test_nested_models_optimise_large_photos_encoded_in_tiles(monkeypatch):
    import codec.engine.api
    import codec.engine.tiling

    c = tiny_layered()
    img = np.ascontiguousarray(np.tile(IMG, (2, 2, 1)))  # 128 x 192
    monkeypatch.setattr(codec.engine.api, "TILE_ABOVE_PIXELS", 1000)
    monkeypatch.setattr(codec.engine.tiling, "TILE_ABOVE_PIXELS", 1000)
    monkeypatch.setattr(codec.engine.api, "EFFORT_MAX_PIXELS", 1000)  # single-rate models only
    data = c.compress(img, m=3, effort=1)
    assert data != c.compress(img, m=3) and c.decompress(data).shape == img.shape
