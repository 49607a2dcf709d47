"""Tests for codec.models.quantizer.ProductQuantizer."""

import torch

from codec.models.quantizer import ProductQuantizer


def make(M=4, K=16, dim=32, **kw):
    torch.manual_seed(0)
    return ProductQuantizer(dim, M, K, **kw)


def test_indices_in_range_and_shapes():
    q = make()
    z = torch.randn(3, 32, 5, 7)
    z_q, idx, stats = q(z)
    assert z_q.shape == z.shape and idx.shape == (3, 4, 5, 7)
    assert idx.dtype == torch.int64 and idx.min() >= 0 and idx.max() < 16
    assert stats["perplexity"].shape == (4,) and stats["commit_loss"] >= 0


def test_codes_from_indices_reproduces_quantized_latent():
    q = make()
    q(torch.randn(4, 32, 6, 6))  # training step: initialises and updates codebooks
    q.eval()
    z = torch.randn(2, 32, 3, 9)
    z_q, idx, _ = q(z)
    torch.testing.assert_close(q.codes_from_indices(idx), z_q, rtol=0, atol=0)
    # and each sub-vector is its nearest codeword
    sub = z.reshape(2, 4, 8, 3, 9)
    for m in range(4):
        d = ((sub[:, m].permute(0, 2, 3, 1).unsqueeze(-2) - q.codebooks[m]) ** 2).sum(-1)
        assert torch.equal(d.argmin(-1), idx[:, m])


def test_straight_through_gradient():
    q = make()
    z = torch.randn(2, 32, 4, 4, requires_grad=True)
    z_q, _, stats = q(z)
    (z_q.sum() + stats["commit_loss"]).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_ema_moves_codewords_toward_assigned_vectors():
    q = make(M=1, K=4, dim=2, decay=0.5, restart_threshold=0.0)
    q(torch.randn(1, 2, 8, 8))  # k-means init
    target = torch.tensor([5.0, -3.0])
    z = target.view(1, 2, 1, 1).expand(1, 2, 8, 8).contiguous()
    _, idx, _ = q(z)
    k = int(idx[0, 0, 0, 0])
    before = (q.codebooks[0, k] - target).norm()
    for _ in range(5):
        q(z)
    after = (q.codebooks[0, k] - target).norm()
    assert after < 0.1 * before


def test_dead_codes_are_restarted():
    q = make(M=2, K=8, dim=4, decay=0.5, restart_threshold=0.5)
    q(torch.randn(2, 4, 8, 8))
    q.codebooks[:, 3] = 1e6  # unreachable codeword: never assigned, its usage decays
    q.ema_sum[:, 3] = 1e6
    q.ema_count[:, 3] = 1.0
    for _ in range(3):  # usage 1 -> 0.5 -> 0.25: restarted
        q(torch.randn(2, 4, 8, 8))
    assert q.codebooks[:, 3].abs().max() < 100  # replaced by an encoder output


def test_m1_is_a_plain_vq():
    q = make(M=1, K=32, dim=8)
    z_q, idx, _ = q(torch.randn(2, 8, 4, 4))
    assert idx.shape == (2, 1, 4, 4)


def test_usage_perplexity_bounds():
    q = make()
    q(torch.randn(8, 32, 8, 8))
    u = q.usage()
    assert u.shape == (4,) and (u >= 1).all() and (u <= 16 + 1e-4).all()


def test_indices_in_chunks_are_the_nearest_codewords():
    import torch

    from codec.models.quantizer import ProductQuantizer

    torch.manual_seed(0)
    q = ProductQuantizer(dim=12, M=3, K=16).eval()
    z = torch.randn(2, 12, 5, 7)
    assert torch.equal(q.indices(z, chunk=4), q(z)[1])
