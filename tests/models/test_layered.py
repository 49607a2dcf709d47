"""Tests for codec.models.layered: the entropy model of nested PQ-VAEs."""

import pytest
import torch

from codec.models.layered import LayeredEntropyModel, TrainingLoss, build_entropy_model
from codec.models.mim import MaskedEntropyModel, MIMConfig

CFG = MIMConfig(M=6, K=16, dim=32, depth=1, decoder_depth=1, heads=4, groups=[1, 1, 2, 2], channel_dim=16)


def test_group_logits_depend_only_on_earlier_groups():
    torch.manual_seed(0)
    m = LayeredEntropyModel(CFG).eval()
    tok = torch.randint(0, 16, (2, 6, 5, 7))
    for g, (lo, hi) in enumerate([(1, 2), (2, 4), (4, 6)], start=1):
        out = m.group_logits(tok, g)
        assert out.shape == (2, 35, hi - lo, 16)
        later = tok.clone()
        later[:, lo:] = torch.randint(0, 16, later[:, lo:].shape)
        assert torch.equal(m.group_logits(later, g), out)
        earlier = tok.clone()
        earlier[:, lo - 1] = (earlier[:, lo - 1] + 1) % 16
        assert not torch.equal(m.group_logits(earlier, g), out)


def test_base_layer_is_a_masked_model_of_group_zero():
    m = LayeredEntropyModel(CFG).eval()
    assert isinstance(m.base, MaskedEntropyModel) and m.base.cfg.M == 1
    tok = torch.randint(0, 16, (1, 6, 4, 4))
    known, query = torch.arange(5)[None], torch.arange(5, 16)[None]
    assert torch.equal(m(tok, known, query), m.base(tok[:, :1], known, query))
    with pytest.raises(ValueError):
        m.group_logits(tok, 0)


def test_loss_learns():
    torch.manual_seed(0)
    m = LayeredEntropyModel(CFG)
    tok = torch.randint(0, 4, (4, 6, 6, 6))  # only 4 of 16 symbols: learnable
    tok[:, 2] = tok[:, 1]  # and a sub-vector of group 2 that repeats one of group 1
    loss_fn = TrainingLoss(m)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    first = None
    for i in range(60):
        loss, stats = loss_fn(tok, torch.Generator().manual_seed(i))
        first = first or stats["bits_per_token"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert stats["bits_per_token"] < 0.6 * first
    assert stats["group2_bits"] < stats["group1_bits"]  # the repeated sub-vector is cheap


def test_build_and_bad_groups():
    assert isinstance(build_entropy_model(CFG), LayeredEntropyModel)
    assert isinstance(build_entropy_model(MIMConfig(M=2, K=16, dim=32, heads=4)), MaskedEntropyModel)
    for groups in ([1, 1, 2], [0, 6], []):
        with pytest.raises(ValueError):
            LayeredEntropyModel(MIMConfig(M=6, K=16, dim=32, heads=4, groups=groups))


def test_all_groups_at_once_equals_one_at_a_time():
    torch.manual_seed(1)
    m = LayeredEntropyModel(CFG).eval()
    for p in m.parameters():
        p.data.normal_(0, 0.3)
    tok = torch.randint(0, 16, (3, 6, 5, 7))
    for g, logits in enumerate(m.channel.all_groups(tok), start=1):
        torch.testing.assert_close(logits, m.group_logits(tok, g), atol=1e-5, rtol=1e-5)
