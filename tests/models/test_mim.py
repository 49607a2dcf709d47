"""Tests for codec.models.mim (the MAE-style masked entropy model)."""

import pytest
import torch

from codec.models.mim import MaskedEntropyModel, MIMConfig, masked_token_loss, position_encoding


def model(**kw) -> MaskedEntropyModel:
    torch.manual_seed(0)
    return MaskedEntropyModel(MIMConfig(**{"M": 2, "K": 16, "dim": 32, "depth": 2, "heads": 4, **kw})).eval()


def test_shapes_and_nothing_known():
    em = model()
    tok = torch.randint(0, 16, (3, 2, 5, 7))
    q = torch.arange(35)[None].expand(3, -1)
    out = em(tok, q[:, :0], q)  # stage 1: no known position
    assert out.shape == (3, 35, 2, 16) and torch.isfinite(out).all()
    assert em(tok, q[:, :10], q[:, 10:]).shape == (3, 25, 2, 16)


def test_only_known_tokens_matter():
    em = model()
    tok = torch.randint(0, 16, (1, 2, 6, 6))
    known, query = torch.arange(0, 36, 2)[None], torch.arange(1, 36, 2)[None]
    other = tok.clone()
    other.view(1, 2, -1)[:, :, query[0]] = (other.view(1, 2, -1)[:, :, query[0]] + 1) % 16
    assert torch.equal(em(tok, known, query), em(other, known, query))
    changed = tok.clone()
    changed.view(1, 2, -1)[:, :, 0] = (changed.view(1, 2, -1)[:, :, 0] + 1) % 16
    assert not torch.equal(em(tok, known, query), em(changed, known, query))


def test_queries_are_predicted_independently():
    """A query's logits do not depend on which other positions are queried with it."""
    em = model()
    tok = torch.randint(0, 16, (1, 2, 6, 6))
    known, query = torch.arange(10)[None], torch.arange(10, 36)[None]
    both = em(tok, known, query)
    torch.testing.assert_close(em(tok, known, query[:, :5]), both[:, :5])


def test_position_encoding_offsets_are_slices():
    full = position_encoding(10, 12, 32)
    part = position_encoding(4, 5, 32, y0=3, x0=6)
    torch.testing.assert_close(part, full.view(10, 12, 32)[3:7, 6:11].reshape(20, 32))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_logits_do_not_depend_on_threads_or_batch(threads):
    """The coding-size model on a Kodak-sized grid: bit-identical logits for any thread
    count and any batch composition (the encoder and decoder must agree exactly)."""
    torch.manual_seed(1)
    em = MaskedEntropyModel(MIMConfig(dim=96, depth=2, heads=4)).eval()
    tok = torch.randint(0, 256, (3, 8, 32, 48))
    order = torch.randperm(32 * 48)
    known, query = order[None, :600], order[None, 600:900]
    before = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            ref = em(tok[1:2], known, query)
            torch.set_num_threads(threads)
            alone = em(tok[1:2], known, query)
            batched = em(tok, known.expand(3, -1), query.expand(3, -1))[1:2]
    finally:
        torch.set_num_threads(before)
    assert torch.equal(ref, alone)
    assert torch.equal(ref, batched)


def test_loss_is_in_bits_and_trains():
    """Every crop is one random symbol everywhere: predictable from any known position."""
    torch.manual_seed(0)
    em = MaskedEntropyModel(MIMConfig(M=1, K=4, dim=32, depth=1, decoder_depth=1, heads=2))
    opt = torch.optim.Adam(em.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(150):
        tok = torch.randint(0, 4, (8, 1, 1, 1), generator=g).expand(8, 1, 6, 6).clone()
        loss, stats = masked_token_loss(em, tok, 4, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or stats["bits_per_token"]
        assert stats["bits_per_token"] == pytest.approx(loss.item() / 0.6931471805599453)
    with torch.no_grad():  # a few positions known: the rest is nearly certain
        tok = torch.full((1, 1, 6, 6), 3)
        order = torch.randperm(36, generator=g)[None]
        logits = em(tok, order[:, :4], order[:, 4:])
        bits = torch.nn.functional.cross_entropy(logits.view(-1, 4), tok.view(-1)[order[0, 4:]]) / 0.693147
    assert first > 1.5 and bits < 0.2
